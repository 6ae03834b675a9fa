"""The benchmark's baselines, each trained on train and tuned on dev, each a `Predict`:
raw texts in, labels out.

- a DAN of the student's architecture trained from scratch on the gold labels only;
- TF-IDF + logistic regression (scikit-learn);
- fastText supervised on the raw text, as its users feed it: line breaks made spaces, and
  fastText's own tokenisation (split on whitespace) (the `fasttext-numpy2-wheel` package:
  `pip install -e .[bench]`);
- model2vec: static embeddings distilled from the teacher's pretrained encoder and from the
  fine-tuned teacher's encoder, each with a classifier fine-tuned on train, the better on dev
  kept (`model2vec[train]`: `pip install -e .[bench]`).

Light to import (torch loads only for the DAN): fastText's grid runs in a spawned process that
imports this module.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SDistillError
from ..inference.featurize import Featurizer
from ..inference.tokens import DEFAULT_TOKEN_PATTERN
from ..progress import Reporter
from ..training.config import Config
from ..training.data import LabeledData
from ..training.vocab import count_ngrams, select_vocabulary
from .metrics import Predict, accuracy


def train_tfidf_lr(data: LabeledData, seed: int, token_pattern: str = DEFAULT_TOKEN_PATTERN
                   ) -> tuple[Predict, float, str]:
    """TF-IDF (sublinear tf) + logistic regression; n-gram range and C picked on dev. Tokens by
    `token_pattern` (the student's, `inference.tokens.pattern`, when the benchmark compares).

    C climbs a path and each fit starts from the previous solution (warm start): the optimum is
    the same, but lbfgs needs far fewer iterations at large C, which on long documents
    (20 Newsgroups' 1-3-grams) is most of the grid's time: 2.1x less in all there. lbfgs stops
    within its tolerance at a slightly different point, so a pick can differ from cold fits by
    a few dev texts.
    """
    import copy

    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    assert data.dev is not None
    gold_dev = np.asarray(data.dev.labels)
    best: tuple[float, Any, Any, str] = (-1.0, None, None, "")
    for n in (1, 2, 3):
        vec = TfidfVectorizer(ngram_range=(1, n), sublinear_tf=True, token_pattern=token_pattern)
        x_train = vec.fit_transform(data.train.texts)
        x_dev = vec.transform(data.dev.texts)
        clf = LogisticRegression(max_iter=2000, random_state=seed, warm_start=True)
        for c in (1.0, 10.0, 100.0, 1000.0):
            clf.set_params(C=c)
            clf.fit(x_train, data.train.labels)
            acc = float(np.mean(clf.predict(x_dev) == gold_dev))
            if acc > best[0]:
                # the next C refits clf in place; keep this one as it is
                best = (acc, vec, copy.deepcopy(clf), f"word 1-{n}-grams, C={c:g}")
    _, vec, clf, settings = best

    def predict(texts: list[str]) -> list[str]:
        return clf.predict(vec.transform(texts)).tolist()

    return predict, best[0], settings


# Every character str.splitlines breaks at. fastText ends an example at "\n" (its Python predict
# refuses one), and reads the Unicode ones (U+0085, U+2028, ...) as part of a word.
_LINE_BREAKS = dict.fromkeys(map(ord, "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"), " ")


def fasttext_line(text: str) -> str:
    """`text` as one fastText line: each line break a space, everything else as it is."""
    return text.translate(_LINE_BREAKS)


def train_fasttext(data: LabeledData, seed: int, workdir: Path,
                   segment: Callable[[str], str] | None = None) -> tuple[Predict, float, str]:
    """fastText supervised on the raw text (`fasttext_line`: line breaks made spaces; no case
    folding or punctuation splitting: fastText splits on whitespace itself, as its users run it);
    word n-grams 2-4, epochs and learning rate picked on dev. `segment`: each text (train, dev
    and every text predicted) is first rewritten by it, as a user pre-segments Chinese for
    fastText (`inference.tokens.segment`: spaces between the characters of unspaced scripts).

    The grid trains in a fresh process: fastText's training reads memory it never wrote, and in
    a process whose heap holds freed data (after the student's training, with glibc set to
    reuse freed memory) it measured NaN on 4-12 of the 12 settings; in a fresh process, on none.
    One thread, so that a run repeats exactly (fastText's Hogwild training with several threads
    does not).
    """
    import multiprocessing

    try:
        import fasttext
    except ImportError:
        raise SDistillError("benchmark: fastText is not installed; pip install "
                            "fasttext-numpy2-wheel (or: pip install -e .[bench])") from None
    assert data.dev is not None
    labels = sorted(set(data.train.labels))
    index = {lab: i for i, lab in enumerate(labels)}
    line = fasttext_line if segment is None else lambda t: fasttext_line(segment(t))
    train_path = workdir / "fasttext.train.txt"
    train_path.write_text("".join(
        f"__label__{index[lab]} {line(t)}\n"
        for t, lab in zip(data.train.texts, data.train.labels, strict=True)), encoding="utf-8")
    model_path = workdir / "fasttext.bin"
    dev_ids = [index.get(lab, -1) for lab in data.dev.labels]
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        dev_acc, settings = pool.apply(_fasttext_grid, (str(train_path),
                                                        list(map(line, data.dev.texts)), dev_ids,
                                                        seed, str(model_path)))
    if not settings:
        raise SDistillError("benchmark: every fastText setting diverged (NaN) on this data")
    model = fasttext.load_model(str(model_path))

    def predict(texts: list[str]) -> list[str]:
        out, _ = model.predict(list(map(line, texts)), k=1)
        return [labels[int(o[0][len("__label__"):])] for o in out]

    return predict, dev_acc, settings


def _fasttext_grid(train_path: str, dev_texts: list[str], dev_ids: list[int], seed: int,
                   model_path: str) -> tuple[float, str]:
    """Train the grid, save the best model by dev accuracy; (its dev accuracy, its settings)."""
    import fasttext

    dev = [fasttext_line(t) for t in dev_texts]
    gold = np.asarray(dev_ids)
    best: tuple[float, str] = (-1.0, "")
    for ngrams in (2, 3, 4):
        for epoch in (5, 25):
            for lr in (0.25, 1.0):
                try:
                    model = fasttext.train_supervised(
                        input=train_path, wordNgrams=ngrams, epoch=epoch, lr=lr, dim=100,
                        thread=1, seed=seed, verbose=0)
                except RuntimeError as exc:  # "Encountered NaN.": diverged at this lr
                    if "NaN" not in str(exc):
                        raise
                    continue
                pred = np.asarray([int(o[0][len("__label__"):])
                                   for o in model.predict(dev, k=1)[0]])
                acc = float(np.mean(pred == gold))
                if acc > best[0]:
                    best = (acc, f"wordNgrams={ngrams}, epoch={epoch}, lr={lr:g}, dim=100")
                    model.save_model(model_path)
    return best


# model2vec's default head is one hidden layer of 512 trained at lr 1e-3; the grid starts there.
# A fit costs its epochs (Adam updates the whole embedding table each step), and early stopping
# ends the larger rates sooner: on trec lr 3e-4 ran 19 epochs, 1e-3 to 1e-2 10-12.
_M2V_HEADS = (1, 2)
_M2V_HIDDEN = 512
_M2V_LRS = (1e-3, 3e-3, 1e-2)


def train_model2vec(data: LabeledData, encoders: dict[str, str], seed: int,
                    pca_dims: int = 256) -> tuple[Predict, float, str]:
    """model2vec, the peer for fast classification from a transformer: distil static token
    embeddings from each of `encoders` (display name -> local model folder: the teacher's
    pretrained encoder, the fine-tuned teacher), fine-tune model2vec's classifier (embeddings +
    MLP head) on train with dev for early stopping, and predict with its numpy inference
    pipeline (`to_pipeline`), as its users deploy it.

    Per encoder, the head's depth and the learning rate are picked on dev (`_M2V_HEADS` x
    `_M2V_LRS`: 6 settings, so 12 with two encoders, the size of the other peers' grids). A
    sequence-classification checkpoint distils its encoder: model2vec loads it with AutoModel,
    which drops the classification head only. Each encoder is distilled once (PCA is an exact
    eigendecomposition), and each fit seeds itself with `seed`, so a rerun picks the same.
    """
    try:
        from model2vec.distill import distill
        from model2vec.train import StaticModelForClassification
    except ImportError:
        raise SDistillError("benchmark: model2vec is not installed; pip install "
                            "'model2vec[train]' skeletoken (or: pip install -e .[bench])") \
            from None
    assert data.dev is not None
    if not encoders:
        raise SDistillError("benchmark: model2vec needs at least one encoder to distil")
    best: tuple[float, Any, str] = (-1.0, None, "")
    for name, folder in encoders.items():
        static = distill(model_name=folder, pca_dims=pca_dims)
        for n_layers in _M2V_HEADS:
            for lr in _M2V_LRS:
                classifier = StaticModelForClassification.from_static_model(
                    model=static, n_layers=n_layers, hidden_dim=_M2V_HIDDEN)
                classifier.fit(data.train.texts, data.train.labels, learning_rate=lr,
                               X_val=data.dev.texts, y_val=data.dev.labels, random_seed=seed)
                pipeline = classifier.to_pipeline()
                acc = accuracy(_pipeline_predict(pipeline), data.dev.texts, data.dev.labels)
                if acc > best[0]:
                    best = (acc, pipeline,
                            f"distilled from {name} ({Path(folder).name}), PCA to {pca_dims} "
                            f"dims, head {n_layers} hidden layer{'s' if n_layers > 1 else ''} of "
                            f"{_M2V_HIDDEN}, lr={lr:g}")
    return _pipeline_predict(best[1]), best[0], best[2]


def _pipeline_predict(pipeline: Any) -> Predict:
    """A model2vec `StaticModelPipeline` as a `Predict` (its labels come back as numpy str)."""
    def predict(texts: list[str]) -> list[str]:
        return [str(label) for label in pipeline.predict(texts)]

    return predict


def train_dan_scratch(cfg: Config, data: LabeledData, workdir: Path, report: Reporter
                      ) -> tuple[Predict, float, str, Any]:
    """The student's architecture trained on the gold labels only; lr picked on dev.

    The vocabulary is the training texts' own (same n-gram range and cap): n-grams seen only in
    an unlabelled pool would keep their random embeddings and add noise.
    """
    import torch
    from safetensors.torch import load_file

    from ..inference.network import SparseDAN
    from ..inference.student import Student
    from ..training.trainer import PhaseTrainer, run_phase

    assert data.dev is not None
    s = cfg.student
    vocab = select_vocabulary(count_ngrams(data.train.texts, cfg.vocab), cfg.vocab)
    featurizer = Featurizer(vocab)
    corpus = featurizer(data.train.texts)
    label_id = {lab: i for i, lab in enumerate(data.labels)}
    gold = np.asarray([label_id[x] for x in data.train.labels], dtype=np.int64)
    dev = (featurizer(data.dev.texts), np.asarray([label_id[x] for x in data.dev.labels]))
    bs = s.finetune.batch_size
    per_epoch = max(1, len(gold) // bs)
    epochs = 20
    best: tuple[float, dict[str, Any] | None, str] = (-1.0, None, "")
    for lr in (1e-3, 3e-4):
        torch.manual_seed(cfg.run.seed)
        model = SparseDAN(len(vocab), len(data.labels), s.embedding_dim, s.hidden_dims,
                          s.pooling, s.activation, s.dropout, wide=s.wide)
        work = workdir / f"dan-{lr:g}"
        work.mkdir(parents=True, exist_ok=True)
        trainer = PhaseTrainer(model, s, lr, epochs * per_epoch, 0, "constant",
                               torch.device("cpu"), work, "scratch")
        state = run_phase(trainer, corpus, None, gold, len(gold), dev, epochs * per_epoch, bs,
                          per_epoch, 3, 1.0, 0.0, cfg.run.seed, work / "log.jsonl", report)
        if state["best"] > best[0]:
            best = (state["best"], load_file(str(trainer.best_path)),
                    f"lr={lr:g}, batch {bs}, best of {state['step'] // per_epoch} epochs "
                    f"at epoch {state['best_step'] // per_epoch}, |V|={len(vocab):,}")
    model = SparseDAN(len(vocab), len(data.labels), s.embedding_dim, s.hidden_dims, s.pooling,
                      s.activation, 0.0, initialise=False, wide=s.wide)
    assert best[1] is not None
    model.load_state_dict(best[1], assign=True)
    student = Student(model, vocab, data.labels, s.pooling)
    return student.predict, best[0], best[2], student


