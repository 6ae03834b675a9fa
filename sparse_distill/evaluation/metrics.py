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


# Equal-width bins of the top probability for the expected calibration error (Guo et al. 2017).
ECE_BINS = 15
# `predict --min-confidence` thresholds the report shows coverage and accuracy at.
COVERAGE_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


def calibration_metrics(probs: np.ndarray, gold: np.ndarray, bins: int = ECE_BINS
                        ) -> dict[str, Any]:
    """How far a model's probabilities are from how often it is right.

    probs: (n, n_classes); gold: (n,) class indices. ece: the mean over texts of |accuracy -
    confidence| of the text's bin (the top probability in `bins` equal-width bins (lo, hi]);
    nll: mean negative log-probability of the gold class; reliability: each non-empty bin's
    mean confidence, accuracy and size (the reliability figure); risk_coverage: at each of
    COVERAGE_THRESHOLDS, the share of texts whose top probability reaches it and the accuracy
    on those (what `predict --min-confidence` keeps)."""
    n = len(gold)
    confidence = probs.max(axis=1)  # (n,)
    correct = (probs.argmax(axis=1) == gold).astype(np.float64)  # (n,)
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)  # (n,)
    size = np.bincount(which, minlength=bins)  # (bins,)
    conf_sum = np.bincount(which, confidence, minlength=bins)
    right_sum = np.bincount(which, correct, minlength=bins)
    filled = size > 0
    ece = float(np.abs(right_sum - conf_sum)[filled].sum() / max(1, n))
    gold_p = probs[np.arange(n), gold]  # (n,)
    reliability = [{"confidence": float(conf_sum[b] / size[b]),
                    "accuracy": float(right_sum[b] / size[b]), "n": int(size[b])}
                   for b in np.flatnonzero(filled)]
    risk_coverage = []
    for threshold in COVERAGE_THRESHOLDS:
        kept = confidence >= threshold
        risk_coverage.append({"threshold": threshold, "coverage": float(kept.mean()) if n else 0.0,
                              "accuracy": float(correct[kept].mean()) if kept.any() else None})
    return {"ece": ece, "nll": float(-np.mean(np.log(np.maximum(gold_p, 1e-12)))) if n else 0.0,
            "bins": bins, "reliability": reliability, "risk_coverage": risk_coverage}
