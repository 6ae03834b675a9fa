"""Augmented copies of the training texts in the pool (data.augment)."""

from __future__ import annotations

import pytest

from sparse_distill.errors import ConfigError
from sparse_distill.stages.config import config_from_dict
from sparse_distill.training.augment import augment_texts
from sparse_distill.training.config import AugmentConfig
from sparse_distill.training.data import PoolStats, iter_pool, load_labeled

TEXTS = ["the film is a warm and funny story about love",
         "a dull lifeless mess that overstays its welcome by an hour",
         "sharp script and terrific performances"]


def test_same_seed_same_copies_and_other_seed_other_copies():
    cfg = AugmentConfig(copies=4)
    first = list(augment_texts(TEXTS, cfg, seed=1))
    assert first == list(augment_texts(TEXTS, cfg, seed=1))
    assert first != list(augment_texts(TEXTS, cfg, seed=2))
    assert len(first) == 4 * len(TEXTS)  # seeded: no copy lost every word
    assert first != TEXTS * 4


def test_copies_without_the_newer_perturbations_are_those_made_before_them():
    # Made by the code as it was before neighbour_prob and splice_prob existed (commit 22d7477):
    # runs labelled then stay up to date only if their copies are still the same.
    cfg = AugmentConfig(copies=2, window_prob=0.5)
    assert list(augment_texts(TEXTS, cfg, seed=7)) == [
        "is a", "overstays", "sharp script and terrific performances",
        "sharp film is a and overstays story about love",
        "dull lifeless mess that overstays welcome by story hour", "sharp"]


def test_neighbours_are_the_nearest_words_of_the_input_embeddings(tiny_bert):
    import torch
    from transformers import AutoModel, AutoTokenizer

    from sparse_distill.training.augment import _piece_vectors, nearest_neighbours

    words = ["film", "warm", "dull", "excellent"]
    near = nearest_neighbours(words, str(tiny_bert), k=3)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert))
    table = AutoModel.from_pretrained(str(tiny_bert)).get_input_embeddings().weight.float()
    vocabulary = {tokenizer.decode([i]).strip() for i in range(len(tokenizer))}
    for word in words:
        assert len(near[word]) == 3 and word not in near[word]
        assert all(w in vocabulary and w.isalpha() and len(w) >= 2 for w in near[word])
        # Brute force: no other candidate word is closer than the third neighbour.
        vectors = _piece_vectors(tokenizer, table, [word] + near[word])  # (4, hidden)
        sims = vectors[1:] @ vectors[0]  # (3,)
        others = sorted(w for w in vocabulary if w.isalpha() and len(w) >= 2
                        and w not in near[word] and w != word)
        rest = _piece_vectors(tokenizer, table, others) @ vectors[0]  # (others,)
        assert torch.all(rest <= sims.min() + 1e-6)


def test_neighbour_replacement_and_splicing(tiny_bert):
    from sparse_distill.training.augment import nearest_neighbours, word_key

    cfg = AugmentConfig(copies=20, drop_prob=0.0, replace_prob=0.0, window_prob=0.0,
                        neighbour_prob=1.0, neighbour_model=str(tiny_bert), neighbours=2)
    near = nearest_neighbours(sorted({word_key(w) for t in TEXTS for w in t.split()}),
                              str(tiny_bert), 2)
    copies = list(augment_texts(TEXTS, cfg, seed=0))
    for i, copy in enumerate(copies):
        original = TEXTS[i % len(TEXTS)].split()
        assert len(copy.split()) == len(original)  # one word for one word
        assert all(new in near[word_key(old)] for old, new in zip(original, copy.split(),
                                                                   strict=True))
    spliced = list(augment_texts(TEXTS, AugmentConfig(
        copies=30, drop_prob=0.0, replace_prob=0.0, window_prob=0.0, splice_prob=1.0), seed=0))
    for i, copy in enumerate(spliced):
        head = TEXTS[i % len(TEXTS)]
        # A non-empty start of its own text, then the end of some training text.
        assert any(copy.startswith(" ".join(head.split()[:a])) and any(
            copy == " ".join(head.split()[:a] + t.split()[b:]) for t in TEXTS
            for b in range(len(t.split()))) for a in range(1, len(head.split()) + 1))
    assert any(c not in TEXTS for c in spliced)


def test_neighbour_replacement_needs_a_model(config_dict):
    config_dict["data"]["augment"] = {"copies": 1, "neighbour_prob": 0.2}
    with pytest.raises(ConfigError, match="neighbour_model"):
        config_from_dict(config_dict)


def test_no_perturbation_gives_the_texts_back():
    cfg = AugmentConfig(copies=2, drop_prob=0.0, replace_prob=0.0, window_prob=0.0)
    assert list(augment_texts(TEXTS, cfg, seed=0)) == TEXTS * 2


def test_drop_and_replace_rates_and_window_sizes():
    words = [f"w{i}" for i in range(50)]
    text = " ".join(words)
    dropped = list(augment_texts([text], AugmentConfig(copies=200, drop_prob=0.3,
                                                       replace_prob=0.0, window_prob=0.0), 0))
    kept = sum(len(t.split()) for t in dropped) / (200 * 50)
    assert 0.65 < kept < 0.75  # 1 - 0.3, within sampling error of 10,000 draws
    # Dropping keeps the order of the words that remain.
    assert all(sorted(t.split(), key=words.index) == t.split() for t in dropped)
    replaced = list(augment_texts([text, "x y"], AugmentConfig(
        copies=100, drop_prob=0.0, replace_prob=0.5, window_prob=0.0), 0))
    # Replacements come from the texts' own words: "x" and "y" appear inside the long text.
    assert any("x" in t.split()[:50] or "y" in t.split()[:50] for t in replaced[::2])
    windows = list(augment_texts([text], AugmentConfig(copies=300, drop_prob=0.0,
                                                       replace_prob=0.0, window_prob=1.0,
                                                       window_min=2, window_max=4), 0))
    sizes = {len(t.split()) for t in windows}
    assert sizes == {2, 3, 4}
    assert all(t in text for t in windows)  # consecutive words


def test_copies_join_the_pool_deduplicated_and_counted(config_dict):
    config_dict["data"]["augment"] = {"copies": 3}
    cfg = config_from_dict(config_dict)
    labeled = load_labeled(cfg)
    stats = PoolStats()
    pool = list(iter_pool(cfg, labeled, stats))
    aug = stats.sources[-1]
    assert aug.key == "data.augment" and aug.read == 3 * len(labeled.train.texts)
    assert len(pool) == len(set(pool))
    assert not set(pool) & set(labeled.train.texts)
    plain = list(iter_pool(config_from_dict({**config_dict, "data": {
        **config_dict["data"], "augment": {"copies": 0}}}), labeled, PoolStats()))
    assert pool[:len(plain)] == plain and len(pool) - len(plain) == aug.kept


def test_bad_augment_settings_are_reported(config_dict):
    config_dict["data"]["augment"] = {"copies": -1, "drop_prob": 0.7, "replace_prob": 0.5,
                                      "window_min": 4, "window_max": 2}
    with pytest.raises(ConfigError) as err:
        config_from_dict(config_dict)
    text = str(err.value)
    assert "data.augment.copies" in text
    assert "drop_prob + replace_prob" in text
    assert "data.augment.window_max" in text


def test_augment_settings_count_in_the_data_hash_only_with_copies(config_dict):
    def data_hash(augment: dict) -> str:
        return config_from_dict({**config_dict, "data": {**config_dict["data"],
                                                         "augment": augment}}
                                ).section_hash("data")

    without = config_from_dict(config_dict).section_hash("data")
    assert data_hash({"copies": 0, "drop_prob": 0.5}) == without
    assert data_hash({"copies": 2}) != without
    assert data_hash({"copies": 2, "drop_prob": 0.5}) != data_hash({"copies": 2})


def test_a_script_without_spaces_is_perturbed_a_character_at_a_time():
    chinese = ["这部电影很好看，演员表演也很出色", "剧情太无聊了，浪费时间"]
    # Nothing perturbed: the texts come back as they were, not with spaces between characters.
    cfg = AugmentConfig(copies=1, drop_prob=0.0, replace_prob=0.0, window_prob=0.0)
    assert list(augment_texts(chinese, cfg, seed=0)) == chinese
    # Dropping a third of the units keeps about two thirds of each text's characters (a text is
    # one whitespace word: dropped whole, it would keep none or all of them).
    dropped = list(augment_texts(chinese, AugmentConfig(copies=100, drop_prob=0.3,
                                                        replace_prob=0.0, window_prob=0.0), 0))
    lengths = [len(t) / len(chinese[i % 2]) for i, t in enumerate(dropped)]
    assert 0.6 < sum(lengths) / len(lengths) < 0.8
    assert all(" " not in t for t in dropped)
    windows = list(augment_texts(chinese[:1], AugmentConfig(
        copies=50, drop_prob=0.0, replace_prob=0.0, window_prob=1.0, window_min=3,
        window_max=5), 0))
    assert {len(t) for t in windows} == {3, 4, 5} and all(t in chinese[0] for t in windows)
