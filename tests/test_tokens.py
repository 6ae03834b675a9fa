"""The `scripts` token rule (issue 30): each character of a script written without spaces is a
token of its own. The compiled featuriser and counter against the rule's pure-Python reference
(`inference.tokens`, run by scikit-learn's CountVectorizer), on text mixing every kind of script."""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    CORPUS,
    DATA,
    chinese_config,
    save_tiny_bert,
    student_section,
    teacher_config,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import CountVectorizer

from sparse_distill.errors import ConfigError
from sparse_distill.inference import _ngrams
from sparse_distill.inference.featurize import Featurizer, Vocabulary
from sparse_distill.inference.tokens import (
    UNSPACED_BLOCKS,
    is_unspaced_mark,
    scripts_pattern,
    tokenizer,
)
from sparse_distill.training.config import VocabConfig
from sparse_distill.training.vocab import count_ngrams, select_vocabulary


def test_the_rule_on_a_sentence_of_every_kind():
    tokens = tokenizer("scripts", "", lowercase=True)
    # Chinese and Japanese: a character a token (the kana voicing mark stays with its kana);
    # Thai: a character with its vowel and tone marks; English runs stop at a CJK character,
    # a one-letter run is no token as before; Korean, Arabic and full-width Latin are spaced
    # scripts: words as before; CJK punctuation and emoji are no tokens.
    text = ("New 数据集 for 中文text, が か\u3099 ที่ดี! ab中c 한국어 문장 كلمة ＡＢＣ 🙂 "
            "「引用」。 々")
    assert tokens(text) == ["new", "数", "据", "集", "for", "中", "文", "text", "が",
                            "か\u3099", "ที่", "ดี", "ab", "中", "한국어", "문장", "كلمة",
                            "ａｂｃ", "引", "用", "々"]
    assert tokenizer("words", r"(?u)\b\w\w+\b", lowercase=True)(text)[:4] == [
        "new", "数据集", "for", "中文text"]


def test_unspaced_blocks_and_marks_are_the_references_at_every_code_point():
    compiled = np.array([_ngrams.unspaced_class(c) for c in range(sys.maxunicode + 1)])
    inside = np.zeros(sys.maxunicode + 1, dtype=bool)
    for lo, hi in UNSPACED_BLOCKS:
        inside[lo:hi + 1] = True
    assert np.array_equal(compiled > 0, inside)
    marks = {c for lo, hi in UNSPACED_BLOCKS for c in range(lo, hi + 1) if is_unspaced_mark(c)}
    assert set(np.flatnonzero(compiled == 2).tolist()) == marks
    assert {0x0E48, 0x0E35, 0x3099, 0x17B6, 0x102C} <= marks  # Thai, kana, Khmer, Myanmar
    assert compiled[ord("中")] == 1 and compiled[ord("。")] == 3 and compiled[ord("한")] == 0


def scripts_vocabulary(texts: list[str], seed: int = 0, ngram_range=(1, 3),
                       lowercase: bool = True, max_features: int | None = None) -> Vocabulary:
    """The reference's own vocabulary of `texts` (CountVectorizer with the rule's pattern), its
    ids shuffled, as a vocabulary of the scripts rule."""
    cv = CountVectorizer(ngram_range=ngram_range, lowercase=lowercase,
                         token_pattern=scripts_pattern(), max_features=max_features).fit(texts)
    ngrams = sorted(cv.vocabulary_)
    random.Random(seed).shuffle(ngrams)
    n = len(ngrams)
    return Vocabulary(ngrams=ngrams, df=np.ones(n, np.int64), tf=np.ones(n, np.int64),
                      ngram_range=ngram_range, lowercase=lowercase,
                      token_pattern=r"(?u)\b\w\w+\b", tokens="scripts")


def assert_matches_reference(texts: list[str], vocab: Vocabulary) -> None:
    featurizer = Featurizer(vocab, threads=1)
    assert featurizer._index is not None  # the compiled path
    bag = featurizer(texts)
    expected = CountVectorizer(vocabulary=vocab.ngrams, ngram_range=vocab.ngram_range,
                               lowercase=vocab.lowercase,
                               token_pattern=scripts_pattern()).transform(texts)
    assert np.array_equal(bag.offsets, expected.indptr)
    assert np.array_equal(bag.ids, expected.indices)
    assert np.array_equal(bag.weights, expected.data.astype(np.float32))


# Mixed text: English, Chinese (with an extension-B ideograph), Japanese kana with combining
# voicing marks and half-width katakana, Thai with vowel and tone marks, a Thai mark on its own
# and after a Latin letter, Khmer, Myanmar, Hangul (spaced), Arabic, Devanagari with combining
# marks (spaced: its marks split words as \w does), full-width Latin and digits, emoji, CJK
# punctuation, the ideographic iteration mark, upper case, digits and spaces of every kind.
MIXED = [*"abcXYZ_09", "中", "文", "数", "据", "\U00020000", "か", "\u3099", "ｶ", "ﾞ", "ก", "ี",
         "่", "ร", "ា", "ក", "က", "ာ", "한", "국", "ك", "ل", "क", "ि", "Ａ", "１", "🙂", "。",
         "「", "々", "İ", "Σ", " ", "  ", "\n", "\u3000", ".", "-"]
MIXED_WORDS = ["the", "film", "中文", "数据集", "ที่ดี", "かﾞ", "한국어", "كلمة", "किताब", "ＡＢＣ",
               "text中文text", "x", "ab"]

mixed_texts = st.lists(st.one_of(
    st.lists(st.sampled_from(MIXED), max_size=60).map("".join),
    st.lists(st.sampled_from([*MIXED_WORDS, " ", "。"]), max_size=20).map("".join),
    st.lists(st.sampled_from(MIXED_WORDS), max_size=20).map(" ".join),
    st.just(""),
), min_size=0, max_size=10)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=mixed_texts, fit_on=st.integers(0, 10), seed=st.integers(0, 3),
       lowercase=st.booleans(), order=st.sampled_from([(1, 1), (1, 2), (1, 3), (2, 4)]),
       max_features=st.sampled_from([None, 30]))
def test_featuriser_equals_the_reference_on_mixed_scripts(texts, fit_on, seed, lowercase, order,
                                                          max_features):
    vocab = scripts_vocabulary(CORPUS + MIXED_WORDS + texts[:fit_on], seed, order, lowercase,
                               max_features)
    assert_matches_reference(texts, vocab)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=mixed_texts, order=st.sampled_from([[1, 1], [1, 3], [2, 4]]),
       lowercase=st.booleans())
def test_counter_equals_the_reference_on_mixed_scripts(texts, order, lowercase):
    texts = texts + MIXED_WORDS
    compiled_cfg = VocabConfig(ngram_range=order, lowercase=lowercase, max_features=None,
                               tokens="scripts")
    regex_cfg = VocabConfig(ngram_range=order, lowercase=lowercase, max_features=None,
                            token_pattern=scripts_pattern(), tokens="words")
    assert compiled_cfg.token_rule() == "scripts" and regex_cfg.token_rule() == "words"
    compiled = count_ngrams(texts, compiled_cfg)
    assert compiled.as_dict() == count_ngrams(texts, regex_cfg).as_dict()
    vocab = select_vocabulary(compiled, compiled_cfg)
    assert vocab.tokens == "scripts"
    assert_matches_reference(texts, vocab)


def test_text_in_spaced_scripts_gives_the_ids_of_the_words_rule():
    texts = [*CORPUS, "Straße İstanbul naïve ΟΔΟΣ 2022 snake_case", "한국어 문장 كلمة किताब ＡＢＣ"]
    cv = CountVectorizer(ngram_range=(1, 3)).fit(texts)
    ngrams = sorted(cv.vocabulary_)
    n = len(ngrams)
    bags = [Featurizer(Vocabulary(ngrams, np.ones(n, np.int64), np.ones(n, np.int64), (1, 3),
                                  True, r"(?u)\b\w\w+\b", rule))(texts)
            for rule in ("words", "scripts")]
    assert np.array_equal(bags[0].ids, bags[1].ids)
    assert np.array_equal(bags[0].offsets, bags[1].offsets) and len(bags[0].ids) > 50


def test_a_vocabulary_saved_before_the_rule_loads_as_words(tmp_path):
    vocab = scripts_vocabulary(["中文 数据"], ngram_range=(1, 2))
    vocab.save(tmp_path)
    assert Vocabulary.load(tmp_path).tokens == "scripts"
    meta = json.loads((tmp_path / "vocab.json").read_text())
    del meta["tokens"]
    (tmp_path / "vocab.json").write_text(json.dumps(meta))
    old = Vocabulary.load(tmp_path)
    assert old.tokens == "words"
    # the words rule: "中文" is one token, so none of the character n-grams match
    assert len(Featurizer(old)(["中文"]).ids) == 0


def test_scripts_takes_no_token_pattern():
    from sparse_distill.stages.config import config_from_dict

    with pytest.raises(ConfigError, match=re.escape("vocab.tokens: 'scripts' is a rule of its")):

        config_from_dict({"data": {"train": {"path": "x.jsonl"}},
                          "vocab": {"tokens": "scripts", "token_pattern": r"\w+"}},
                         check_inputs=False)


def test_auto_splits_unspaced_scripts_where_the_training_texts_are_written_in_them():
    chinese = ["这部电影很好看", "The 中国 team won", "剧情太无聊了"] + ["english text"] * 97
    english = ["a film about 東京 and its people"] + ["english text"] * 199
    assert VocabConfig().token_rule(chinese) == "scripts"  # 3% of the texts
    assert VocabConfig().token_rule(english) == "words"  # 0.5%: a stray name
    assert VocabConfig().token_rule([]) == "words"
    assert VocabConfig(token_pattern=r"\w+").token_rule(chinese) == "words"
    assert VocabConfig(tokens="words").token_rule(chinese) == "words"
    assert VocabConfig(tokens="scripts").token_rule(english) == "scripts"


def test_nfkc_makes_full_width_and_half_width_forms_one():
    texts = ["ＡＢＣ ｶﾀｶﾅ ﬁlm", "abc カタカナ film", "ＡＢＣ"]
    cfg = VocabConfig(ngram_range=[1, 2], max_features=None, tokens="scripts", normalize="nfkc")
    vocab = select_vocabulary(count_ngrams(texts, cfg), cfg)
    assert vocab.normalize == "nfkc" and "ａｂｃ" not in vocab.ngrams and "abc" in vocab.ngrams
    bag = Featurizer(vocab, threads=1)(texts)
    expected = vocab.vectorizer().transform(texts)  # the reference: CountVectorizer
    assert np.array_equal(bag.ids, expected.indices)
    assert np.array_equal(bag.offsets, expected.indptr)
    first, second = (set(bag.ids[bag.offsets[i]:bag.offsets[i + 1]].tolist()) for i in (0, 1))
    assert first == second  # the same text in full-width and in plain forms
    plain = VocabConfig(ngram_range=[1, 2], max_features=None, tokens="scripts")
    assert "ａｂｃ" in select_vocabulary(count_ngrams(texts, plain), plain).ngrams


@pytest.fixture(scope="module")
def tiny_chinese_bert(tmp_path_factory) -> Path:
    """A tiny randomly initialised BERT whose WordPiece vocabulary, trained here on the Chinese
    fixtures, has a piece for each character."""
    texts = [json.loads(line)["text"] for name in ("train", "dev", "test")
             for line in (DATA / "zh" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-chinese-bert"), texts, vocab_size=2000)


def test_a_chinese_run_needs_no_tokenisation_setting(tmp_path, tiny_chinese_bert):
    """Data paths, a teacher, nothing about tokens: the whole run, with character n-grams, a
    student that predicts from them, and a model card that says so."""
    from sparse_distill.inference.student import Student
    from sparse_distill.stages.config import config_from_dict
    from sparse_distill.stages.pipeline import run_all

    data = teacher_config(chinese_config(tmp_path / "run"), tiny_chinese_bert)
    data["student"] = student_section()
    data["eval"] = {"speed_texts": 6, "batch_sizes": [1, 4], "repeats": 1}
    results = run_all(config_from_dict(data))
    assert results["vocab"].manifest["counts"]["tokens"]["rule"] == "scripts"
    student_dir = results["student"].output
    student = Student.load(student_dir)
    assert student.featurizer.vocab.tokens == "scripts"
    bag = student.featurizer(["酒店很干净", "服务很差"])
    assert np.diff(bag.offsets).min() >= 5  # characters and their bigrams, not one clause
    assert set(student.predict(["酒店很干净", "服务很差"])) <= {"neg", "pos"}
    card = (student_dir / "README.md").read_text(encoding="utf-8")
    assert "each character of a script written without spaces" in card


def test_entries_the_scripts_rule_cannot_produce_never_match():
    # CJK punctuation, a mark on its own, two characters as one token, a run that goes on into
    # a CJK character, one Latin letter: the rule makes none of them, so none matches.
    ngrams = ["。", "\u0e48", "中文", "ab中", "a", "中", "中 文", "ab", "ที่", "ท"]
    n = len(ngrams)
    vocab = Vocabulary(ngrams, np.ones(n, np.int64), np.ones(n, np.int64), (1, 2), True,
                       r"(?u)\b\w\w+\b", "scripts")
    texts = ["中文。ab中 a ที่"]
    assert_matches_reference(texts, vocab)
    assert sorted(Featurizer(vocab)(texts).ids.tolist()) == [5, 6, 7, 8]


def test_the_benchmark_gives_the_peers_the_students_tokens_and_their_own(tmp_path,
                                                                          tiny_chinese_bert):
    """On Chinese: TF-IDF + LR and fastText tokenise as the student does (characters), each
    beside a row with its default tokenisation (whole clauses)."""
    import yaml
    from typer.testing import CliRunner

    from sparse_distill.cli import app

    data = teacher_config(chinese_config(tmp_path / "run"), tiny_chinese_bert)
    data["student"] = student_section()
    data["eval"] = {"speed_texts": 6, "batch_sizes": [2, 4], "repeats": 1}
    config = tmp_path / "zh.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    out = tmp_path / "bench" / "RESULTS.md"
    result = CliRunner().invoke(app, ["benchmark", str(config), "-o", str(out), "--seeds", "1",
                                      "--no-ablation", "--no-shrink"])
    assert result.exit_code == 0, result.output
    models = {m["name"]: m for m in json.loads(out.with_suffix(".json").read_text())[
        "datasets"][0]["models"]}
    for peer in ("TF-IDF + logistic regression", "fastText supervised"):
        assert peer in models and f"{peer} (default tokens)" in models
    assert models["TF-IDF + logistic regression"]["settings"].endswith(
        "; the student's tokens (scripts rule)")
    assert models["fastText supervised"]["settings"].endswith(
        "; texts pre-segmented as the student's tokens")
    assert "(default tokens)" in out.read_text(encoding="utf-8")
