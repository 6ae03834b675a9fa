"""`sdistill eval`: teacher vs student quality and speed, into RUN/eval/metrics.json + report.md.

Quality, per configured split: accuracy, macro-F1, per-class precision/recall/F1 and the
confusion matrix of the teacher and of the student after distillation (KD) and after
fine-tuning (KD+FT); the student's agreement with the teacher; retention (student / teacher
accuracy); each model on the quarter of texts the vocabulary sees least; calibration (expected
calibration error, NLL, reliability bins, coverage and accuracy at confidence thresholds) of
the teacher and of the final student with and without its fitted temperature.

Speed, in this one process on the same texts: end to end (raw strings in, labels out,
tokenisation or n-gram extraction included) and model only (inputs prepared beforehand), at each
configured batch size; one warm-up, then the median of `eval.repeats` runs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from ..evaluation.metrics import (
    calibration_metrics,
    classification_metrics,
    oov_quartile,
    oov_rates,
)
from ..evaluation.report import render_report, write_figures
from ..evaluation.timing import measure_speed
from ..files import atomic_write_json, atomic_write_text, staged_dir
from ..inference.artifact import read_student
from ..inference.card import write_card
from ..inference.portable import softmax
from ..inference.student import Student
from ..progress import Reporter
from ..training.config import Config
from ..training.data import Split, load_labeled
from ..training.runtime import runtime
from ..training.teacher import Teacher
from .config import as_config
from .rundir import (
    StageResult,
    begin_stage,
    locked,
    make_manifest,
    read_manifest,
    teacher_source,
    write_resolved_config,
)


@locked
def evaluate(cfg: Config | str | Path, *, force: bool = False,
             report: Reporter | None = None, student: str | Path | None = None) -> StageResult:
    """Evaluate teacher and student on the configured splits; write RUN/eval/.

    `student`: another student directory (a shrunk one, say) to evaluate against the run's
    teacher instead of RUN/student; its figures go to STUDENT/eval/ and its model card, and are
    computed again at every call."""
    cfg = as_config(cfg)
    if student is None:
        out, student_dir = cfg.run_dir() / "eval", cfg.run_dir() / "student"
        inputs, fp, done = begin_stage(cfg, "eval", force)
        if done is not None:
            return done
    else:
        out, student_dir, inputs, fp = Path(student) / "eval", Path(student), [], {}
        read_student(student_dir)
        if read_manifest(cfg.run_dir() / "teacher") is None:
            raise DataError(f"{cfg.run_dir() / 'teacher'}: no teacher to compare with; run "
                            f"`sdistill teach {getattr(cfg, '_path', 'CONFIG')}` first")
    report = report or Reporter()
    start = time.perf_counter()
    rt = runtime(cfg.run.device)
    labels = (read_manifest(cfg.run_dir() / "teacher") or {})["labels"]
    data = load_labeled(cfg)
    splits = {s.name: s for s in data.splits() if s.name in cfg.eval.splits}
    if not splits:
        raise DataError(f"eval.splits: none of {cfg.eval.splits} is configured under data; "
                        "add data.dev / data.test or change eval.splits")
    # Both models run on run.device, for quality and for speed.
    teacher = Teacher.load(teacher_source(cfg.run_dir()), labels, cfg.teacher, rt.device)
    students = _students(student_dir, labels, rt.device,
                         with_kd=student is None and cfg.student.finetune.epochs > 0)
    quality = _quality(splits, teacher, students, report)
    speed_split = splits.get("test") or next(iter(splits.values()))
    texts = speed_split.texts[:cfg.eval.speed_texts]
    metrics = {"labels": labels, "splits": quality,
               "speed": _speed(cfg, texts, teacher, students["student"], rt.device, report)}
    if rt.device.type != "cpu":  # and where both run on the CPU, as most serving does
        metrics["speed_cpu"] = _speed(cfg, texts, teacher, Student.load(student_dir),
                                      torch.device("cpu"), report)
    manifest = make_manifest(cfg, "eval", fp, inputs,
                             counts={n: s["n"] for n, s in quality.items()},
                             labels=labels, timings={"total_s": time.perf_counter() - start})
    with staged_dir(out, force=True) as tmp:
        atomic_write_json(tmp / "metrics.json", metrics)
        figures = write_figures(metrics, tmp)
        atomic_write_text(tmp / "report.md", render_report(metrics, figures))
        atomic_write_json(tmp / "manifest.json", {**manifest, "metrics": metrics})
    write_card(student_dir, metrics)  # the student's model card gets the test figures
    if student is None:
        write_resolved_config(cfg)
    return StageResult("eval", out, False, {**manifest, "metrics": metrics})


def _students(directory: Path, labels: list[str], device: torch.device, with_kd: bool
              ) -> dict[str, Student]:
    """The final student ("student") and, when `with_kd` and it was saved, the student before
    fine-tuning ("student_kd"), on `device`; their labels must be the teacher's."""
    final = Student.load(directory, device=device)
    if final.labels != labels:
        raise DataError(f"{directory}: its labels {final.labels} are not the teacher's {labels}")
    if with_kd and (directory / "model-kd.safetensors").is_file():
        return {"student_kd": Student.load(directory, "model-kd.safetensors", device=device),
                "student": final}
    return {"student": final}


def _quality(splits: dict[str, Split], teacher: Teacher, students: dict[str, Student],
             report: Reporter) -> dict[str, Any]:
    """Per split: each model's metrics, the students' agreement with the teacher and retention,
    and every model on the texts the vocabulary sees least."""
    quality: dict[str, Any] = {}
    report.start("evaluate", len(splits), unit="splits")
    index = {label: i for i, label in enumerate(teacher.labels)}
    for name, split in splits.items():
        teacher_logits = teacher.logits(split.texts)  # (n, n_classes)
        teacher_pred = [teacher.labels[i] for i in teacher_logits.argmax(axis=1)]
        entry: dict[str, Any] = {"n": len(split.texts),
                                 "teacher": classification_metrics(split.labels, teacher_pred,
                                                                   teacher.labels)}
        preds = {"teacher": teacher_pred}
        gold = np.fromiter((index[label] for label in split.labels), np.int64,
                           len(split.labels))  # (n,)
        final_logits = students["student"].logits(split.texts)  # (n, n_classes)
        t = students["student"].temperature
        entry["calibration"] = {
            "temperature": t,
            "teacher": calibration_metrics(softmax(teacher_logits), gold),
            "student_uncalibrated": calibration_metrics(softmax(final_logits), gold),
            "student": calibration_metrics(softmax(final_logits, t), gold)}
        for key, model in students.items():
            logits = final_logits if key == "student" else model.logits(split.texts)
            pred = preds[key] = [model.labels[i] for i in logits.argmax(axis=1)]
            metrics = classification_metrics(split.labels, pred, teacher.labels)
            metrics["agreement"] = float(np.mean(np.asarray(pred) == np.asarray(teacher_pred)))
            metrics["retention"] = metrics["accuracy"] / max(entry["teacher"]["accuracy"], 1e-12)
            entry[key] = metrics
        # The top-level keys of metrics.json's contract are the final student's.
        entry["agreement"] = entry["student"]["agreement"]
        entry["retention"] = entry["student"]["retention"]
        entry["oov_quartile"] = oov_quartile(
            oov_rates(students["student"].featurizer.vocab, split.texts), split.labels, preds)
        quality[name] = entry
        report.update(1)
    return quality


def _speed(cfg: Config, texts: list[str], teacher: Teacher, student: Student,
           device: torch.device, report: Reporter) -> dict[str, Any]:
    """Teacher and student both on `device`: a speedup never compares two devices."""
    teacher.to(device)
    speed = measure_speed(texts, teacher, student, cfg.eval.batch_sizes, cfg.eval.repeats,
                          report)
    speed.update(device=str(device), threads=torch.get_num_threads(), n_texts=len(texts),
                 teacher_precision=teacher.precision)
    return speed
