"""Quality: accuracy and F1 of predicted labels, and how much of a text the vocabulary sees."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..inference.featurize import Featurizer, Vocabulary

Predict = Callable[[list[str]], Sequence[str]]


def classification_metrics(gold: list[str], pred: list[str], labels: list[str]
                           ) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix
    (rows: gold, columns: predicted, both in `labels` order)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    p, r, f, n = precision_recall_fscore_support(gold, pred, labels=labels, zero_division=0)
    return {"accuracy": float(np.mean(np.asarray(gold) == np.asarray(pred))),
            "macro_f1": float(np.mean(f)),
            "per_class": {lab: {"precision": float(p[i]), "recall": float(r[i]),
                                "f1": float(f[i]), "support": int(n[i])}
                          for i, lab in enumerate(labels)},
            "confusion": confusion_matrix(gold, pred, labels=labels).tolist()}


def predictions(predict: Predict, texts: list[str], batch_size: int = 256) -> list[str]:
    """`predict` over `texts` in batches (a transformer must not get 7,500 texts at once)."""
    return [p for i in range(0, len(texts), batch_size) for p in predict(texts[i:i + batch_size])]


def accuracy(predict: Predict, texts: list[str], gold: list[str], batch_size: int = 256
             ) -> float:
    pred = predictions(predict, texts, batch_size)
    return float(np.mean(np.asarray(pred, dtype=object) == np.asarray(gold, dtype=object)))


def oov_rates(vocab: Vocabulary, texts: list[str]) -> np.ndarray:
    """(n_texts,) share of each text's n-grams (in the vocabulary's range) that the vocabulary
    lacks: what the student cannot see. A text with no n-gram at all counts as wholly unseen."""
    analyze = vocab.vectorizer().build_analyzer()
    total = np.fromiter((len(analyze(t)) for t in texts), dtype=np.float64, count=len(texts))
    bag = Featurizer(vocab)(texts)
    cumulative = np.concatenate([[0.0], np.cumsum(bag.weights, dtype=np.float64)])  # (nnz + 1,)
    seen = cumulative[bag.offsets[1:]] - cumulative[bag.offsets[:-1]]  # (n_texts,) in-vocab
    return np.where(total > 0, 1.0 - seen / np.maximum(total, 1.0), 1.0)


def most_unseen(rates: np.ndarray) -> np.ndarray:
    """(n_texts // 4,) positions, ascending, of the quarter of texts with the highest
    out-of-vocabulary rate (`oov_rates`; at least one text; ties by position)."""
    return np.sort(np.argsort(-rates, kind="stable")[:max(1, len(rates) // 4)])


def oov_quartile(rates: np.ndarray, gold: list[str], preds: dict[str, list[str]]
                 ) -> dict[str, Any]:
    """Accuracy of each model on the quarter of texts with the highest out-of-vocabulary rate."""
    worst = most_unseen(rates)  # (n,)
    n = len(worst)
    gold_q = np.asarray(gold)[worst]
    return {"n": int(n), "min_oov_rate": float(rates[worst].min()),
            "mean_oov_rate": float(rates[worst].mean()),
            **{key: float(np.mean(np.asarray(p)[worst] == gold_q)) for key, p in preds.items()}}
