"""`sdistill benchmark`: the pipeline against real baselines, written up as one Markdown file.

For each config: run the pipeline (stages that are up to date are skipped), then, in this one
process, train the baselines (`evaluation.baselines`) on the same train/dev split and measure
every model the same way: test and dev accuracy, and end-to-end CPU throughput (raw text in,
label out) on the same test texts, at each model's fastest batch size. The student is also
profiled (featuriser, model, the rest) beside scikit-learn's transform on the same texts, and
each data set gets an accuracy-against-throughput figure. What else used the CPU while models
were timed is measured (Linux) and written down with the figures.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from ..errors import DataError, SDistillError
from ..evaluation.baselines import (
    train_dan_scratch,
    train_fasttext,
    train_model2vec,
    train_tfidf_lr,
)
from ..evaluation.metrics import Predict, accuracy
from ..evaluation.results import (
    DatasetResult,
    ModelResult,
    figure_path,
    kept_tail,
    render_results,
    write_figure,
)
from ..evaluation.timing import OtherLoad, machine, profile_student, throughput
from ..files import atomic_write_json, atomic_write_text
from ..inference.artifact import read_student
from ..inference.student import Student
from ..progress import Reporter
from ..training.config import Config
from ..training.data import LabeledData, load_labeled
from ..training.hf import model_source
from ..training.runtime import runtime
from ..training.teacher import Teacher
from .config import as_config
from .pipeline import run_all
from .rundir import StageResult, teacher_source


@dataclass
class _Sitting:
    """One data set's measurements in progress: every model is timed on the same texts, batch
    sizes and repeats, with the machine's other load measured while it is."""

    data: LabeledData
    texts: list[str]
    batch_sizes: list[int]
    repeats: int
    say: Callable[[str], None]
    models: list[ModelResult] = field(default_factory=list)
    load: OtherLoad = field(default_factory=OtherLoad)

    def add(self, name: str, predict: Predict, dev_acc: float | None, settings: str,
            train_s: float | None = None, sizes: Sequence[int] | None = None) -> None:
        assert self.data.test is not None
        self.say(f"measuring {name}")
        test_acc = accuracy(predict, self.data.test.texts, self.data.test.labels)
        self.load.start()
        rate, bs = throughput(predict, self.texts, sizes or self.batch_sizes, self.repeats)
        self.load.stop()
        self.models.append(ModelResult(name, test_acc, dev_acc, rate, bs, settings, train_s))


def benchmark_config(cfg: Config | str | Path, report: Reporter | None = None,
                     on_step: Callable[[str], None] | None = None,
                     extra_students: dict[str, Path] | None = None) -> DatasetResult:
    """Run the pipeline for `cfg`, train the baselines, measure every model on its test split.
    `extra_students`: more student directories (shrunk ones, say) measured beside the run's, as
    rows named by their keys."""
    cfg = as_config(cfg)
    check_benchmarkable(cfg)
    report = report or Reporter()
    say = on_step or (lambda _: None)
    start = time.perf_counter()
    say("pipeline")
    results = run_all(cfg, report=report)
    pipeline_s = time.perf_counter() - start
    data = load_labeled(cfg)
    assert data.test is not None
    torch.manual_seed(cfg.run.seed)
    sitting = _Sitting(data, data.test.texts[:cfg.eval.speed_texts],
                       [b for b in cfg.eval.batch_sizes if b > 1] or [32], cfg.eval.repeats, say)
    teacher_device = _measure_teacher(cfg, sitting)
    students = _measure_students(cfg, results, sitting, extra_students or {})
    baselines_s = _measure_baselines(cfg, sitting, report)
    # The best by dev; on a tie the simpler KD student.
    best_student = max((m for m in sitting.models if m.name in students),
                       key=lambda m: m.dev_accuracy or 0.0)
    say("profiling the student")
    sitting.load.start()
    profile = profile_student(students[best_student.name], sitting.texts,
                              best_student.batch_size, sitting.repeats)
    sitting.load.stop()
    run_dir = cfg.run_dir()
    return DatasetResult(
        name=Path(cfg._path).stem if getattr(cfg, "_path", None) else run_dir.name,
        config=str(getattr(cfg, "_path", "")), n={s.name: len(s.texts) for s in data.splits()},
        labels=len(data.labels), models=sitting.models, profile=profile,
        profile_batch_size=best_student.batch_size, pipeline_s=pipeline_s,
        baselines_s=baselines_s,
        stage_s={stage: r.manifest.get("timings", {}).get("total_s", 0.0)
                 for stage, r in results.items()},
        extra={"pool": results["teacher"].manifest.get("counts", {}).get("pool", {}).get("kept"),
               "best_student": best_student.name, "others_cpu_share": sitting.load.share(),
               "vocab_size": len(students[best_student.name].featurizer.vocab),
               # The students and baselines run on the CPU, the teacher on run.device.
               "teacher_device": teacher_device})


def _measure_teacher(cfg: Config, sitting: _Sitting) -> str:
    """The teacher as the pipeline runs it (bf16 where the CPU has it: same accuracy), on
    run.device; returns that device."""
    assert sitting.data.dev is not None
    t = cfg.teacher
    rt = runtime(cfg.run.device)
    teacher = Teacher.load(teacher_source(cfg.run_dir()), sitting.data.labels, t, rt.device)

    def predict(batch: list[str]) -> list[str]:
        return teacher.predict(batch, batch_size=len(batch))

    sitting.add("teacher", predict, accuracy(predict, sitting.data.dev.texts,
                                             sitting.data.dev.labels),
                f"{Path(t.model).name}, max_length {t.max_length}, {teacher.precision}, "
                f"on {rt.device}",
                sizes=[b for b in sitting.batch_sizes if b <= 128] or sitting.batch_sizes[:1])
    return str(rt.device)


def _measure_students(cfg: Config, results: dict[str, StageResult], sitting: _Sitting,
                      extra: dict[str, Path]) -> dict[str, Student]:
    """The run's students (KD, and KD+FT when fine-tuned) and the extra student directories;
    returns the run's by row name."""
    assert sitting.data.dev is not None
    student_dir = cfg.run_dir() / "student"
    trained = results["student"].manifest["results"]
    students = {"student (KD)": Student.load(student_dir, "model-kd.safetensors")}
    sitting.add("student (KD)", students["student (KD)"].predict, trained["kd"]["dev_accuracy"],
                f"d={cfg.student.embedding_dim}, hidden {cfg.student.hidden_dims}, "
                f"|V|={len(students['student (KD)'].featurizer.vocab):,}")
    if "kd_ft" in trained:
        # The fine-tune starts from the KD weights and keeps them unless dev improves.
        students["student (KD+FT)"] = Student.load(student_dir)
        sitting.add("student (KD+FT)", students["student (KD+FT)"].predict,
                    trained["kd_ft"]["dev_accuracy"], "fine-tuned on gold; KD weights kept "
                    "unless dev improved")
    for name, directory in extra.items():
        other = Student.load(directory)
        if other.labels != sitting.data.labels:
            raise DataError(f"{directory}: its labels {other.labels} are not this data set's "
                            f"{sitting.data.labels}")
        shrunk = read_student(directory).get("shrunk")
        sitting.add(name, other.predict, accuracy(other.predict, sitting.data.dev.texts,
                                                  sitting.data.dev.labels),
                    f"{shrunk['summary'] if shrunk else 'a student directory'}: {directory}")
    return students


def _measure_baselines(cfg: Config, sitting: _Sitting, report: Reporter) -> float:
    """Train and measure each baseline; returns the seconds they took in all."""
    start = time.perf_counter()
    data, seed, say = sitting.data, cfg.run.seed, sitting.say
    with tempfile.TemporaryDirectory(prefix="sdistill-bench-") as tmp:
        say("training DAN from scratch")
        t0 = time.perf_counter()
        predict, dev_acc, settings, _ = train_dan_scratch(cfg, data, Path(tmp), report)
        report.close()
        sitting.add("DAN from scratch (gold only)", predict, dev_acc, settings,
                    time.perf_counter() - t0)
        say("training TF-IDF + logistic regression")
        t0 = time.perf_counter()
        predict, dev_acc, settings = train_tfidf_lr(data, seed)
        sitting.add("TF-IDF + logistic regression", predict, dev_acc, settings,
                    time.perf_counter() - t0)
        say("training fastText")
        t0 = time.perf_counter()
        predict, dev_acc, settings = train_fasttext(data, seed, Path(tmp))
        sitting.add("fastText supervised", predict, dev_acc, settings, time.perf_counter() - t0)
    say("training model2vec")
    t0 = time.perf_counter()
    # The teacher's own pretrained encoder: the same knowledge, distilled model2vec's way.
    predict, dev_acc, settings = train_model2vec(data, model_source(cfg.teacher.model), seed)
    sitting.add("model2vec", predict, dev_acc, settings, time.perf_counter() - t0)
    return time.perf_counter() - start


def check_benchmarkable(cfg: Config) -> None:
    missing = [key for key in ("dev", "test") if getattr(cfg.data, key) is None]
    if missing:
        where = getattr(cfg, "_path", "the config")
        raise SDistillError(f"{where}: benchmark needs data.dev (tuning) and data.test (the "
                            f"figures); add data.{missing[0]}")


def benchmark(configs: Sequence[str | Path | Config], out: str | Path, command: str = "",
              report: Reporter | None = None, on_step: Callable[[str], None] | None = None,
              extra_students: dict[str, Path] | None = None) -> list[DatasetResult]:
    """Benchmark every config; write `out` (Markdown) and the same figures as JSON beside it.
    `extra_students` (with one config only): see `benchmark_config`."""
    out = Path(out)
    cfgs = [as_config(c) for c in configs]  # every config is checked before any work
    for cfg in cfgs:
        check_benchmarkable(cfg)
    if extra_students and len(cfgs) != 1:
        raise DataError("--student measures a student directory on one data set: give one "
                        f"config, not {len(cfgs)}")
    for name, directory in (extra_students or {}).items():
        read_student(directory, f"check --student {name}={directory}")
    results: list[DatasetResult] = []
    commit = git_commit()
    out.parent.mkdir(parents=True, exist_ok=True)
    figures: dict[str, str] = {}
    tail = kept_tail(out)
    for cfg in cfgs:
        results.append(benchmark_config(cfg, report, on_step, extra_students))
        d = results[-1]
        if write_figure(d, figure_path(out, d.name)):
            figures[d.name] = figure_path(out, d.name).name
        # Written after every data set: a long run that stops keeps what it finished.
        when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        text = render_results(results, command or " ".join(sys.argv), when, machine(), commit,
                              figures)
        atomic_write_text(out, text + tail)
        atomic_write_json(out.with_suffix(".json"), {
            "date": when, "machine": machine(), "command": command, "commit": commit,
            "datasets": [asdict(d) for d in results]})
    return results


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
