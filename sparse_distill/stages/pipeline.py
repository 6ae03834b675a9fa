"""`sdistill run`: every stage in order, like make: a stage whose output is up to date with its
inputs and config is skipped; one whose inputs or config changed is rebuilt."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..progress import Reporter
from ..training.config import Config
from .config import as_config
from .evaluate import evaluate
from .rundir import StageResult, locked, stage_state
from .teach import teach
from .train_student import train_student
from .vocab import build_vocab

STAGES = ("vocab", "teacher", "student", "eval")


@locked
def run_all(cfg: Config | str | Path, *, force: bool = False, report: Reporter | None = None,
            on_stage: Callable[[str, list[str]], None] | None = None
            ) -> dict[str, StageResult]:
    """Run vocab, teach, train-student and eval; `on_stage(stage, reasons)` is told before each
    stage why it runs (reasons empty: up to date, skipped)."""
    cfg = as_config(cfg)
    report = report or Reporter()
    runners: dict[str, Callable[..., StageResult]] = {
        "vocab": lambda c, force: build_vocab(c, force=force,
                                              progress=_counting(report)),
        "teacher": lambda c, force: teach(c, force=force, report=report),
        "student": lambda c, force: train_student(c, force=force, report=report),
        "eval": lambda c, force: evaluate(c, force=force, report=report),
    }
    results = {}
    for stage in STAGES:
        reasons = ["--force"] if force else stage_state(cfg, stage)
        if on_stage is not None:
            on_stage(stage, reasons)
        results[stage] = runners[stage](cfg, bool(reasons))
        report.close()
    return results


def _counting(report: Reporter) -> Callable[[int], None]:
    started = False

    def update(n: int) -> None:
        nonlocal started
        if not started:
            report.start("counting n-grams", None, unit="texts")
            started = True
        report.update(n)

    return update


def summary(results: dict[str, StageResult]) -> dict[str, Any]:
    """The numbers of the end-of-run table, from eval's metrics."""
    metrics = results["eval"].manifest.get("metrics") or {}
    split_name = "test" if "test" in metrics.get("splits", {}) else next(
        iter(metrics.get("splits", {})), None)
    entry = metrics["splits"][split_name] if split_name else {}
    speed = metrics.get("speed", {})
    calibration = entry.get("calibration", {})
    return {"split": split_name,
            "teacher_accuracy": entry.get("teacher", {}).get("accuracy"),
            "student_kd_accuracy": entry.get("student_kd", {}).get("accuracy"),
            "student_accuracy": entry.get("student", {}).get("accuracy"),
            "retention": entry.get("retention"),
            "teacher_samples_per_s": speed.get("teacher", {}).get("samples_per_s"),
            "student_samples_per_s": speed.get("student", {}).get("samples_per_s"),
            "teacher_batch_size": speed.get("teacher", {}).get("batch_size"),
            "student_batch_size": speed.get("student", {}).get("batch_size"),
            "speedup": speed.get("speedup"),
            "teacher_ece": calibration.get("teacher", {}).get("ece"),
            "student_ece": calibration.get("student", {}).get("ece"),
            "temperature": calibration.get("temperature")}
