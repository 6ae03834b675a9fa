"""Pool selection (`data.pool_budget`): the cross-entropy difference picks the task's texts out of
a mixed pool, random is a seeded sample, and every stage that reads the pool gets the same
chosen texts."""

from __future__ import annotations

import math

import pytest

from sparse_distill.errors import ConfigError
from sparse_distill.stages.config import config_from_dict
from sparse_distill.training.config import DEFAULT_TOKEN_PATTERN
from sparse_distill.training.data import PoolStats, iter_pool, load_labeled
from sparse_distill.training.select import CrossEntropyDifference, lowest, random_rank, select

TRAIN = ["a warm and funny film with a terrific cast", "a dull film, the plot is a mess",
         "the acting is sharp and the script moving", "a lifeless sequel that overstays"]
MOVIES = [f"the film's plot and cast were {w}" for w in ("terrific", "dull", "sharp", "moving")]
COOKING = [f"whisk the eggs with {w} and bake for an hour" for w in
           ("flour", "sugar", "butter", "milk", "salt", "cream")]
POOL = [t for pair in zip(COOKING, [*MOVIES, "", ""], strict=True) for t in pair if t]


def test_cross_entropy_difference_keeps_the_tasks_texts_of_a_mixed_pool():
    score = CrossEntropyDifference(TRAIN, POOL, DEFAULT_TOKEN_PATTERN, lowercase=True)
    assert max(score(t) for t in MOVIES) < min(score(t) for t in COOKING)
    assert score("") == math.inf and score("!!") == math.inf  # no token: last
    chosen = select(lambda: iter(POOL), TRAIN, len(MOVIES), "cross-entropy", 13,
                    DEFAULT_TOKEN_PATTERN, True)
    assert chosen == MOVIES  # in the pool's order


def test_random_selection_is_a_seeded_sample_in_the_pools_order():
    texts = [f"text number {i}" for i in range(200)]
    a = select(lambda: iter(texts), TRAIN, 50, "random", 13, DEFAULT_TOKEN_PATTERN, True)
    assert a == select(lambda: iter(texts), TRAIN, 50, "random", 13, DEFAULT_TOKEN_PATTERN, True)
    assert len(a) == 50 and a == sorted(a, key=texts.index)
    assert a != select(lambda: iter(texts), TRAIN, 50, "random", 14, DEFAULT_TOKEN_PATTERN, True)
    # Uniform: the sample's positions spread over the whole pool.
    positions = [texts.index(t) for t in a]
    assert min(positions) < 40 and max(positions) > 160
    assert 0.0 <= random_rank(13)("x") < 1.0


def test_lowest_keeps_the_budget_and_breaks_ties_by_position():
    assert lowest(["c", "a", "b", "a2"], {"a": 0.0, "a2": 0.0, "b": 1.0, "c": 2.0}.get, 2) == \
        ["a", "a2"]
    assert lowest(["x", "y"], lambda t: 0.0, 5) == ["x", "y"]


def test_the_pool_budget_gives_every_stage_the_same_chosen_texts(config_dict):
    data = {**config_dict["data"], "pool_budget": 5}
    cfg = config_from_dict({**config_dict, "data": data})
    labeled = load_labeled(cfg)
    everything = list(iter_pool(config_from_dict(config_dict), labeled, PoolStats()))
    stats = PoolStats()
    chosen = list(iter_pool(cfg, labeled, stats))
    assert len(chosen) == 5 and set(chosen) <= set(everything)
    assert chosen == list(iter_pool(cfg, labeled, PoolStats()))  # vocab and teach alike
    assert stats.kept == 5 and stats.selection == {
        "rule": "cross-entropy", "budget": 5, "candidates": len(everything),
        "dropped": len(everything) - 5}
    assert stats.as_dict()["sources"][0]["read"] > 0
    random = config_from_dict({**config_dict, "data": {**data, "pool_select": "random"}})
    assert list(iter_pool(random, labeled, PoolStats())) != chosen


def test_a_bad_budget_is_one_line_naming_the_key(config_dict):
    with pytest.raises(ConfigError, match=r"data\.pool_budget"):
        config_from_dict({**config_dict, "data": {**config_dict["data"], "pool_budget": 0}})
