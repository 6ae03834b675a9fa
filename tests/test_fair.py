"""Thread-fair speed: one sitting, the same texts and CPU budget, ratios from that sitting only."""

from __future__ import annotations

import os
import time

from sparse_distill.evaluation.fair import Contender, FairSpeed, fair_speed

TEXTS = [f"text {i}" for i in range(40)]


def _sleeper(per_text_s: float):
    """A model whose time is a wait per text: N processes run N waits at once, whatever else
    the machine is doing, so the expected scaling is exact and not the scheduler's."""

    def predict(batch: list[str]) -> list[str]:
        time.sleep(per_text_s * len(batch))
        return ["x"] * len(batch)

    return predict


def test_processes_scale_a_one_thread_model_and_ratios_come_from_the_sitting():
    # calls of 20 ms and 80 ms: a wake-up's delay is small beside them
    fast = Contender("fast", _sleeper(0.001), batch_size=20)
    slow = Contender("slow", _sleeper(0.004), batch_size=20)
    speed = fair_speed([fast, slow], TEXTS, rounds=2, cores=2, min_seconds=0.1)
    assert speed.scale == {"fast": "processes", "slow": "processes"}
    # 40 texts at 1 ms: at most 1,000/s in one process (a loaded machine wakes sleepers late),
    # twice that in two
    assert 500 < speed.rates["fast"]["1"] <= 1000
    # (the upper bound catches texts counted twice; wake-up delays move either side by ~20%)
    assert 1.6 < speed.rates["fast"]["all"] / speed.rates["fast"]["1"] <= 2.5
    assert 3.0 < speed.ratio("fast", "slow", "1") < 4.6
    assert speed.ratio("fast", "slow", "all") == \
        speed.rates["fast"]["all"] / speed.rates["slow"]["all"]


def test_the_sitting_interleaves_models_and_every_window_lies_inside_it():
    seen: list[int] = []

    def set_threads(n: int) -> None:
        seen.append(n)

    a = Contender("a", _sleeper(0.0002), 8, "threads", set_threads)
    b = Contender("b", _sleeper(0.0002), 8)
    speed = fair_speed([a, b], TEXTS, rounds=3, cores=2, min_seconds=0.02)
    assert set(seen) == {1, 2} and seen[-1] == 2  # its threads given back at the end
    # rounds x models x columns, each inside the sitting
    assert len(speed.windows) == 3 * 2 * 2
    assert all(speed.started <= begin < end <= speed.ended for *_, begin, end in speed.windows)
    order = [(name, column) for name, column, *_ in speed.windows]
    assert order[:4] == [("a", "1"), ("a", "all"), ("b", "1"), ("b", "all")]
    assert order[4:8] == order[:4] and order[8:] == order[:4]
    # b's first window ends before a's second starts: a's figure is not all from one minute
    b_first_end = next(e for n, _, _, e in speed.windows if n == "b")
    a_last_begin = max(s for n, _, s, _ in speed.windows if n == "a")
    assert b_first_end < a_last_begin


def test_a_threads_model_runs_in_this_process_at_each_budget():
    pids: set[int] = set()

    def predict(batch: list[str]) -> list[str]:
        pids.add(os.getpid())
        return ["x"] * len(batch)

    fair_speed([Contender("t", predict, 8, "threads", lambda n: None)], TEXTS, rounds=1,
               cores=2, min_seconds=0.01)
    assert pids == {os.getpid()}


def test_a_sitting_survives_json():
    speed = fair_speed([Contender("a", _sleeper(0.0001), 8)], TEXTS, rounds=1, cores=2,
                       min_seconds=0.01)
    import dataclasses
    import json

    again = FairSpeed.from_dict(json.loads(json.dumps(dataclasses.asdict(speed))))
    assert again == speed
