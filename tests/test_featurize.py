"""The featuriser against its reference: scikit-learn's `CountVectorizer(vocabulary=...).transform`
must give the same ids, offsets and counts, for the compiled path and the regex path alike."""

from __future__ import annotations

import json
import random
import re
import sys

import numpy as np
import pytest
from conftest import CORPUS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import CountVectorizer

from sparse_distill import _ngrams
from sparse_distill.errors import DataError
from sparse_distill.featurize import Bag, Featurizer, Vocabulary


def vocabulary(ngrams: list[str], ngram_range=(1, 4), lowercase=True,
               token_pattern=r"(?u)\b\w\w+\b") -> Vocabulary:
    n = len(ngrams)
    return Vocabulary(ngrams=list(ngrams), df=np.ones(n, np.int64), tf=np.ones(n, np.int64),
                      ngram_range=tuple(ngram_range), lowercase=lowercase,
                      token_pattern=token_pattern)


def fitted(texts: list[str], seed: int = 0, **kwargs) -> Vocabulary:
    """CountVectorizer's own vocabulary of `texts`, its ids shuffled (ids are positions)."""
    kwargs.setdefault("ngram_range", (1, 4))
    cv = CountVectorizer(**kwargs).fit(texts)
    ngrams = sorted(cv.vocabulary_)
    random.Random(seed).shuffle(ngrams)
    return vocabulary(ngrams, kwargs["ngram_range"], kwargs.get("lowercase", True),
                      kwargs.get("token_pattern", r"(?u)\b\w\w+\b"))


def assert_matches_sklearn(texts: list[str], vocab: Vocabulary, threads: int = 1) -> Bag:
    featurizer = Featurizer(vocab, threads=threads)
    bag = featurizer(texts)
    expected = CountVectorizer(vocabulary=vocab.ngrams, ngram_range=vocab.ngram_range,
                               lowercase=vocab.lowercase,
                               token_pattern=vocab.token_pattern).transform(texts)
    assert bag.ids.dtype == np.int32 and bag.offsets.dtype == np.int64
    assert bag.weights.dtype == np.float32
    assert len(bag) == len(texts)
    assert np.array_equal(bag.offsets, expected.indptr)
    assert np.array_equal(bag.ids, expected.indices)
    assert np.array_equal(bag.weights, expected.data.astype(np.float32))
    assert (bag.to_csr(len(vocab)) != expected).nnz == 0
    mean = featurizer.bag(texts, mean=True)
    assert np.array_equal(mean.ids, bag.ids) and np.array_equal(mean.offsets, bag.offsets)
    assert np.array_equal(mean.weights, bag.mean_weights())  # bit for bit
    return bag


def test_default_pattern_takes_the_compiled_path_and_others_the_regex_one():
    assert Featurizer(vocabulary(["the film"]))._index is not None
    assert Featurizer(vocabulary(["the film"], token_pattern=r"\b\w\w+\b"))._index is not None
    assert Featurizer(vocabulary(["the film"], token_pattern=r"\w+"))._index is None


def test_equals_countvectorizer_on_a_corpus():
    vocab = fitted(CORPUS)
    bag = assert_matches_sklearn([*CORPUS, "unseen words only", "the film the film", "FILM"],
                                 vocab)
    assert bag.weights.max() == 3  # repeats are counted ("dull" three times)


# Characters chosen to hit every corner of `\w` and of str.lower(): ASCII, digits of other
# scripts, superscripts and Roman numerals (numeric, so word characters), underscores,
# combining marks (not alphanumeric: they split words), U+0130 (lower-cases to two code points),
# capital sigma (final or not), a titlecase digraph, CJK, characters beyond the BMP, a lone
# surrogate, and every kind of space and punctuation.
ALPHABET = [
    *"abcdeFGHxyzZ_0189", "\u00e9", "e\u0301", "\u0301", "\u0130", "I", "i", "\u0131",
    "\u03a3", "\u03c3", "\u03c2", "\u00df", "\ufb01", "\u01c4", "\u01c5", "\u0663",
    "\u00b2", "\u216b", "\u6570", "\u636e", "\u00c4", "\u00ff", "\u0178", "\U0001d400",
    "\U0001f600", "\ud800", "\u200b", "\u00a0", " ", "  ", "\n", "\t", "\r\n", ".", ",", "'",
    "-", "\u2014"]
WORDS = ["the", "film", "FILM", "dull", "İstanbul", "ΟΔΟΣ", "οδος", "naïve", "nai\u0308ve",
         "数据", "snake_case", "x", "a1", "2022", "Ⅻth", "𝐀𝐁", "straße", "ǄEM"]

texts_strategy = st.lists(st.one_of(
    st.lists(st.sampled_from(ALPHABET), max_size=80).map("".join),
    st.lists(st.sampled_from([*WORDS, " ", ". ", "\n"]), max_size=25).map(" ".join),
    st.just(""), st.sampled_from([" ", "\n\t ", "\u00a0\u2003"]),
), min_size=0, max_size=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=texts_strategy, fit_on=st.integers(0, 12), seed=st.integers(0, 3),
       lowercase=st.booleans(), order=st.sampled_from([(1, 1), (1, 2), (1, 4), (2, 3), (3, 5)]),
       max_features=st.sampled_from([None, 5, 40]))
def test_equals_countvectorizer_on_random_unicode(texts, fit_on, seed, lowercase, order,
                                                   max_features):
    # The vocabulary comes from some of the texts (and a fixed corpus), so that the texts hit it.
    vocab = fitted(CORPUS + WORDS + texts[:fit_on], seed, ngram_range=order, lowercase=lowercase,
                   max_features=max_features)
    assert_matches_sklearn(texts, vocab)


def test_a_one_megabyte_text_and_many_threads():
    rng = random.Random(7)
    vocab = fitted(CORPUS + WORDS)
    big = " ".join(rng.choice([*WORDS, "film the", "a real delight", "."]) for _ in range(200_000))
    assert len(big) > 1_000_000
    assert_matches_sklearn([big, "", big[:1000]], vocab)
    many = [" ".join(rng.choices(WORDS, k=rng.randint(0, 30))) for _ in range(3000)]
    one = assert_matches_sklearn(many, vocab, threads=1)
    several = assert_matches_sklearn(many, vocab, threads=3)  # chunks of >= 256 texts
    assert np.array_equal(one.ids, several.ids) and np.array_equal(one.offsets, several.offsets)


def test_vocabulary_entries_the_tokenizer_cannot_produce_never_match():
    # Double spaces, punctuation, one-character tokens, upper case (lowercase=True), orders
    # outside ngram_range: scikit-learn never produces them, so they never match.
    ngrams = ["the  film", "the film", "film.", "a film", "The", "the", "dull film is dull",
              " the", "film ", "", "film"]
    vocab = vocabulary(ngrams, ngram_range=(1, 3))
    bag = assert_matches_sklearn(["The film. A film, the film is dull film is dull"], vocab)
    assert sorted(bag.ids.tolist()) == [1, 5, 10]


def test_empty_inputs():
    vocab = fitted(CORPUS)
    bag = assert_matches_sklearn(["", " ", "x"], vocab)
    assert bag.offsets.tolist() == [0, 0, 0, 0]
    empty = Featurizer(vocab)([])
    assert len(empty) == 0 and empty.offsets.tolist() == [0] and empty.ids.dtype == np.int32


def test_bad_input_is_a_clear_error():
    featurizer = Featurizer(fitted(CORPUS))
    with pytest.raises(TypeError, match=re.escape("texts[1] is int, not str")):
        featurizer(["fine", 3])
    with pytest.raises(ValueError, match=re.escape("ngrams[1] is a duplicate: 'film'")):
        Featurizer(vocabulary(["film", "film"]))


def test_word_characters_are_re_word_characters_at_every_code_point():
    every = "".join(map(chr, range(sys.maxunicode + 1)))
    expected = {m.start() for m in re.finditer(r"\w", every)}
    found = {c for c in range(sys.maxunicode + 1) if _ngrams.is_word_char(c)}
    assert found == expected and len(found) > 100_000


def test_buffers_are_writable_numpy_arrays_that_torch_can_take():
    bag = Featurizer(fitted(CORPUS))(CORPUS)
    assert bag.ids.flags.writeable and bag.weights.flags.writeable


def test_save_load_round_trip(tmp_path):
    vocab = fitted(CORPUS, ngram_range=(1, 2), token_pattern=r"(?u)\b\w+\b", lowercase=False)
    vocab.save(tmp_path)
    again = Vocabulary.load(tmp_path)
    assert again.ngrams == vocab.ngrams
    assert np.array_equal(again.df, vocab.df) and np.array_equal(again.tf, vocab.tf)
    assert (again.ngram_range, again.lowercase, again.token_pattern) == \
        ((1, 2), False, r"(?u)\b\w+\b")
    texts = [*CORPUS, "The FILM"]
    a, b = Featurizer(vocab)(texts), Featurizer(again)(texts)
    assert np.array_equal(a.ids, b.ids) and np.array_equal(a.weights, b.weights)
    assert json.loads((tmp_path / "vocab.json").read_text())["size"] == len(vocab)


def test_load_missing_vocab_says_how_to_build_it(tmp_path):
    with pytest.raises(DataError, match=re.escape("build it with `sdistill vocab CONFIG`")):
        Vocabulary.load(tmp_path)


def test_mean_weights_average_over_occurrences():
    vocab = vocabulary(["a", "film", "dull"], ngram_range=(1, 1), token_pattern=r"\w+")
    bag = Featurizer(vocab)(["a film a film film", "", "dull", ""])
    weights = bag.mean_weights()
    assert weights.dtype == np.float32
    assert np.allclose(np.add.reduceat(weights, [0, 2]), [1.0, 1.0])
    by_id = dict(zip(bag.ids[:2].tolist(), weights[:2].tolist(), strict=True))
    assert by_id[1] == pytest.approx(3 / 5)
    assert np.diff(bag.offsets).tolist() == [2, 0, 1, 0]


def test_the_featuriser_imports_no_training_teacher_or_model_code():
    import subprocess

    code = ("import sys, sparse_distill.featurize; "
            "print(' '.join(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'transformers', 'sklearn', 'scipy', 'datasets') or m in "
            "('sparse_distill.vocab', 'sparse_distill.teacher', 'sparse_distill.student')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.split()
    assert loaded == []
