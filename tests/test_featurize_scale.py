"""The featuriser's reference property (scikit-learn's `CountVectorizer(vocabulary=...)`) at
scale: with the batch cut into chunks on several threads, in the featuriser and in `Student`,
and (slow) with a 1,000,000-entry vocabulary built from real English text.

Every comparison is of whole arrays, element by element: a chunk put back in the wrong place or
with its offsets not rebased keeps every shape and is only caught that way
(`test_the_comparisons_catch_a_wrong_reference` shows each of them is caught).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import DATA
from sklearn.feature_extraction.text import CountVectorizer

from sparse_distill.files import default_cache_dir
from sparse_distill.inference import featurize as featurize_mod
from sparse_distill.inference import student as student_mod
from sparse_distill.inference.featurize import (
    MIN_CHARS_PER_THREAD,
    Bag,
    Featurizer,
    Unseen,
    Vocabulary,
)
from sparse_distill.inference.network import SparseDAN, bag_tensors
from sparse_distill.inference.student import Student
from sparse_distill.training.config import VocabConfig
from sparse_distill.training.vocab import count_ngrams, select_vocabulary

THREADS = (1, 2, 3, 7)


def fixture_texts() -> list[str]:
    """The committed fixtures' texts: labelled sets, then the unlabelled pool."""
    texts = [json.loads(line)["text"]
             for name in ("train.jsonl", "dev.jsonl", "test.jsonl")
             for line in (DATA / name).read_text(encoding="utf-8").splitlines()]
    return texts + (DATA / "pool.txt").read_text(encoding="utf-8").splitlines()


# Words that are in no fixture, so in no vocabulary built here: a text that has n-grams, none
# of them known (checked in `test_the_batches_hold_what_they_claim`).
NO_KNOWN_NGRAM = "Zyxwv qwrtp, VBNMK zyxwv!"
CRAFTED = [
    # Case folding beyond ASCII (U+0130 lower-cases to two code points, final sigma), combining
    # marks (they split words), CJK, characters beyond the BMP, a lone surrogate, underscores.
    "İstanbul ΟΔΟΣ οδος straße ǄEM naïve nai\u0308ve 数据 snake_case 𝐀𝐁 \ud800 film",
    "THE FILM Is A Real DELIGHT, the film is a real delight",
    # Punctuation of every kind between words, and numbers (word characters).
    "«the film» — ‘dull’; (a real) [delight]... 2022/10,000 3.14 the-film the_film",
    "!!! ... ,,, ;;; --- ??? «» — …",  # no word at all
    "x y z 1 2 a",  # one-character tokens only: the default pattern drops them
    " \n\t\u00a0\u2003 ",
    NO_KNOWN_NGRAM,
]
BASE = fixture_texts() + CRAFTED
SEPARATORS = [" ", ". ", "\n", " — ", ""]


def long_text(chars: int, seed: int) -> str:
    """At least `chars` characters of the base texts end to end."""
    rng = random.Random(seed)
    parts: list[str] = []
    while sum(map(len, parts)) < chars:
        parts.append(rng.choice(BASE))
    return " ".join(parts)


def batch(n: int, seed: int) -> list[str]:
    """`n` texts of 1 to 3 base texts each (so that n-grams cross the originals' boundaries),
    with empty texts and texts of unknown words scattered through it from 12 texts on, and an
    empty one last from 17 on."""
    rng = random.Random(seed)
    texts = [rng.choice(SEPARATORS).join(rng.choices(BASE, k=rng.randint(1, 3)))
             for _ in range(n)]
    for i in range(16, n, 17):
        texts[i] = ""
    for i in range(11, n, 23):
        texts[i] = NO_KNOWN_NGRAM
    if n >= 17:
        texts[-1] = ""
    return texts


def mixed_batch() -> list[str]:
    """700 short texts with two 120,000-character ones among them: the chunks are cut by count
    and by length, so they hold very different amounts of text."""
    texts = batch(700, 5)
    texts[1] = long_text(120_000, 1)
    texts[350] = long_text(120_000, 2)
    return texts


# name -> texts; the sizes are chosen against the chunking rule (Featurizer.bag: a chunk is
# worth a thread at 256 texts or MIN_CHARS_PER_THREAD characters, at most 4 chunks a thread).
BATCHES: dict[str, Callable[[], list[str]]] = {
    "empty": lambda: [],
    "one-long": lambda: [long_text(120_000, 0)],
    "two-fewer-than-threads": lambda: [BASE[0], CRAFTED[0]],
    "511": lambda: batch(511, 2),
    "1000-not-divisible-by-3-or-7": lambda: batch(1000, 3),
    "2999": lambda: batch(2999, 4),
    # 3 texts of 2 x MIN_CHARS_PER_THREAD: 6 chunks by length for 3 texts, so some are empty.
    "3-long-more-chunks-than-texts": lambda: [long_text(2 * MIN_CHARS_PER_THREAD, s)[
        :2 * MIN_CHARS_PER_THREAD] for s in range(3)],
    "long-among-short": mixed_batch,
}
# Batches whose point is the split: with threads > 1 they must reach the pool in > 1 chunk.
SPLIT = {"1000-not-divisible-by-3-or-7", "2999", "3-long-more-chunks-than-texts",
         "long-among-short"}


def built_vocabulary(cfg: VocabConfig, texts: list[str]) -> Vocabulary:
    """The package's own vocabulary build (what `sdistill vocab` runs)."""
    return select_vocabulary(count_ngrams(texts, cfg), cfg)


# Two vocabularies of the fixtures, small enough that most text n-grams are unknown: the
# default settings at orders 1-4, and case kept at orders 2-3 with the other spelling of the
# default token pattern (both take the compiled path).
VOCAB_CONFIGS = {
    "lower-1-4": VocabConfig(ngram_range=[1, 4], max_features=300),
    "cased-2-3": VocabConfig(ngram_range=[2, 3], max_features=300, lowercase=False,
                             token_pattern=r"\b\w\w+\b"),
}


@pytest.fixture(scope="module", params=sorted(VOCAB_CONFIGS))
def vocab(request: pytest.FixtureRequest) -> Vocabulary:
    return built_vocabulary(VOCAB_CONFIGS[request.param], fixture_texts())


def sklearn_bag(texts: list[str], vocab: Vocabulary, mean: bool = False) -> Bag:
    """The reference: CountVectorizer's counts with the vocabulary's ids (its n-grams in id
    order), ids sorted within each row; mean=True divides by the row's total in float64."""
    matrix = CountVectorizer(vocabulary=vocab.ngrams, ngram_range=vocab.ngram_range,
                             lowercase=vocab.lowercase,
                             token_pattern=vocab.token_pattern).transform(texts)
    matrix.sort_indices()
    counts = matrix.data.astype(np.float64)  # (nnz,)
    if mean:
        rows = np.repeat(np.arange(len(texts)), np.diff(matrix.indptr))  # (nnz,)
        counts = counts / np.bincount(rows, weights=counts, minlength=len(texts))[rows]
    return Bag(matrix.indices.astype(np.int32), matrix.indptr.astype(np.int64),
               counts.astype(np.float32))


def assert_bags_equal(actual: Bag, expected: Bag, texts: list[str]) -> None:
    """Exactly equal, array by array, naming the first row that differs and its text."""
    assert (actual.ids.dtype, actual.offsets.dtype, actual.weights.dtype) == \
        (np.int32, np.int64, np.float32)
    assert len(actual) == len(expected) == len(texts)
    if np.array_equal(actual.offsets, expected.offsets) and \
            np.array_equal(actual.ids, expected.ids) and \
            np.array_equal(actual.weights, expected.weights):
        return
    for i, text in enumerate(texts):
        got = [x[actual.offsets[i]:actual.offsets[i + 1]] for x in (actual.ids, actual.weights)]
        want = [x[expected.offsets[i]:expected.offsets[i + 1]]
                for x in (expected.ids, expected.weights)]
        if not all(np.array_equal(g, w) for g, w in zip(got, want, strict=True)):
            raise AssertionError(f"row {i} ({text[:80]!r}): ids {got[0][:10]} weights "
                                 f"{got[1][:10]}, expected {want[0][:10]} {want[1][:10]}")
    # Each text's slice is equal: what differs lies past offsets[-1].
    raise AssertionError(f"{len(actual.ids)} ids for offsets[-1] = {actual.offsets[-1]}")


class PoolSpy:
    """Stands in for `thread_pool`: records the sizes of the chunks each `map` is given (by
    purpose), then runs them on the real pool."""

    def __init__(self, real: Callable[[int, str], Any]):
        self.real = real
        self.chunks: dict[str, list[list[int]]] = {"featurize": [], "student": []}

    def __call__(self, threads: int, purpose: str) -> PoolSpy._Recording:
        return PoolSpy._Recording(self.real(threads, purpose), self.chunks[purpose])

    class _Recording:
        def __init__(self, pool: Any, calls: list[list[int]]):
            self.pool, self.calls = pool, calls

        def map(self, fn: Callable[[Any], Any], items: list[Any]) -> Iterator[Any]:
            self.calls.append([len(item) for item in items])
            return self.pool.map(fn, items)


@pytest.fixture
def pools(monkeypatch: pytest.MonkeyPatch) -> PoolSpy:
    spy = PoolSpy(featurize_mod.thread_pool)
    # student.py imported the name itself, so it is patched there too.
    monkeypatch.setattr(featurize_mod, "thread_pool", spy)
    monkeypatch.setattr(student_mod, "thread_pool", spy)
    return spy


# ---------------------------------------------------------------------------------------------
# Default run: the fixtures' vocabularies, every thread count, every batch shape.

def test_the_batches_hold_what_they_claim(vocab: Vocabulary):
    analyzer = CountVectorizer(ngram_range=vocab.ngram_range, lowercase=vocab.lowercase,
                               token_pattern=vocab.token_pattern).build_analyzer()
    assert analyzer(NO_KNOWN_NGRAM) and not set(analyzer(NO_KNOWN_NGRAM)) & set(vocab.ngrams)
    assert len(vocab) == 300  # the fixtures have more n-grams: max_features cut, many unknown
    long = BATCHES["3-long-more-chunks-than-texts"]()
    assert [len(t) for t in long] == [2 * MIN_CHARS_PER_THREAD] * 3


@pytest.mark.parametrize("name", list(BATCHES))
def test_threads_give_the_bag_of_one_thread_and_of_scikit_learn(
        name: str, vocab: Vocabulary, pools: PoolSpy):
    texts = BATCHES[name]()
    for mean in (False, True):
        expected = sklearn_bag(texts, vocab, mean)
        for threads in THREADS:
            pools.chunks["featurize"].clear()
            bag = Featurizer(vocab, threads=threads).bag(texts, mean=mean)
            assert_bags_equal(bag, expected, texts)
            calls = pools.chunks["featurize"]
            if threads > 1 and name in SPLIT:  # the multi-threaded path was taken
                assert len(calls) == 1 and len(calls[0]) > 1 and sum(calls[0]) == len(texts)
            if threads > 1 and name == "3-long-more-chunks-than-texts":
                assert len(calls[0]) > len(texts) and 0 in calls[0]
            if threads == 1:
                assert calls == []


@pytest.mark.parametrize("name", ["2999", "3-long-more-chunks-than-texts"])
def test_threads_give_the_same_hashed_buckets(name: str, vocab: Vocabulary):
    # No reference computes the buckets at scale (test_featurize checks them text by text):
    # here threads=N must equal threads=1 exactly, and the vocabulary's part must equal
    # scikit-learn's.
    texts = BATCHES[name]()
    unseen = Unseen(1009, ngrams=True, subwords=(3, 5))
    one = Featurizer(vocab, threads=1, unseen=unseen)(texts)
    for threads in THREADS[1:]:
        assert_bags_equal(Featurizer(vocab, threads=threads, unseen=unseen)(texts), one, texts)
    known = one.ids < len(vocab)
    rows = np.repeat(np.arange(len(texts)), np.diff(one.offsets))
    offsets = np.zeros(len(texts) + 1, np.int64)
    np.cumsum(np.bincount(rows[known], minlength=len(texts)), out=offsets[1:])
    assert_bags_equal(Bag(one.ids[known], offsets, one.weights[known]),
                      sklearn_bag(texts, vocab), texts)
    assert (~known).sum() > known.sum()  # most n-grams are unknown: the buckets are exercised


def reference_logits(model: SparseDAN, vocab: Vocabulary, texts: list[str],
                     pooling: str) -> np.ndarray:
    """The model run once on the whole batch, featurised in one call on one thread."""
    bag = Featurizer(vocab, threads=1)(texts)
    with torch.inference_mode():
        return model(*bag_tensors(bag, pooling, torch.device("cpu"))).numpy()


# Logits are compared with atol=1e-6 (rtol=0), not bit for bit. The chunks given to the model
# differ between threads=1 and threads=N (`Student.chunks` sizes them by the thread count), and
# while the chunks run on threads torch is on one intra-op thread: CPU GEMM libraries may pick
# another kernel, so another summation order, for another row count or thread count, which moves
# a float32 logit by a few ulps (this machine's torch happens to give identical bits). Logits
# here are of order 0.1-1, so 1e-6 is a few ulps; a real fault (rows swapped between or within
# chunks, a chunk dropped or featurised with another's texts) moves them by > 1e-3
# (test_the_comparisons_catch_a_wrong_reference). The model's inputs are exact:
# test_threads_give_the_bag_of_one_thread_and_of_scikit_learn.
ATOL = 1e-6


@pytest.mark.parametrize("pooling", ["mean", "sum", "max"])
def test_student_threads_give_the_logits_of_one_thread(pooling: str, pools: PoolSpy):
    vocab = built_vocabulary(VOCAB_CONFIGS["lower-1-4"], fixture_texts())
    torch.manual_seed(0)
    model = SparseDAN(len(vocab), 3, embedding_dim=16, hidden_dims=[8], pooling=pooling,
                      dropout=0.0)
    for n in (0, 1, 5, 700, 1500):
        texts = batch(n, n)
        expected = reference_logits(model, vocab, texts, pooling)
        for batch_size in (1024, 100):
            one = Student(model, vocab, ["a", "b", "c"], pooling, threads=1).logits(
                texts, batch_size)
            assert one.shape == (n, 3) and one.dtype == np.float32
            assert np.allclose(one, expected, rtol=0, atol=ATOL)
            for threads in THREADS[1:]:
                student = Student(model, vocab, ["a", "b", "c"], pooling, threads=threads)
                pools.chunks["student"].clear()
                logits = student.logits(texts, batch_size)
                assert logits.shape == (n, 3)
                assert np.allclose(logits, one, rtol=0, atol=ATOL), \
                    (n, batch_size, threads, np.abs(logits - one).max())
                # From 700 texts on, every batch size and thread count here splits the call,
                # and the chunks ran on the pool, in these sizes.
                chunks = student.chunks(texts, batch_size)
                assert (len(chunks) > 1) == (n >= 700)
                if n >= 700:
                    assert pools.chunks["student"] == [[len(c) for c in chunks]]


def test_the_comparisons_catch_a_wrong_reference(vocab: Vocabulary):
    texts = BATCHES["1000-not-divisible-by-3-or-7"]()
    bag = Featurizer(vocab, threads=3)(texts)
    expected = sklearn_bag(texts, vocab)
    assert_bags_equal(bag, expected, texts)
    # The reference of the texts in another order: same shapes, same multiset of ids.
    order = np.random.default_rng(0).permutation(len(texts))
    permuted = sklearn_bag([texts[i] for i in order], vocab)
    assert permuted.ids.shape == bag.ids.shape
    with pytest.raises(AssertionError, match=r"^row \d+ "):
        assert_bags_equal(bag, permuted, texts)
    # Two chunks concatenated with the second's offsets not rebased, or in the wrong order.
    half = len(texts) // 2
    a, b = Featurizer(vocab, threads=1)(texts[:half]), Featurizer(vocab, threads=1)(texts[half:])
    not_rebased = Bag(np.concatenate([a.ids, b.ids]), np.concatenate([a.offsets, b.offsets[1:]]),
                      np.concatenate([a.weights, b.weights]))
    swapped = Bag(np.concatenate([b.ids, a.ids]),
                  np.concatenate([b.offsets, a.offsets[1:] + b.offsets[-1]]),
                  np.concatenate([b.weights, a.weights]))
    for wrong in (not_rebased, swapped):
        with pytest.raises(AssertionError, match=r"^row \d+ "):
            assert_bags_equal(wrong, expected, texts)
    # Ids out of order within a row, or one count off by one.
    row = int(np.argmax(np.diff(bag.offsets)))
    start = int(bag.offsets[row])
    ids = bag.ids.copy()
    ids[[start, start + 1]] = ids[[start + 1, start]]
    weights = bag.weights.copy()
    weights[start] += 1
    for wrong in (Bag(ids, bag.offsets, bag.weights), Bag(bag.ids, bag.offsets, weights)):
        with pytest.raises(AssertionError, match=f"row {row} "):
            assert_bags_equal(wrong, expected, texts)
    # The logits' tolerance still sees two rows swapped.
    torch.manual_seed(0)
    model = SparseDAN(len(vocab), 3, 16, [8], "mean", dropout=0.0)
    logits = reference_logits(model, vocab, texts[1:3], "mean")
    assert np.abs(logits[0] - logits[1]).max() > 1000 * ATOL
    assert not np.allclose(logits[::-1], logits, rtol=0, atol=ATOL)


# ---------------------------------------------------------------------------------------------
# Slow: a 1,000,000-entry vocabulary of real English text.

def general_pool() -> Path:
    return default_cache_dir() / "data" / "pool-general" / "pool.txt"


@pytest.mark.slow
def test_a_million_entry_vocabulary_of_real_text_against_scikit_learn(pools: PoolSpy):
    path = general_pool()
    if not path.is_file():
        pytest.skip(f"{path} is absent: fetch it with `sdistill data fetch pool-general`")
    lines = path.read_text(encoding="utf-8").splitlines()
    # Every 50th line held out (~5,300): both of the pool's sources (WikiText first, Tatoeba
    # after), none of them seen by the vocabulary.
    held_out = lines[::50]
    train = [line for i, line in enumerate(lines) if i % 50]
    cfg = VocabConfig(ngram_range=[1, 4], max_features=1_000_000)
    vocab = built_vocabulary(cfg, train)
    assert len(vocab) == 1_000_000 and len(set(vocab.ngrams)) == 1_000_000
    counts = sklearn_bag(held_out, vocab)
    for expected, mean in ((counts, False), (sklearn_bag(held_out, vocab, mean=True), True)):
        for threads in (1, 2):
            pools.chunks["featurize"].clear()
            assert_bags_equal(Featurizer(vocab, threads=threads).bag(held_out, mean=mean),
                              expected, held_out)
            if threads == 2:
                assert len(pools.chunks["featurize"][0]) > 1
    # The held-out texts reach every part of the vocabulary, 4-grams and its rarest end included,
    # and about as many of their n-gram occurrences are unknown as known (the vocabulary is not
    # theirs): 24 of ids >= 990,000, 110,901 known of 192,310 when this was written.
    hit = np.unique(counts.ids)
    assert hit.max() >= 990_000 and len(hit) > 20_000
    assert any(vocab.ngrams[i].count(" ") == 3 for i in hit[-1000:])
    analyzer = CountVectorizer(ngram_range=(1, 4)).build_analyzer()
    occurrences = sum(len(analyzer(t)) for t in held_out)
    assert 0.25 * occurrences < counts.weights.sum() < 0.75 * occurrences
