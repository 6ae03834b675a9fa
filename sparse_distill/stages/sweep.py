"""`sdistill sweep CONFIG ROWS`: the config's student against variants of it (`--set` lists, as in
`benchmarks/ablation.yaml`), each sharing the run's vocabulary and teacher where it can: what a
user runs to choose a setting (a width, a loss, a pool budget) on their own data.

Every row: its best student by dev (KD, or KD+FT when fine-tuning improved dev), dev and test
accuracy, accuracy on the test texts the config's vocabulary lacks most (the most-unseen
quarter), texts/s at one thread and on every core (one thread-fair sitting of all rows), the
student stage's peak resident memory and wall time, how many texts its teacher labelled and the
retention (test / the teacher's test). Choose on dev; test is there to report.
The sitting holds every row's student at once: a dozen rows at d 256 and |V| 1M is about 12 GiB.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..evaluation.fair import Contender, fair_speed
from ..evaluation.metrics import predictions
from ..evaluation.results import SweepResult, SweepRow, render_sweep
from ..evaluation.timing import machine
from ..evaluation.uncertainty import bits_accuracy, correct_bits
from ..files import atomic_write_json, atomic_write_text
from ..progress import Reporter
from ..training.config import Config
from ..training.data import load_labeled
from .benchmark import config_hash, git_commit, stage_times, student_threads, unseen_quarter
from .config import as_config
from .teach import teach
from .train_student import train_student
from .variants import Variant, best_student, run_variant, variant_config
from .vocab import build_vocab

REFERENCE = "the config's student"


def sweep(cfg: Config | str | Path, rows: list[Variant], report: Reporter | None = None,
          on_step: Callable[[str], None] | None = None) -> SweepResult:
    """Train (or find up to date) the config's student and each row's; measure them all."""
    cfg = as_config(cfg)
    report = report or Reporter()
    say = on_step or (lambda _: None)
    say("the config's run")
    build_vocab(cfg)
    main = {"teacher": teach(cfg, report=report)}
    report.close()
    main["student"] = train_student(cfg, report=report)
    report.close()
    data = load_labeled(cfg)
    runs: list[tuple[str, list[str], dict[str, Any]]] = [(REFERENCE, [], main)]
    for row in rows:
        say(f"row: {row.name}")
        runs.append((row.name, row.overrides,
                     run_variant(cfg, variant_config(cfg, row.name, row.overrides), report)))
    students = [best_student(stages["student"].output, stages["student"].manifest)
                for _, _, stages in runs]
    test = data.test or data.dev
    assert test is not None and data.dev is not None
    quarter, rate = unseen_quarter(students[0][0], test.texts)
    say("timing every row: one thread, then every core")
    texts = test.texts[:cfg.eval.speed_texts]
    fair = fair_speed([Contender(name, student.predict, 256, "threads", student_threads(student))
                       for (name, _, _), (student, _, _) in zip(runs, students, strict=True)],
                      texts, rounds=cfg.eval.repeats)
    out = []
    for (name, overrides, stages), (student, weights, dev) in zip(runs, students, strict=True):
        bits = correct_bits(predictions(student.predict, test.texts), test.labels)
        out.append(SweepRow(
            name, overrides, weights, dev,
            bits_accuracy(bits) if data.test is not None else None,
            sum(bits[i] == "1" for i in quarter) / len(quarter)
            if data.test is not None else None,
            fair.rates[name]["1"], fair.rates[name]["all"],
            stages["student"].manifest.get("memory", {}).get("peak_gib"),
            stage_times({"student": stages["student"]}),
            stages["teacher"].manifest.get("counts", {}).get("targets"),
            teacher_accuracy(stages["teacher"].manifest)))
    teacher_test = teacher_accuracy(main["teacher"].manifest)
    return SweepResult(str(getattr(cfg, "_path", "")), config_hash(cfg), out, fair.cores,
                       rate if data.test is not None else None, teacher_test)


def teacher_accuracy(manifest: dict[str, Any]) -> float | None:
    """A teacher stage's test accuracy, as its manifest records it (None without a test split)."""
    return manifest.get("eval", {}).get("test", {}).get("accuracy")


def write_sweep(result: SweepResult, out: Path, command: str = "") -> None:
    """`out` (Markdown) and the same figures as JSON beside it."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = command or " ".join(sys.argv)
    commit = git_commit()
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, render_sweep(result, command, when, machine(), commit))
    atomic_write_json(out.with_suffix(".json"), {"date": when, "machine": machine(),
                                                 "command": command, "commit": commit,
                                                 **asdict(result)})
