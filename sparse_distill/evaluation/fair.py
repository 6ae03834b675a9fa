"""Thread-fair speed: every model timed on the same texts, in one sitting, with the same CPU
budget: one thread, then every usable core.

A model that splits its own work (the student's chunks on threads, torch's intra-op threads for
the teacher) gets the cores as its users would give them. A model whose prediction runs on one
thread (fastText's Python `predict`, scikit-learn's transform, model2vec's numpy pipeline) is
scaled as its users scale it: one process per core, each on a share of the texts (fastText's
own `predict` CLI does the same: one thread a process). The rounds interleave the models, so
that a machine that slows down for a minute slows every model's figure alike, and ratios are
taken only between figures of this one sitting (`FairSpeed.ratio`).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..inference.featurize import usable_cpus
from .metrics import Predict

Scale = Literal["threads", "processes"]
COLUMNS = ("1", "all")


@dataclass
class Contender:
    """A model in the sitting: its predict, the batch size it is timed at, and how it uses more
    cores: its own threads (`set_threads(n)` sets them), or one process per core."""

    name: str
    predict: Predict
    batch_size: int
    scale: Scale = "processes"
    set_threads: Callable[[int], None] | None = None


@dataclass
class FairSpeed:
    """texts/s of every model at one thread and at `cores`, from one sitting.

    `windows` holds every timing's (model, column, start, end) on the machine's monotonic clock:
    the evidence that every figure a ratio divides was measured inside [started, ended]."""

    cores: int
    texts: int
    rounds: int
    started: float
    ended: float
    rates: dict[str, dict[str, float]] = field(default_factory=dict)
    batch_size: dict[str, int] = field(default_factory=dict)
    scale: dict[str, str] = field(default_factory=dict)
    windows: list[tuple[str, str, float, float]] = field(default_factory=list)

    def ratio(self, a: str, b: str, column: str) -> float:
        """a's texts/s over b's, both from this sitting's `column` ("1" or "all")."""
        return self.rates[a][column] / self.rates[b][column]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FairSpeed:
        return cls(**{**d, "windows": [tuple(w) for w in d.get("windows", [])]})


def _threads(n: int) -> Any:
    """A context in which numpy's BLAS, OpenMP and torch use `n` threads."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(n)


def _set_torch_threads(n: int) -> None:
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)


def _passes(predict: Predict, texts: list[str], batch_size: int, calls: int) -> None:
    for _ in range(calls):
        for i in range(0, len(texts), batch_size):
            predict(texts[i:i + batch_size])


# The forked workers' work: set before the pool forks, so the children inherit the model and
# its shards without pickling them (a fastText model or a closure cannot be pickled).
_FORKED: dict[str, tuple[Predict, list[list[str]], int]] = {}


def _child_init() -> None:
    _set_torch_threads(1)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _threads(1).__enter__()


def _child_run(name: str, shard: int, calls: int, start_at: float) -> tuple[float, float]:
    predict, shards, batch_size = _FORKED[name]
    # Every worker starts at the same instant, so that the wall time measured is the time the
    # cores ran together, not a worker's wait for its siblings to be scheduled.
    while time.perf_counter() < start_at:
        time.sleep(0.0005)
    begin = time.perf_counter()
    _passes(predict, shards[shard], batch_size, calls)
    return begin, time.perf_counter()


class _Timer:
    """Times one contender at one column; `calls` sized on its warm-up to last min_seconds."""

    def __init__(self, who: Contender, texts: list[str], cores: int, column: str,
                 min_seconds: float):
        self.who, self.texts, self.column = who, texts, column
        self.n = 1 if column == "1" else cores
        self.pool: Any = None
        if self.n > 1 and who.scale == "processes":
            _FORKED[who.name] = (who.predict, [texts[i::self.n] for i in range(self.n)],
                                 who.batch_size)
            self.pool = multiprocessing.get_context("fork").Pool(self.n, _child_init)
        start = time.perf_counter()
        self.calls = 1
        self.time()  # warm-up: caches, lazily built indexes, the pool's first task
        once = time.perf_counter() - start
        self.calls = max(1, math.ceil(min_seconds / max(once, 1e-9)))

    def _in_process(self) -> tuple[float, float]:
        who = self.who
        if who.set_threads is not None:
            who.set_threads(self.n)
        _set_torch_threads(self.n)
        with _threads(self.n):
            begin = time.perf_counter()
            _passes(who.predict, self.texts, who.batch_size, self.calls)
            return begin, time.perf_counter()

    def time(self) -> tuple[float, float, float]:
        """(texts/s, start, end) of one timing."""
        if self.pool is None:
            begin, end = self._in_process()
        else:
            start_at = time.perf_counter() + 0.05
            spans = self.pool.starmap(_child_run, [(self.who.name, i, self.calls, start_at)
                                                   for i in range(self.n)])
            begin, end = min(s for s, _ in spans), max(e for _, e in spans)
        return len(self.texts) * self.calls / (end - begin), begin, end

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            _FORKED.pop(self.who.name, None)


def fair_speed(contenders: Sequence[Contender], texts: list[str], rounds: int = 3,
               cores: int | None = None, min_seconds: float = 0.5,
               on_round: Callable[[int], None] | None = None) -> FairSpeed:
    """Every contender's texts/s on `texts` at one thread and at `cores` (default: every usable
    CPU): the median of `rounds` timings, the rounds interleaving models and columns."""
    cores = cores or usable_cpus()
    saved = _torch_threads()
    result = FairSpeed(cores=cores, texts=len(texts), rounds=rounds, started=time.perf_counter(),
                       ended=0.0)
    timers: list[_Timer] = []
    try:
        for who in contenders:
            result.batch_size[who.name] = who.batch_size
            result.scale[who.name] = who.scale
            timers += [_Timer(who, texts, cores, column, min_seconds) for column in COLUMNS]
        samples: dict[tuple[str, str], list[float]] = {}
        for r in range(rounds):
            for timer in timers:
                rate, begin, end = timer.time()
                samples.setdefault((timer.who.name, timer.column), []).append(rate)
                result.windows.append((timer.who.name, timer.column, begin, end))
            if on_round:
                on_round(r + 1)
        for (name, column), rates in samples.items():
            result.rates.setdefault(name, {})[column] = statistics.median(rates)
    finally:
        for timer in timers:
            timer.close()
        for who in contenders:
            if who.set_threads is not None:
                who.set_threads(cores)
        _set_torch_threads(saved)
    result.ended = time.perf_counter()
    return result


def _torch_threads() -> int:
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else 1
