from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import CORPUS, DATA, chinese_config
from sklearn.feature_extraction.text import CountVectorizer

from sparse_distill.errors import DataError, StageError
from sparse_distill.inference.featurize import Vocabulary
from sparse_distill.stages.config import config_from_dict
from sparse_distill.stages.rundir import check_upstream
from sparse_distill.stages.vocab import build_vocab
from sparse_distill.training.config import VocabConfig
from sparse_distill.training.data import PoolStats, iter_pool, load_labeled
from sparse_distill.training.vocab import count_ngrams, select_vocabulary


def fit(texts, **kwargs) -> Vocabulary:
    cfg = VocabConfig(**kwargs)
    return select_vocabulary(count_ngrams(texts, cfg), cfg)


def sklearn_fit(texts, **kwargs) -> CountVectorizer:
    return CountVectorizer(ngram_range=tuple(kwargs.pop("ngram_range", (1, 4))),
                           **kwargs).fit(texts)


def test_vocabulary_and_df_equal_countvectorizer():
    vocab = fit(CORPUS, ngram_range=[1, 3], max_features=None, chunk_size=2)
    cv = sklearn_fit(CORPUS, ngram_range=(1, 3))
    assert set(vocab.ngrams) == set(cv.vocabulary_)
    matrix = cv.transform(CORPUS)
    sk_df = np.asarray((matrix > 0).sum(axis=0)).ravel()
    sk_tf = np.asarray(matrix.sum(axis=0)).ravel()
    for ngram, df, tf in zip(vocab.ngrams, vocab.df, vocab.tf, strict=True):
        assert (df, tf) == (sk_df[cv.vocabulary_[ngram]], sk_tf[cv.vocabulary_[ngram]])


def test_min_df_max_df_and_max_features_select_like_countvectorizer():
    texts = CORPUS * 3 + ["the film the film the film", "dull dull dull acting"]
    vocab = fit(texts, min_df=2, max_df=0.5, max_features=None)
    assert set(vocab.ngrams) == set(sklearn_fit(texts, min_df=2, max_df=0.5).vocabulary_)
    # 7 n-grams with distinct top frequencies: no ties at the cut, so the choice is unique.
    top = fit(texts, ngram_range=[1, 1], max_features=3)
    sk = sklearn_fit(texts, ngram_range=(1, 1), max_features=3)
    assert set(top.ngrams) == set(sk.vocabulary_) == {"the", "film", "dull"}
    assert top.ngrams == ["the", "film", "dull"]  # tf 12 each (next: 9), in order of occurrence


def test_ids_are_most_frequent_first():
    vocab = fit(["c a", "c b", "c a"], token_pattern=r"\w", ngram_range=[1, 1])
    assert vocab.ngrams == ["c", "a", "b"]
    assert vocab.tf.tolist() == [3, 2, 1] and vocab.df.tolist() == [3, 2, 1]


def test_ties_keep_the_order_of_first_occurrence_also_at_the_cut():
    texts = ["d c b a", "a b"]
    vocab = fit(texts, token_pattern=r"\w", ngram_range=[1, 1], max_features=3)
    assert vocab.ngrams == ["b", "a", "d"]
    # Where the README says this differs from scikit-learn: its pick among the tied c and d.
    sk = sklearn_fit(texts, token_pattern=r"\w", ngram_range=(1, 1), max_features=3)
    assert sorted(sk.vocabulary_) == ["a", "b", "c"]


# The same semantics as the default token pattern, spelt so that the regex path counts it: the
# counter this project used before the compiled one.
REGEX_SPELLING = r"(?u)\b\w{2,}\b"


def fixture_texts() -> list[str]:
    """The fixtures' texts, then 600 of their words shuffled: enough distinct n-grams to prune."""
    texts = [json.loads(line)["text"] for line in (DATA / "train.jsonl").read_text().splitlines()]
    texts += (DATA / "pool.txt").read_text().splitlines() + CORPUS
    words = " ".join(texts).split()
    rng = np.random.default_rng(0)
    return texts + [" ".join(rng.choice(words, size=rng.integers(0, 12))) for _ in range(600)]


@pytest.mark.parametrize("settings", [
    {"ngram_range": [1, 4], "max_features": None},
    {"ngram_range": [1, 4], "max_features": 300},  # ties at the cut: order of first occurrence
    {"ngram_range": [2, 3], "max_features": 200, "min_df": 2},
    {"ngram_range": [1, 2], "max_df": 0.05, "lowercase": False},
    # pruning while counting: the same thresholds, the same survivors
    {"ngram_range": [1, 3], "max_candidates": 1000, "chunk_size": 7, "max_features": 400},
])
def test_compiled_counter_builds_the_regex_counters_vocabulary(settings):
    texts = fixture_texts()
    compiled = fit(texts, **settings)
    counts = count_ngrams(texts, VocabConfig(**settings))
    regex_counts = count_ngrams(texts, VocabConfig(**settings, token_pattern=REGEX_SPELLING))
    regex = select_vocabulary(regex_counts, VocabConfig(**settings))
    assert compiled.ngrams == regex.ngrams and len(compiled) > 20
    assert np.array_equal(compiled.tf, regex.tf) and np.array_equal(compiled.df, regex.df)
    assert (counts.prunings, counts.max_undercount, counts.n_docs) == \
        (regex_counts.prunings, regex_counts.max_undercount, regex_counts.n_docs)
    assert counts.as_dict() == regex_counts.as_dict()
    if "max_candidates" in settings:
        assert counts.prunings > 0


def test_compiled_counter_takes_only_strings():
    with pytest.raises(TypeError, match=re.escape("texts[1] is NoneType, not str")):
        count_ngrams(["fine text", None], VocabConfig())


def test_nothing_left_is_a_clear_error():
    with pytest.raises(DataError, match=re.escape("vocab: no n-gram is left after vocab.min_df=9")):
        fit(CORPUS, min_df=9)


def test_pruning_bounds_memory_and_is_recorded():
    texts = [f"common words here unique{i} token{i}" for i in range(3000)]
    cfg = VocabConfig(ngram_range=[1, 1], max_candidates=1000, chunk_size=500, max_features=None)
    counts = count_ngrams(texts, cfg)
    assert counts.prunings >= 1 and counts.max_undercount >= counts.prunings
    assert len(counts) <= 1000 + 2 * 500  # the cap plus one chunk of new n-grams
    assert counts.as_dict()["common"] == (3000, 3000)  # frequent n-grams are exact
    assert counts.n_docs == 3000


def test_stage_writes_vocab_and_manifest(config_dict):
    config_dict["vocab"]["max_features"] = None
    cfg = config_from_dict(config_dict)
    result = build_vocab(cfg)
    assert not result.skipped
    out = cfg.run_dir() / "vocab"
    assert sorted(p.name for p in out.iterdir()) == ["df.npy", "manifest.json", "tf.npy",
                                                     "vocab.json"]
    m = json.loads((out / "manifest.json").read_text())
    assert m["stage"] == "vocab" and m["seed"] == 13 and m["labels"] == ["neg", "pos"]
    assert m["counts"]["texts"] == 28 + 17 and m["counts"]["pool"]["leakage_removed"] == 1
    assert m["counts"]["exact"] is True
    assert set(m["fingerprint"]["config_hash"]) == {"data", "vocab"}
    assert [i["key"] for i in m["inputs"]] == ["data.train", "data.dev", "data.test",
                                              "data.unlabeled[0]"]
    assert all(len(i["sha256"]) == 64 for i in m["inputs"])
    assert (cfg.run_dir() / "config.yaml").is_file()
    # The vocabulary is CountVectorizer's on the same texts: train + the guarded pool.
    labeled = load_labeled(cfg)
    texts = labeled.train.texts + list(iter_pool(cfg, labeled, PoolStats()))
    expected = sklearn_fit(texts, ngram_range=(1, 2)).vocabulary_
    vocab = Vocabulary.load(out)
    assert set(vocab.ngrams) == set(expected) and len(vocab) == m["counts"]["vocab_size"]


def test_stage_skips_when_up_to_date_and_refuses_stale_output(config_dict):
    cfg = config_from_dict(config_dict)
    first = build_vocab(cfg)
    again = build_vocab(cfg)
    assert again.skipped and again.manifest["created"] == first.manifest["created"]
    config_dict["vocab"]["min_df"] = 2
    changed = config_from_dict(config_dict)
    with pytest.raises(StageError, match=re.escape(
            "was built from other inputs (config section 'vocab' changed); rerun with --force")):
        build_vocab(changed)
    assert Vocabulary.load(cfg.run_dir() / "vocab").ngrams == \
        Vocabulary.load(first.output).ngrams  # the old output is intact
    forced = build_vocab(changed, force=True)
    assert not forced.skipped and forced.manifest["counts"]["vocab_size"] < \
        first.manifest["counts"]["vocab_size"]
    leftovers = [p.name for p in cfg.run_dir().iterdir() if p.name.startswith(".")]
    assert leftovers == [".sdistill.lock"]  # the run's lock file, released: no temporary litter


def test_changed_input_file_makes_the_output_stale(config_dict, tmp_path):
    pool = tmp_path / "pool.txt"
    pool.write_text("one new sentence about films\n")
    config_dict["data"]["unlabeled"] = [{"path": str(pool)}]
    cfg = config_from_dict(config_dict)
    build_vocab(cfg)
    pool.write_text("another sentence entirely\n")
    with pytest.raises(StageError, match=re.escape("(data.unlabeled[0] changed)")):
        build_vocab(cfg)


def test_failed_stage_leaves_nothing(config_dict, monkeypatch):
    cfg = config_from_dict(config_dict)

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("sparse_distill.inference.featurize.Vocabulary.save", boom)
    with pytest.raises(RuntimeError):
        build_vocab(cfg)
    assert [p.name for p in cfg.run_dir().iterdir()] == [".sdistill.lock"]


def test_downstream_stage_refuses_a_stale_vocab(config_dict, monkeypatch):
    from sparse_distill.stages import rundir

    monkeypatch.setitem(rundir.STAGE_SECTIONS, "student", ("student",))
    monkeypatch.setitem(rundir.STAGE_UPSTREAM, "student", ("vocab",))
    cfg = config_from_dict(config_dict)
    cfg._path = "my.yaml"
    with pytest.raises(StageError, match=re.escape("run `sdistill vocab my.yaml` first")):
        check_upstream(cfg, "student")
    build_vocab(cfg)
    check_upstream(cfg, "student")
    config_dict["vocab"]["ngram_range"] = [1, 1]
    changed = config_from_dict(config_dict)
    changed._path = "my.yaml"
    with pytest.raises(StageError, match=re.escape(
            "is out of date (config section 'vocab' changed); run `sdistill vocab my.yaml "
            "--force` first")):
        check_upstream(changed, "student")


def test_chinese_text_gets_character_tokens_by_default(tmp_path):
    result = build_vocab(config_from_dict(chinese_config(tmp_path / "run", max_features=2000)))
    tokens = result.manifest["counts"]["tokens"]
    assert tokens["rule"] == "scripts" and tokens["warning"] is None
    assert tokens["mean_token_chars"] < 1.2 and tokens["single_text_share"] < 0.5
    vocab = Vocabulary.load(result.output)
    assert vocab.tokens == "scripts" and "酒 店" in vocab.ngrams
    assert json.loads((result.output / "vocab.json").read_text())["tokens"] == "scripts"


def test_a_degenerate_vocabulary_is_a_warning_that_names_the_fix(tmp_path):
    result = build_vocab(config_from_dict(chinese_config(tmp_path / "run", max_features=2000,
                                                                tokens="words")))
    tokens = result.manifest["counts"]["tokens"]
    assert tokens["rule"] == "words" and tokens["single_text_share"] > 0.9
    assert tokens["warning"].startswith("the vocabulary looks degenerate: ")
    assert tokens["warning"].endswith("set vocab.tokens: scripts, so that each character of a "
                                      "script written without spaces (Chinese, Japanese, Thai, "
                                      "...) is a token")


def test_english_text_keeps_the_words_rule_and_no_warning(config_dict):
    tokens = build_vocab(config_from_dict(config_dict)).manifest["counts"]["tokens"]
    assert tokens["rule"] == "words" and tokens["warning"] is None
    assert 3 < tokens["mean_token_chars"] < 7
