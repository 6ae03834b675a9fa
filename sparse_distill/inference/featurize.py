"""Texts -> n-gram ids: the vocabulary and the featuriser, the first piece of the inference path.

Output is exactly scikit-learn's `CountVectorizer(vocabulary=...).transform`: the same
lower-casing, token pattern and word n-grams, each text's distinct ids in ascending order with
their counts. For the default token pattern `(?u)\\b\\w\\w+\\b` and for the `scripts` rule
(`tokens`: each character of a script written without spaces is a token) the work is done by the
compiled extension `_ngrams` beside this module (a hash-table trie over the vocabulary, run without
the GIL on every core); any other `vocab.token_pattern` goes through scikit-learn's own regex path.

This module imports numpy and the extension only: no torch, no training, teacher or transformers
code, and scikit-learn only for a non-default token pattern.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .tokens import COMPILED_PATTERNS, normalizer, pattern

VOCAB_FILE = "vocab.json"
# Texts a thread takes at a time: below this, handing work to a thread costs more than it saves.
MIN_TEXTS_PER_THREAD = 256
# The same, counted in characters, for long texts: 256 snippets of ~120 characters.
MIN_CHARS_PER_THREAD = 256 * 120


@dataclass
class Bag:
    """A batch of texts as EmbeddingBag inputs (CSR layout).

    ids: (nnz,) int32 vocabulary ids, ascending within each text; offsets: (n_texts + 1,) int64
    start of each text in `ids` plus the end (use `include_last_offset=True`); weights: (nnz,)
    float32 occurrence counts of each n-gram in its text.
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

    def layout(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows `idx`'s starts (batch,) and lengths (batch,) in the flat arrays, and the
        offsets (batch + 1,) of the same rows laid end to end."""
        starts = self.offsets[idx]  # (batch,)
        lengths = self.offsets[idx + 1] - starts  # (batch,)
        offsets = np.zeros(len(idx) + 1, dtype=np.int64)  # (batch + 1,)
        np.cumsum(lengths, out=offsets[1:])
        return starts, lengths, offsets

    def rows(self, idx: np.ndarray) -> Bag:
        """The bags of rows `idx`, gathered without a per-row Python loop (from memory-mapped
        arrays too: the training corpus is a Bag on disk)."""
        starts, lengths, offsets = self.layout(idx)
        # Position of every element in the flat arrays: its row's start plus its rank in the row.
        flat = np.arange(offsets[-1], dtype=np.int64) + np.repeat(starts - offsets[:-1], lengths)
        return Bag(np.asarray(self.ids[flat]), offsets, np.asarray(self.weights[flat]))

    def span(self, start: int, stop: int) -> Bag:
        """Rows start..stop - 1, copied into memory (a memory map's slice stays read-only)."""
        lo, hi = int(self.offsets[start]), int(self.offsets[stop])
        return Bag(np.array(self.ids[lo:hi]), self.offsets[start:stop + 1] - lo,
                   np.array(self.weights[lo:hi]))

    def to_csr(self, n_features: int) -> Any:
        from scipy import sparse

        return sparse.csr_matrix((self.weights, self.ids, self.offsets),
                                 shape=(len(self), n_features))


@dataclass(frozen=True)
class Unseen:
    """Hashed rows after the vocabulary's for what it lacks: fastText's hashing trick.

    buckets: how many rows (0: none, the paper's student). ngrams: a word n-gram of the text
    that is not in the vocabulary takes the row its hash picks. subwords: (min, max) lengths of
    the character n-grams of a word that is not in the vocabulary as a unigram (fastText's
    sub-words, of the word wrapped in '<' '>'), or None. Rows are shared by whatever hashes to
    them, as in fastText; the compiled featuriser only (the default token pattern).
    """

    buckets: int = 0
    ngrams: bool = True
    subwords: tuple[int, int] | None = (3, 5)

    def to_json(self) -> dict[str, Any]:
        return {"buckets": self.buckets, "ngrams": self.ngrams,
                "subwords": list(self.subwords) if self.subwords else None}

    @classmethod
    def from_json(cls, meta: dict[str, Any] | None) -> Unseen:
        """`None` (a student saved before buckets existed) is no buckets."""
        if not meta:
            return cls(0)
        sub = meta.get("subwords")
        return cls(int(meta["buckets"]), bool(meta["ngrams"]),
                   (int(sub[0]), int(sub[1])) if sub else None)


NO_BUCKETS = Unseen(0)


@dataclass
class Vocabulary:
    """N-grams in id order (most frequent first), with their document and term frequencies."""

    ngrams: list[str]
    df: np.ndarray  # (|V|,) int64: texts containing the n-gram
    tf: np.ndarray  # (|V|,) int64: occurrences in the corpus
    ngram_range: tuple[int, int]
    lowercase: bool
    token_pattern: str
    # The token rule (inference.tokens): "words" (token_pattern; every vocabulary made before
    # the rule existed) or "scripts" (unspaced scripts' characters are tokens of their own).
    tokens: str = "words"
    # Unicode normalisation before anything else ("none" for every vocabulary made before it).
    normalize: str = "none"

    def __len__(self) -> int:
        return len(self.ngrams)

    @property
    def compiled(self) -> bool:
        """Whether the compiled featuriser handles this vocabulary's token pattern."""
        return self.token_pattern in COMPILED_PATTERNS

    @property
    def pattern(self) -> str:
        """The regular expression of this vocabulary's tokens (scikit-learn's token_pattern)."""
        return pattern(self.tokens, self.token_pattern)

    def vectorizer(self) -> Any:
        """scikit-learn's `CountVectorizer` with this vocabulary: the reference semantics."""
        from sklearn.feature_extraction.text import CountVectorizer

        norm = normalizer(self.normalize)
        return CountVectorizer(vocabulary=self.ngrams, ngram_range=self.ngram_range,
                               lowercase=self.lowercase, token_pattern=self.pattern,
                               preprocessor=None if norm is None else
                               (lambda t: norm(t).lower()) if self.lowercase else norm,
                               dtype=np.float32)

    def featurizer(self, threads: int | None = None, unseen: Unseen = NO_BUCKETS) -> Featurizer:
        return Featurizer(self, threads, unseen)

    def save(self, directory: str | Path) -> None:
        """vocab.json (settings + n-grams) and df.npy / tf.npy; no pickle anywhere."""
        from ..files import atomic_write_json

        directory = Path(directory)
        atomic_write_json(directory / VOCAB_FILE, {
            "format": 1, "size": len(self), "ngram_range": list(self.ngram_range),
            "lowercase": self.lowercase, "token_pattern": self.token_pattern,
            "tokens": self.tokens, "normalize": self.normalize, "ngrams": self.ngrams})
        np.save(directory / "df.npy", self.df.astype(np.int64), allow_pickle=False)
        np.save(directory / "tf.npy", self.tf.astype(np.int64), allow_pickle=False)

    @classmethod
    def load(cls, directory: str | Path) -> Vocabulary:
        directory = Path(directory)
        path = directory / VOCAB_FILE
        if not path.is_file():
            raise DataError(f"{directory}: no {VOCAB_FILE}; build it with `sdistill vocab CONFIG`")
        # Parsed from bytes: text mode translates newlines over the whole file first, which
        # costs twice the parse (0.17 s of a 20 MB vocabulary; a load should take under 1 s).
        meta = json.loads(path.read_bytes())
        return cls(ngrams=meta["ngrams"],
                   df=np.load(directory / "df.npy", allow_pickle=False),
                   tf=np.load(directory / "tf.npy", allow_pickle=False),
                   ngram_range=tuple(meta["ngram_range"]),  # type: ignore[arg-type]
                   lowercase=meta["lowercase"], token_pattern=meta["token_pattern"],
                   tokens=meta.get("tokens", "words"), normalize=meta.get("normalize", "none"))


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def compiled_module() -> Any:
    """The compiled extension, or a DataError that says how to build it."""
    try:
        from . import _ngrams
    except ImportError as exc:
        raise DataError(f"the compiled featuriser sparse_distill.inference._ngrams is not built "
                        f"({exc}); "
                        "reinstall the package with a C compiler present: pip install -e .") \
            from None
    return _ngrams


_POOLS: dict[tuple[str, int], ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def thread_pool(threads: int, purpose: str) -> ThreadPoolExecutor:
    """The process's pool of `threads` threads for `purpose`, shared by every object with that
    purpose. Pools of different purposes are apart, so that work in one may wait on another
    without taking its threads."""
    with _POOLS_LOCK:
        if (purpose, threads) not in _POOLS:
            _POOLS[purpose, threads] = ThreadPoolExecutor(
                threads, thread_name_prefix=f"sdistill-{purpose}")
        return _POOLS[purpose, threads]


class Featurizer:
    """Texts -> `Bag`, with exactly the content of `CountVectorizer(vocabulary=...).transform`,
    plus, with `unseen.buckets` > 0, ids |V| .. |V| + buckets - 1 for what the vocabulary lacks
    (`Unseen`).

    `threads`: how many threads share a large batch (default: every usable CPU). The compiled
    path releases the GIL, so they run in parallel; a batch of fewer than 2 x 256 texts runs in
    the calling thread.
    """

    def __init__(self, vocab: Vocabulary, threads: int | None = None,
                 unseen: Unseen = NO_BUCKETS):
        self.vocab = vocab
        self.unseen = unseen
        self.threads = max(1, threads or usable_cpus())
        self._normalize = normalizer(vocab.normalize)
        if unseen.buckets and not vocab.compiled:
            raise DataError(f"hashed buckets for unseen n-grams need the default token pattern "
                            f"(vocab.token_pattern is {vocab.token_pattern!r}); set "
                            "student.buckets: 0 or drop vocab.token_pattern")
        if vocab.compiled:
            lo, hi = vocab.ngram_range
            minn, maxn = unseen.subwords or (0, 0)
            self._index = compiled_module().Index(vocab.ngrams, lo, hi, vocab.lowercase,
                                                  unseen.buckets, unseen.ngrams, minn, maxn,
                                                  vocab.tokens == "scripts")
        else:
            self._index = None
            self._vectorizer = vocab.vectorizer()
            self._vectorizer.fit([])  # a fixed vocabulary: fitting only validates it

    @property
    def n_rows(self) -> int:
        """Rows of the table this featuriser's ids index: the vocabulary, then the buckets."""
        return len(self.vocab) + self.unseen.buckets

    def __call__(self, texts: Sequence[str]) -> Bag:
        return self.bag(texts)

    def bag(self, texts: Sequence[str], mean: bool = False) -> Bag:
        """The texts' n-grams. mean=True: weights are count / the text's total (the weights of a
        count-weighted mean, `Bag.mean_weights()`) instead of counts."""
        if self._normalize is not None:
            texts = list(map(self._normalize, texts))
        if self._index is None:
            matrix = self._vectorizer.transform(texts)  # (n_texts, |V|) CSR, sorted per row
            bag = Bag(ids=matrix.indices.astype(np.int32, copy=False),
                      offsets=matrix.indptr.astype(np.int64, copy=False),
                      weights=matrix.data.astype(np.float32, copy=False))
            return Bag(bag.ids, bag.offsets, bag.mean_weights()) if mean else bag
        if not isinstance(texts, list):
            texts = list(texts)
        # A few chunks a thread, so that one of long texts does not leave the others waiting.
        # A chunk is worth a thread when it holds MIN_TEXTS_PER_THREAD texts or as many
        # characters: 1,024 documents of 210 words made 4 chunks by count, and 42 by length.
        n_chunks = min(4 * self.threads, max(len(texts) // MIN_TEXTS_PER_THREAD,
                                             _chars(texts) // MIN_CHARS_PER_THREAD))
        if n_chunks <= 1 or self.threads == 1:
            return _as_bag([self._index.featurize(texts, mean)])
        bounds = np.linspace(0, len(texts), n_chunks + 1).astype(int)
        chunks = [texts[a:b] for a, b in itertools.pairwise(bounds)]
        return _as_bag(list(thread_pool(self.threads, "featurize").map(
            lambda chunk: self._index.featurize(chunk, mean), chunks)))

    def nbytes(self) -> int:
        """Memory held by the compiled index (0 on the regex path)."""
        return self._index.nbytes if self._index is not None else 0


def _chars(texts: list[str]) -> int:
    """Characters in `texts`; 0 when one is not a str, which the featuriser then reports by
    its position."""
    try:
        return sum(map(len, texts))
    except TypeError:
        return 0


def _as_bag(parts: list[tuple[bytearray, bytearray, bytearray]]) -> Bag:
    """The compiled featuriser's (ids, offsets, weights) per chunk -> one Bag."""
    if len(parts) == 1:  # the extension's buffers as they are: no copy
        ids, offsets, weights = parts[0]
        return Bag(np.frombuffer(ids, dtype=np.int32), np.frombuffer(offsets, dtype=np.int64),
                   np.frombuffer(weights, dtype=np.float32))
    ids = [np.frombuffer(p[0], dtype=np.int32) for p in parts]
    starts = [np.frombuffer(p[1], dtype=np.int64) for p in parts]  # each (chunk + 1,)
    offsets = np.empty(sum(len(o) - 1 for o in starts) + 1, dtype=np.int64)  # (n_texts + 1,)
    offsets[0] = 0
    at, base = 1, 0
    for o, i in zip(starts, ids, strict=True):
        offsets[at:at + len(o) - 1] = o[1:] + base
        at += len(o) - 1
        base += len(i)
    return Bag(np.concatenate(ids), offsets,
               np.concatenate([np.frombuffer(p[2], dtype=np.float32) for p in parts]))
