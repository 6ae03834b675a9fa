"""The n-gram vocabulary stage and the featuriser that turns texts into EmbeddingBag inputs.

Semantics are scikit-learn's `CountVectorizer`: the same preprocessing, token pattern and word
n-grams (its own analyzer is used), document frequencies for min_df/max_df and corpus term
frequencies for max_features. Counting streams over the corpus in chunks; memory is bounded by
`vocab.max_candidates` distinct n-grams, beyond which the rarest are pruned (recorded in the
manifest, so a vocabulary is known to be exact when nothing was pruned).
"""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import CountVectorizer

from .config import Config, VocabConfig, as_config
from .data import PoolStats, iter_pool, load_labeled
from .errors import DataError
from .rundir import (
    StageResult,
    atomic_write_json,
    begin_stage,
    make_manifest,
    staged_dir,
    write_resolved_config,
)

VOCAB_FILE = "vocab.json"


@dataclass
class Bag:
    """A batch of texts as EmbeddingBag inputs (CSR layout).

    ids: (nnz,) int32 vocabulary ids, sorted within each text; offsets: (n_texts + 1,) int64 start
    of each text in `ids` plus the end (use `include_last_offset=True`); weights: (nnz,) float32
    occurrence counts of each n-gram in its text.
    """

    ids: np.ndarray
    offsets: np.ndarray
    weights: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def mean_weights(self) -> np.ndarray:
        """(nnz,) weights that make a sum-pooled bag the count-weighted mean of its n-grams."""
        lengths = np.diff(self.offsets)  # (n_texts,)
        rows = np.repeat(np.arange(len(self)), lengths)  # (nnz,) the text of each id
        totals = np.bincount(rows, weights=self.weights, minlength=len(self))  # (n_texts,)
        return (self.weights / totals[rows]).astype(np.float32)

    def to_csr(self, n_features: int) -> sparse.csr_matrix:
        return sparse.csr_matrix((self.weights, self.ids, self.offsets),
                                 shape=(len(self), n_features))


@dataclass
class Vocabulary:
    """N-grams in id order (most frequent first), with their document and term frequencies."""

    ngrams: list[str]
    df: np.ndarray  # (|V|,) int64: texts containing the n-gram
    tf: np.ndarray  # (|V|,) int64: occurrences in the corpus
    ngram_range: tuple[int, int]
    lowercase: bool
    token_pattern: str

    def __len__(self) -> int:
        return len(self.ngrams)

    def vectorizer(self) -> CountVectorizer:
        return CountVectorizer(vocabulary=self.ngrams, ngram_range=self.ngram_range,
                               lowercase=self.lowercase, token_pattern=self.token_pattern,
                               dtype=np.float32)

    def featurizer(self) -> Featurizer:
        return Featurizer(self)

    def save(self, directory: str | Path) -> None:
        """vocab.json (settings + n-grams) and df.npy / tf.npy; no pickle anywhere."""
        directory = Path(directory)
        atomic_write_json(directory / VOCAB_FILE, {
            "format": 1, "size": len(self), "ngram_range": list(self.ngram_range),
            "lowercase": self.lowercase, "token_pattern": self.token_pattern,
            "ngrams": self.ngrams})
        np.save(directory / "df.npy", self.df.astype(np.int64), allow_pickle=False)
        np.save(directory / "tf.npy", self.tf.astype(np.int64), allow_pickle=False)

    @classmethod
    def load(cls, directory: str | Path) -> Vocabulary:
        directory = Path(directory)
        path = directory / VOCAB_FILE
        if not path.is_file():
            raise DataError(f"{directory}: no {VOCAB_FILE}; build it with `sdistill vocab CONFIG`")
        meta = json.loads(path.read_text(encoding="utf-8"))
        return cls(ngrams=meta["ngrams"],
                   df=np.load(directory / "df.npy", allow_pickle=False),
                   tf=np.load(directory / "tf.npy", allow_pickle=False),
                   ngram_range=tuple(meta["ngram_range"]),  # type: ignore[arg-type]
                   lowercase=meta["lowercase"], token_pattern=meta["token_pattern"])


class Featurizer:
    """Texts -> `Bag`, with exactly the content of `CountVectorizer(vocabulary=...).transform`."""

    def __init__(self, vocab: Vocabulary):
        self.vocab = vocab
        self._vectorizer = vocab.vectorizer()
        self._vectorizer.fit([])  # a fixed vocabulary: fitting only validates it

    def __call__(self, texts: list[str]) -> Bag:
        matrix = self._vectorizer.transform(texts)  # (n_texts, |V|) CSR, indices sorted per row
        return Bag(ids=matrix.indices.astype(np.int32, copy=False),
                   offsets=matrix.indptr.astype(np.int64, copy=False),
                   weights=matrix.data.astype(np.float32, copy=False))


@dataclass
class NgramCounts:
    tf: Counter[str]
    df: Counter[str]
    n_docs: int
    # How much any count may be too low after pruning (0: the counts are exact). An n-gram pruned
    # at threshold t loses up to t and starts again from zero, so the bound is the sum of the
    # thresholds of every pruning, not the largest.
    max_undercount: int = 0
    prunings: int = 0


def analyzer(cfg: VocabConfig) -> Callable[[str], list[str]]:
    """scikit-learn's own analyzer: text -> the list of its n-grams, repeats included."""
    return CountVectorizer(ngram_range=tuple(cfg.ngram_range), lowercase=cfg.lowercase,
                           token_pattern=cfg.token_pattern).build_analyzer()


def _batched(items: Iterable[str], size: int) -> Iterator[list[str]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def count_ngrams(texts: Iterable[str], cfg: VocabConfig,
                 on_chunk: Callable[[int], None] | None = None) -> NgramCounts:
    """Term and document frequency of every n-gram, streaming over `texts` in chunks."""
    analyze = analyzer(cfg)
    counts = NgramCounts(Counter(), Counter(), 0)
    for chunk in _batched(texts, cfg.chunk_size):
        docs = list(map(analyze, chunk))
        # Counter.update over an iterable counts in C: no per-n-gram Python loop.
        counts.tf.update(itertools.chain.from_iterable(docs))
        counts.df.update(itertools.chain.from_iterable(map(set, docs)))
        counts.n_docs += len(chunk)
        if len(counts.tf) > cfg.max_candidates:
            _prune(counts, cfg.max_candidates // 2)
        if on_chunk is not None:
            on_chunk(len(chunk))
    return counts


def _prune(counts: NgramCounts, keep: int) -> None:
    """Drop the rarest n-grams so that at most `keep` remain (all of one count go together)."""
    tf = np.fromiter(counts.tf.values(), dtype=np.int64, count=len(counts.tf))
    threshold = int(np.partition(tf, len(tf) - keep - 1)[len(tf) - keep - 1])
    counts.tf = Counter({k: v for k, v in counts.tf.items() if v > threshold})
    counts.df = Counter({k: counts.df[k] for k in counts.tf})
    counts.max_undercount += threshold
    counts.prunings += 1


def select_vocabulary(counts: NgramCounts, cfg: VocabConfig) -> Vocabulary:
    """CountVectorizer's selection: min_df <= df <= max_df * n_docs, then the max_features
    n-grams of highest corpus frequency.

    Ids go from the most frequent n-gram down; equal frequencies keep the order in which the
    n-grams first occurred (train texts first, then the pool), which fixes the result for fixed
    inputs without sorting millions of strings.
    """
    keys = list(counts.tf)  # in order of first occurrence
    tf = np.fromiter(counts.tf.values(), dtype=np.int64, count=len(keys))  # (n_candidates,)
    df = np.fromiter(map(counts.df.__getitem__, keys), dtype=np.int64, count=len(keys))
    chosen = np.flatnonzero((df >= cfg.min_df) & (df <= cfg.max_df * counts.n_docs))
    if len(chosen) == 0:
        raise DataError(f"vocab: no n-gram is left after vocab.min_df={cfg.min_df} and "
                        f"vocab.max_df={cfg.max_df} on {counts.n_docs} texts; lower vocab.min_df "
                        "or add text")
    order = chosen[np.argsort(-tf[chosen], kind="stable")][:cfg.max_features]
    return Vocabulary(ngrams=[keys[i] for i in order.tolist()], df=df[order], tf=tf[order],
                      ngram_range=(cfg.ngram_range[0], cfg.ngram_range[1]),
                      lowercase=cfg.lowercase, token_pattern=cfg.token_pattern)


def build_vocab(cfg: Config | str | Path, *, force: bool = False,
                progress: Callable[[int], None] | None = None) -> StageResult:
    """Fit the n-gram vocabulary on train + unlabelled text and write RUN/vocab/.

    `progress` is called with the number of texts of each counted chunk (the CLI shows a bar).
    """
    cfg = as_config(cfg)
    out = cfg.run_dir() / "vocab"
    inputs, fp, done = begin_stage(cfg, "vocab", force)
    if done is not None:
        return done
    start = time.perf_counter()
    labeled = load_labeled(cfg)
    pool = PoolStats()
    texts = itertools.chain(labeled.train.texts, iter_pool(cfg, labeled, pool))
    labeled_s = time.perf_counter() - start
    # The pool is read while it is counted: count_s includes reading it.
    counts = count_ngrams(texts, cfg.vocab, on_chunk=progress)
    count_s = time.perf_counter() - start - labeled_s
    vocab = select_vocabulary(counts, cfg.vocab)
    select_s = time.perf_counter() - start - labeled_s - count_s
    manifest = make_manifest(
        cfg, "vocab", fp, inputs,
        counts={
            "texts": counts.n_docs,
            "train": len(labeled.train.texts),
            "pool": pool.as_dict(),
            "splits": {s.name: s.stats.as_dict() for s in labeled.splits()},
            "distinct_ngrams_counted": len(counts.tf),
            "vocab_size": len(vocab),
            "exact": counts.prunings == 0,
            "prunings": counts.prunings,
            "max_undercount": counts.max_undercount,
        },
        labels=labeled.labels,
        timings={"read_labeled_s": labeled_s, "count_s": count_s, "select_s": select_s,
                 "total_s": time.perf_counter() - start})
    with staged_dir(out, force=True) as tmp:
        vocab.save(tmp)
        atomic_write_json(tmp / "manifest.json", manifest)
    write_resolved_config(cfg)
    return StageResult("vocab", out, False, manifest)
