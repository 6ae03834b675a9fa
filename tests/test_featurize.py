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

from sparse_distill.errors import DataError
from sparse_distill.inference import _ngrams
from sparse_distill.inference.featurize import Bag, Featurizer, Unseen, Vocabulary


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

    code = ("import sys, sparse_distill.inference.featurize; "
            "print(' '.join(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'transformers', 'sklearn', 'scipy', 'datasets') or m.startswith("
            "('sparse_distill.training', 'sparse_distill.inference.student', "
            "'sparse_distill.inference.network'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.split()
    assert loaded == []


# ---------------------------------------------------------------------------------------------
# Hashed buckets for what the vocabulary lacks: against a reference written from the C file's
# comments (token keys, MurmurHash3's finaliser, the two seeds), one text at a time.

M64 = (1 << 64) - 1


def mix64(x: int) -> int:
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & M64
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & M64
    return x ^ (x >> 33)


def token_key(token: str) -> int:
    """A token of <= 8 code points below 256 is them packed; any other, FNV-1a then mix64."""
    codes = [ord(c) for c in token]
    if len(codes) <= 8 and max(codes) < 256:
        return sum(c << (8 * i) for i, c in enumerate(codes))
    h = 0xCBF29CE484222325
    for c in codes:
        h = ((h ^ c) * 0x100000001B3) & M64
    return mix64(h ^ len(codes))


def reference_bucket_ids(text: str, vocab: Vocabulary, buckets: int, ngrams: bool,
                         subwords: tuple[int, int] | None) -> list[int]:
    index = {g: i for i, g in enumerate(vocab.ngrams)}
    tokens = re.findall(r"(?u)\b\w\w+\b", text.lower())
    lo, hi = vocab.ngram_range
    out = []
    for k in range(len(tokens)):
        h = 0x9E3779B97F4A7C15
        for n in range(1, hi + 1):
            if k + n > len(tokens):
                break
            h = mix64(h ^ token_key(tokens[k + n - 1]))
            if ngrams and n >= lo and " ".join(tokens[k:k + n]) not in index:
                out.append(len(vocab) + h % buckets)
    for token in tokens if subwords else []:
        if token in index:
            continue
        wrapped = [ord("<"), *map(ord, token), ord(">")]
        for s in range(len(wrapped)):
            h = 0xC2B2AE3D27D4EB4F
            for m in range(1, min(subwords[1], len(wrapped) - s) + 1):
                h = mix64(h ^ wrapped[s + m - 1])
                bracket = m == 1 and s in (0, len(wrapped) - 1)
                if m >= subwords[0] and not bracket:
                    out.append(len(vocab) + h % buckets)
    return out


@pytest.mark.parametrize(("ngrams", "subwords"), [(True, (3, 5)), (False, (2, 4)), (True, None)])
def test_buckets_add_hashed_ids_for_unseen_ngrams_and_subwords(ngrams, subwords):
    texts = [*CORPUS[::2], "Ünïcödé wörds ÄND a Verylongwordindeed unwatchable", "", "a b c"]
    vocab = fitted(CORPUS[1::2], ngram_range=(1, 3))
    buckets = 97
    plain = Featurizer(vocab, threads=1)(texts)
    hashed = Featurizer(vocab, threads=1, unseen=Unseen(buckets, ngrams, subwords))
    assert hashed.n_rows == len(vocab) + buckets
    bag = hashed(texts)
    for i, text in enumerate(texts):
        ids = bag.ids[bag.offsets[i]:bag.offsets[i + 1]]
        counts = bag.weights[bag.offsets[i]:bag.offsets[i + 1]]
        assert np.all(np.diff(ids) > 0)  # distinct, ascending
        known = ids < len(vocab)
        # The vocabulary's part is untouched: exactly CountVectorizer's row.
        assert np.array_equal(ids[known], plain.ids[plain.offsets[i]:plain.offsets[i + 1]])
        expected_ids, expected_counts = np.unique(
            reference_bucket_ids(text, vocab, buckets, ngrams, subwords), return_counts=True)
        assert np.array_equal(ids[~known], expected_ids)
        assert np.array_equal(counts[~known], expected_counts.astype(np.float32))
    assert Featurizer(vocab, threads=2, unseen=Unseen(buckets, ngrams, subwords))(
        texts * 20).ids.tolist() == Featurizer(vocab, threads=1, unseen=Unseen(
            buckets, ngrams, subwords))(texts * 20).ids.tolist()


def test_an_unseen_word_shares_subword_buckets_with_its_relatives():
    vocab = vocabulary(["the", "film"], ngram_range=(1, 1))
    featurizer = Featurizer(vocab, unseen=Unseen(1 << 20, ngrams=False, subwords=(3, 5)))
    bag = featurizer(["unwatchable", "watchable", "the film"])
    rows = [set(bag.ids[bag.offsets[i]:bag.offsets[i + 1]].tolist()) for i in range(3)]
    assert len(rows[0] & rows[1]) >= 10  # "wat", "atch", "chable", "ble>", ...
    assert rows[2] == {0, 1}  # known words get no sub-words


def test_buckets_need_the_compiled_path_and_fit_in_int32():
    with pytest.raises(DataError, match=re.escape("student.buckets")):
        Featurizer(vocabulary(["the film"], token_pattern=r"\w+"), unseen=Unseen(10))
    with pytest.raises(ValueError, match="too many"):
        _ngrams.Index(["the"], 1, 1, True, 2**31 - 2)
    assert Unseen.from_json(None) == Unseen(0)
    assert Unseen.from_json(Unseen(5, False, (2, 3)).to_json()) == Unseen(5, False, (2, 3))
