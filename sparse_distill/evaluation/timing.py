"""Speed: items per second of a model, timed so that short calls and a shared machine do not
decide the figure; the student's time split into its parts; what else used the machine.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..inference.featurize import Featurizer
from ..inference.student import Student
from ..progress import Reporter
from ..training.teacher import Teacher
from .metrics import Predict


def median_rate(run: Callable[[], Any], n: int, repeats: int, min_seconds: float = 0.25
                ) -> float:
    """Items per second of `run` (which handles `n` items): one warm-up, then the median of
    `repeats` timings, each of as many calls as last at least `min_seconds` together. A fast
    model on 500 texts takes 2 ms a call, and a timing that short is the scheduler's to decide:
    timed once each, the student's model-only and end-to-end figures came out 113% of each
    other."""
    start = time.perf_counter()
    run()
    calls = max(1, math.ceil(min_seconds / max(time.perf_counter() - start, 1e-9)))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            run()
        times.append((time.perf_counter() - start) / calls)
    return n / statistics.median(times)


def throughput(predict: Predict, texts: list[str], batch_sizes: Sequence[int], repeats: int
               ) -> tuple[float, int]:
    """(texts/s, batch size) end to end at the fastest of `batch_sizes`: median of `repeats`."""
    best = (0.0, batch_sizes[0])
    for bs in batch_sizes:
        def run(bs: int = bs) -> None:
            for i in range(0, len(texts), bs):
                predict(texts[i:i + bs])
        rate = median_rate(run, len(texts), repeats)
        if rate > best[0]:
            best = (rate, bs)
    return best


def model_only(student: Student, batches: list[list[str]], batch_size: int
               ) -> Callable[[], None]:
    """A run of the student's network alone over `batches`: its inputs are made beforehand
    exactly as the end-to-end path makes them (the same chunks, on the same threads)."""
    prepared = [[student.tensors(c) for c in student.chunks(b, batch_size)] for b in batches]

    def run() -> None:
        for inputs in prepared:
            np.concatenate(student.map(student.forward, inputs)).argmax(axis=1)

    return run


def measure_speed(texts: list[str], teacher: Teacher, student: Student, batch_sizes: list[int],
                  repeats: int, report: Reporter) -> dict[str, Any]:
    """samples/s end to end and model only, per batch size, for teacher and student (each on
    the device it is on)."""
    # The teacher's inputs made beforehand, for the texts each timing reads.
    encoded = {n: teacher.encode(texts[:n]) for n in {min(len(texts), 200), len(texts)}}
    rows: dict[str, dict[str, dict[str, float]]] = {"teacher": {}, "student": {}}
    report.start("speed", 2 * len(batch_sizes), unit="runs")
    for bs in batch_sizes:
        # Batch size 1 on a transformer is slow: time it on fewer texts.
        n = min(len(texts), 200) if bs == 1 else len(texts)
        rows["teacher"][str(bs)] = {
            "samples_per_s": median_rate(lambda n=n, bs=bs: teacher.predict(texts[:n], bs),
                                         n, repeats),
            "model_only_samples_per_s": median_rate(
                lambda n=n, bs=bs: teacher.predict(texts[:n], bs, encoded[n]), n, repeats)}
        report.update(1)
        batches = [texts[i:i + bs] for i in range(0, len(texts), bs)]

        def student_e2e(batches: list[list[str]] = batches) -> None:
            for batch in batches:
                student.predict(batch)

        rows["student"][str(bs)] = {
            "samples_per_s": median_rate(student_e2e, len(texts), repeats),
            "model_only_samples_per_s": median_rate(model_only(student, batches, bs),
                                                    len(texts), repeats)}
        report.update(1)
    # Bulk work runs each model at its fastest batch size: the speedup compares those.
    best = {who: max(rows[who], key=lambda bs, who=who: rows[who][bs]["samples_per_s"])
            for who in rows}
    summary = {who: {"batch_size": int(best[who]), **rows[who][best[who]]} for who in rows}
    return {"by_batch_size": rows, **summary,
            "speedup": summary["student"]["samples_per_s"] / summary["teacher"]["samples_per_s"]}


PROFILE_PARTS = {"featurize": "featurise (compiled: n-grams + lookup + counts)",
                 "tensors": "numpy buffers -> torch tensors", "model": "model (EmbeddingBag + MLP)",
                 "other": "other (argmax, labels, threads, Python)"}


def profile_student(student: Student, texts: list[str], batch_size: int, repeats: int
                    ) -> dict[str, float]:
    """Seconds per 1,000 texts of each part of the student's end-to-end prediction, each part
    run as the end-to-end path runs it (the same chunks on the same threads); the featuriser
    alone on one thread, and scikit-learn's `transform` (which it replaced) on the same texts."""
    batches = [texts[i:i + batch_size] for i in range(0, len(texts), batch_size)]
    chunks = [student.chunks(b, batch_size) for b in batches]
    mean = student.pooling == "mean"
    bags = [[student.featurizer.bag(c, mean=mean) for c in cs] for cs in chunks]
    one_thread = Featurizer(student.featurizer.vocab, threads=1,
                            unseen=student.featurizer.unseen)
    vectorizer = student.featurizer.vocab.vectorizer().fit([])
    per_k = 1000 / len(texts)

    def timed(run: Callable[[], Any]) -> float:
        return per_k * len(texts) / median_rate(run, len(texts), repeats)

    featurize = timed(lambda: [student.map(lambda c: student.featurizer.bag(c, mean=mean), cs)
                               for cs in chunks])
    to_tensors = timed(lambda: [[(torch.from_numpy(b.ids), torch.from_numpy(b.offsets),
                                  torch.from_numpy(b.weights)) for b in bs] for bs in bags])
    model = timed(model_only(student, batches, batch_size))
    total = timed(lambda: [student.predict(b) for b in batches])
    alone = timed(lambda: [one_thread.bag(b, mean=mean) for b in batches])
    sklearn = timed(lambda: [vectorizer.transform(b) for b in batches])
    return {"featurize": featurize, "tensors": to_tensors, "model": model,
            "other": max(total - featurize - to_tensors - model, 0.0), "total": total,
            "featurize_1_thread": alone, "sklearn_transform": sklearn}


def machine_busy_s() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (Linux /proc/stat), else None."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    ticks = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """CPU seconds of this process and of its children that have ended: the fair sitting's
    forked workers are this benchmark's own work, not another process's."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class OtherLoad:
    """How much of the machine other processes used while models were timed: the machine's busy
    CPU time minus this process's own and its ended children's, over the wall time x the CPUs
    (None where unknown)."""

    def __init__(self, busy: Callable[[], float | None] = machine_busy_s,
                 own: Callable[[], float] = own_cpu_s,
                 clock: Callable[[], float] = time.perf_counter, cpus: int | None = None):
        self._busy, self._own, self._clock = busy, own, clock
        self.cpus = cpus or os.cpu_count() or 1
        self.others = self.wall = 0.0
        self.known = True

    def start(self) -> None:
        self._at = (self._busy(), self._own(), self._clock())

    def stop(self) -> None:
        busy, own, wall = self._busy(), self._own(), self._clock()
        if busy is None or self._at[0] is None:
            self.known = False
            return
        self.others += max((busy - self._at[0]) - (own - self._at[1]), 0.0)
        self.wall += wall - self._at[2]

    def share(self) -> float | None:
        if not self.known or self.wall <= 0:
            return None
        return min(self.others / (self.wall * self.cpus), 1.0)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {torch.get_num_threads()} torch threads, Python "
            f"{platform.python_version()}, torch {torch.__version__}, {platform.system()}")
