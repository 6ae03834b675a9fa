"""kill -9 anywhere (issue 16): each long stage is killed with SIGKILL at random moments and run
again; the rerun ends with the output of an uninterrupted run, byte for byte (timings aside),
and leaves no temporary files.

Real data (rt and the general-English pool, fetched into $SDISTILL_CACHE) and a tiny teacher, so
that the minutes go to the stages' own work. Each kill is aimed at one phase: the harness watches
the run directory for the file that shows the phase has begun (seen in the uninterrupted run),
then waits a random share of the time the phase took there.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import comparable, differences

pytestmark = pytest.mark.slow

KILLS = 3
SEED = 16
POLL_S = 0.01
POOL = 125_000  # general-English sentences: the vocabulary's large pool, and the teacher's
# A resumable student checkpoint at every evaluation at least this far apart (default 300 s), so
# that kills land between checkpoints as well as before the first.
ENV = {**os.environ, "SDISTILL_CHECKPOINT_SECONDS": "1", "HF_HUB_OFFLINE": "1",
       "TOKENIZERS_PARALLELISM": "false"}


def sdistill(*args: str) -> list[str]:
    return [sys.executable, "-m", "sparse_distill", *args]


@dataclass(frozen=True)
class Phase:
    name: str
    command: str          # the key of COMMANDS that runs it
    begins: Callable[[Path], bool]  # the phase has begun (the work directory shows it)
    ends: Callable[[Path], bool] | None  # None: it lasts to the command's end


def _log_has(path: Path, phase: str) -> bool:
    try:
        return any(json.loads(line).get("phase") == phase
                   for line in path.read_text().splitlines() if line.strip())
    except (OSError, ValueError):
        return False


def _holding(work: Path) -> bool:
    """A command holds the run's lock: it is past its imports, at its stage's work."""
    try:
        return (work / "run" / ".sdistill.lock").stat().st_size > 0
    except OSError:
        return False


PHASES = [
    Phase("vocab on a large pool", "vocab", _holding, None),
    Phase("teacher fine-tuning", "teach", lambda w: (w / "run/teacher.partial").is_dir(),
          lambda w: (w / "run/teacher.partial/model").is_dir()),
    Phase("labelling", "teach", lambda w: (w / "run/teacher.partial/targets").is_dir(), None),
    Phase("distillation", "train-student",
          lambda w: (w / "run/student.partial/log.jsonl").is_file(),
          lambda w: _log_has(w / "run/student.partial/log.jsonl", "finetune")),
    Phase("fine-tuning", "train-student",
          lambda w: _log_has(w / "run/student.partial/log.jsonl", "finetune"), None),
    Phase("eval", "eval", _holding, None),
    Phase("predict to a file", "predict", lambda w: (w / ".predictions.jsonl.tmp").exists(),
          None),
    Phase("benchmark", "benchmark", lambda w: True, None),
]
COMMANDS = {
    "vocab": (lambda w: sdistill("vocab", str(w / "config.yaml")), ["run/vocab"]),
    "teach": (lambda w: sdistill("teach", str(w / "config.yaml")), ["run/teacher"]),
    "train-student": (lambda w: sdistill("train-student", str(w / "config.yaml")),
                      ["run/student"]),
    "eval": (lambda w: sdistill("eval", str(w / "config.yaml")), ["run/eval"]),
    "predict": (lambda w: sdistill("predict", str(w / "run/student"), "-i", str(w / "texts.txt"),
                                   "-o", str(w / "predictions.jsonl")), ["predictions.jsonl"]),
    "benchmark": (lambda w: sdistill("benchmark", str(w / "config.yaml"), "-o",
                                     str(w / "bench/RESULTS.md")), ["bench"]),
}


def _config(work: Path, teacher: Path) -> dict[str, Any]:
    from sparse_distill.files import default_cache_dir

    data = default_cache_dir() / "data"
    rt = data / "rt"
    return {
        "run": {"dir": str(work / "run"), "seed": 13, "device": "cpu"},
        "data": {"train": {"path": str(rt / "train.jsonl"), "text": "text", "label": "label"},
                 "dev": {"path": str(rt / "dev.jsonl")}, "test": {"path": str(rt / "test.jsonl")},
                 "unlabeled": [{"path": str(work.parent / "pool.txt")}]},
        "vocab": {"ngram_range": [1, 3], "max_features": 300_000},
        "teacher": {"model": str(teacher), "finetune": True, "epochs": 2, "batch_size": 64,
                    "max_length": 32, "label_batch_size": 256, "shard_size": 20_000,
                    "lr": 1.0e-3},
        "student": {"embedding_dim": 32, "hidden_dims": [32],
                    "distill": {"steps": 900, "batch_size": 512, "eval_every": 50,
                                "lr": 2.0e-3, "patience": 100},
                    "finetune": {"epochs": 3, "batch_size": 64, "lr": 1.0e-4, "patience": 5}},
        "eval": {"speed_texts": 300, "repeats": 1},
    }


def _run(command: list[str], work: Path, phases: list[Phase] | None = None
         ) -> dict[str, float]:
    """Run to the end; return when each phase's begin/end mark was first seen (s from start)."""
    seen: dict[str, float] = {}
    start = time.perf_counter()
    log = work.parent / "log.txt"  # a file, not a pipe: a pipe nobody reads fills and blocks
    with log.open("w") as err:
        proc = subprocess.Popen(command, env=ENV, cwd=work, stdout=subprocess.DEVNULL,
                                stderr=err)
    while proc.poll() is None:
        for p in phases or []:
            now = time.perf_counter() - start
            if p.name + ":begin" not in seen and p.begins(work):
                seen[p.name + ":begin"] = now
            if p.ends is not None and p.name + ":end" not in seen and p.ends(work):
                seen[p.name + ":end"] = now
        time.sleep(POLL_S)
    assert proc.returncode == 0, f"{' '.join(command)} failed:\n{log.read_text()[-3000:]}"
    seen["end"] = time.perf_counter() - start
    return seen


def _kill_within(command: list[str], work: Path, phase: Phase, wait: float) -> str:
    """Start the command, wait for the phase to begin, `wait` s more, then kill -9 it. Returns
    where the kill landed (the phase ended first: "late")."""
    proc = subprocess.Popen(command, env=ENV, cwd=work, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    while proc.poll() is None and not phase.begins(work):
        time.sleep(POLL_S)
    deadline = time.perf_counter() + wait
    while proc.poll() is None and time.perf_counter() < deadline:
        time.sleep(POLL_S)
    landed = "late" if proc.poll() is not None or (
        phase.ends is not None and phase.ends(work)) else "in"
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return landed


def _benchmark(path: Path) -> Any:
    """What a benchmark decides: every model's accuracies and settings per data set. The rest
    (its Markdown included) is time: throughput, the batch size that was fastest, the profile."""
    return [{"name": d["name"], "n": d["n"], "models": [
        {k: m[k] for k in ("name", "test_accuracy", "dev_accuracy", "settings")}
        for m in d["models"]]} for d in json.loads(path.read_text())["datasets"]]


def _tree(root: Path, outputs: list[str]) -> dict[str, Any]:
    files = {}
    for out in outputs:
        top = root / out
        for path in ([top] if top.is_file() else sorted(p for p in top.rglob("*")
                                                         if p.is_file())):
            if out == "bench":
                files[str(path.relative_to(root))] = (_benchmark(path)
                                                      if path.suffix == ".json" else "timed")
            else:
                files[str(path.relative_to(root))] = comparable(path)
    return files


def _litter(root: Path) -> list[str]:
    """Temporary files and unfinished stage directories left anywhere under `root`."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.name.endswith((".tmp", ".old", ".partial")))


def _restore(snapshot: Path, work: Path) -> None:
    for child in work.iterdir():
        if child.name not in ("config.yaml", "texts.txt"):
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    for child in snapshot.iterdir():
        target = work / child.name
        shutil.copytree(child, target) if child.is_dir() else shutil.copy2(child, target)


@pytest.fixture(scope="module")
def reference(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The uninterrupted run: every command's outputs, the snapshot each one starts from, and
    when each phase began and ended."""
    import itertools

    from sparse_distill.files import default_cache_dir
    from sparse_distill.stages.assets import fetch

    for name in ("rt", "pool-general"):
        fetch(name, default_cache_dir())
    root = tmp_path_factory.mktemp("kill9")
    work = root / "work"
    work.mkdir()
    (work / "config.yaml").write_text(yaml.safe_dump(_config(work, tiny_bert)))
    pool = default_cache_dir() / "data" / "pool-general" / "pool.txt"
    with pool.open(encoding="utf-8") as f:
        lines = list(itertools.islice(f, POOL))
    (root / "pool.txt").write_text("".join(lines))
    # predict reads a million texts: seconds of work to kill it in
    (work / "texts.txt").write_text("".join(lines) * (1_000_000 // POOL))
    ref: dict[str, Any] = {"work": work, "snapshots": {}, "outputs": {}, "marks": {}}
    for name, (command, outputs) in COMMANDS.items():
        snapshot = root / f"before-{name}"
        shutil.copytree(work, snapshot, ignore=shutil.ignore_patterns("config.yaml", "texts.txt"))
        ref["snapshots"][name] = snapshot
        marks = _run(command(work), work, [p for p in PHASES if p.command == name])
        ref["marks"].update({f"{name}/{k}": v for k, v in marks.items()})
        ref["outputs"][name] = _tree(work, outputs)
        assert not _litter(work), _litter(work)
    print("\nuninterrupted run, seconds from each command's start:",
          json.dumps({k: round(v, 2) for k, v in ref["marks"].items()}))
    return ref


@pytest.mark.parametrize("phase", PHASES, ids=[p.name for p in PHASES])
def test_killed_anywhere_the_rerun_ends_as_an_uninterrupted_run(phase: Phase, reference):
    work, marks = reference["work"], reference["marks"]
    command, outputs = COMMANDS[phase.command]
    begin = marks.get(f"{phase.command}/{phase.name}:begin", 0.0)
    end = marks.get(f"{phase.command}/{phase.name}:end", marks[f"{phase.command}/end"])
    assert end > begin, f"{phase.name} did not show in the uninterrupted run"
    rng = random.Random(f"{SEED}-{phase.name}")
    landed = []
    for kill in range(KILLS):
        _restore(reference["snapshots"][phase.command], work)
        wait = rng.uniform(0.05, 0.7) * (end - begin)  # phases run faster alone
        landed.append(_kill_within(command(work), work, phase, wait))
        print(f"\n{phase.name}: kill {kill + 1} at {wait:.2f} s into the phase "
              f"({landed[-1]})", flush=True)
        _run(command(work), work)
        differ = differences(reference["outputs"][phase.command], _tree(work, outputs))
        assert not differ, (f"kill {kill + 1} ({wait:.2f} s into {phase.name}): the rerun's "
                            f"output differs: {differ[:10]}")
        assert not _litter(work), f"left behind: {_litter(work)}"
    print(f"\n{phase.name}: {landed.count('in')}/{KILLS} kills inside the phase, every rerun "
          f"equal (phase {end - begin:.1f} s)")
    assert landed.count("in") == KILLS, f"kills that missed {phase.name}: {landed}"
