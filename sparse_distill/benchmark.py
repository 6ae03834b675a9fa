"""`sdistill benchmark`: the pipeline against real baselines, written up as one Markdown file.

For each config: run the pipeline (stages that are up to date are skipped), then, in this one
process, train the baselines (sparse_distill.baselines) on the same train/dev split and measure
every model the same way: test and dev accuracy, and end-to-end CPU throughput (raw text in,
label out) on the same test texts, at each model's fastest batch size. The student is also
profiled (featuriser, model, the rest) beside scikit-learn's transform on the same texts, and
each data set gets an accuracy-against-throughput figure. What else used the CPU while models
were timed is measured (Linux) and written down with the figures.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .baselines import (
    Predict,
    accuracy,
    train_dan_scratch,
    train_fasttext,
    train_model2vec,
    train_tfidf_lr,
)
from .config import Config, as_config, expand_path
from .data import load_labeled
from .errors import DataError, SDistillError
from .evaluation import load_teacher, median_rate
from .progress import Reporter
from .rundir import atomic_write_json, atomic_write_text


@dataclass
class ModelResult:
    name: str
    test_accuracy: float
    dev_accuracy: float | None
    texts_per_s: float
    batch_size: int
    settings: str = ""
    train_s: float | None = None


@dataclass
class DatasetResult:
    name: str
    config: str
    n: dict[str, int]
    labels: int
    models: list[ModelResult]
    profile: dict[str, float]
    profile_batch_size: int
    pipeline_s: float
    baselines_s: float
    # Each stage's own time, from its manifest (measured when it ran; this run may have skipped
    # it as up to date).
    stage_s: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def model(self, name: str) -> ModelResult:
        return next(m for m in self.models if m.name == name)


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


# ---------------------------------------------------------------------------------------------
# Where the student's time goes


PROFILE_PARTS = {"featurize": "featurise (compiled: n-grams + lookup + counts)",
                 "tensors": "numpy buffers -> torch tensors", "model": "model (EmbeddingBag + MLP)",
                 "other": "other (argmax, labels, threads, Python)"}


def profile_student(student: Any, texts: list[str], batch_size: int, repeats: int
                    ) -> dict[str, float]:
    """Seconds per 1,000 texts of each part of the student's end-to-end prediction, each part
    run as the end-to-end path runs it (the same chunks on the same threads); the featuriser
    alone on one thread, and scikit-learn's `transform` (which it replaced) on the same texts."""
    from .featurize import Featurizer

    batches = [texts[i:i + batch_size] for i in range(0, len(texts), batch_size)]
    chunks = [student.chunks(b, batch_size) for b in batches]
    mean = student.pooling == "mean"
    bags = [[student.featurizer.bag(c, mean=mean) for c in cs] for cs in chunks]
    inputs = [[student.tensors(c) for c in cs] for cs in chunks]
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
    model = timed(lambda: [np.concatenate(student.map(student.forward, i)).argmax(axis=1)
                           for i in inputs])
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


class OtherLoad:
    """How much of the machine other processes used while models were timed: the machine's busy
    CPU time minus this process's own, over the wall time x the CPUs (None where unknown)."""

    def __init__(self, busy: Callable[[], float | None] = machine_busy_s,
                 own: Callable[[], float] = time.process_time,
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


# ---------------------------------------------------------------------------------------------
# One data set, then all


def benchmark_config(cfg: Config | str | Path, report: Reporter | None = None,
                     on_step: Callable[[str], None] | None = None,
                     extra_students: dict[str, Path] | None = None) -> DatasetResult:
    """Run the pipeline for `cfg`, train the baselines, measure every model on its test split.
    `extra_students`: more student directories (shrunk ones, say) measured beside the run's, as
    rows named by their keys."""
    from .model import Student
    from .pipeline import run_all
    from .teacher import predict_logits, resolve_precision, runtime

    cfg = as_config(cfg)
    check_benchmarkable(cfg)
    report = report or Reporter()
    say = on_step or (lambda _: None)
    start = time.perf_counter()
    say("pipeline")
    results = run_all(cfg, report=report)
    pipeline_s = time.perf_counter() - start
    data = load_labeled(cfg)
    assert data.dev is not None and data.test is not None
    torch.manual_seed(cfg.run.seed)
    run_dir = cfg.run_dir()
    texts = data.test.texts[:cfg.eval.speed_texts]
    batch_sizes = [b for b in cfg.eval.batch_sizes if b > 1] or [32]
    repeats = cfg.eval.repeats
    models: list[ModelResult] = []
    load = OtherLoad()

    def add(name: str, predict: Predict, dev_acc: float | None, settings: str,
            train_s: float | None = None, sizes: Sequence[int] = batch_sizes) -> None:
        say(f"measuring {name}")
        test_acc = accuracy(predict, data.test.texts, data.test.labels)
        load.start()
        rate, bs = throughput(predict, texts, sizes, repeats)
        load.stop()
        models.append(ModelResult(name, test_acc, dev_acc, rate, bs, settings, train_s))

    # The teacher in the setting the pipeline uses (bf16 where the CPU has it: same accuracy).
    t = cfg.teacher
    teacher_model, tokenizer, columns = load_teacher(cfg, results["teacher"].manifest)
    rt = runtime(cfg.run.device)
    teacher_model.to(rt.device)
    precision = resolve_precision(t.precision, rt.device)

    def teacher(batch: list[str]) -> list[str]:
        logits = predict_logits(teacher_model, tokenizer, batch, max_length=t.max_length,
                                batch_size=len(batch), device=rt.device, precision=precision,
                                sort_by_length=t.sort_by_length, max_windows=t.max_windows)
        return [data.labels[i] for i in logits[:, columns].argmax(axis=1)]

    teacher_dev = accuracy(teacher, data.dev.texts, data.dev.labels)
    add("teacher", teacher, teacher_dev,
        f"{Path(t.model).name}, max_length {t.max_length}, {precision}, on {rt.device}",
        sizes=[b for b in batch_sizes if b <= 128] or batch_sizes[:1])

    student_dir = run_dir / "student"
    trained = results["student"].manifest["results"]
    students = {"student (KD)": Student.load(student_dir, "model-kd.safetensors")}
    add("student (KD)", students["student (KD)"].predict, trained["kd"]["dev_accuracy"],
        f"d={cfg.student.embedding_dim}, hidden {cfg.student.hidden_dims}, "
        f"|V|={len(students['student (KD)'].featurizer.vocab):,}")
    if "kd_ft" in trained:
        # The fine-tune starts from the KD weights and keeps them unless dev improves.
        students["student (KD+FT)"] = Student.load(student_dir)
        add("student (KD+FT)", students["student (KD+FT)"].predict,
            trained["kd_ft"]["dev_accuracy"], "fine-tuned on gold; KD weights kept unless dev "
            "improved")

    for name, directory in (extra_students or {}).items():
        extra = Student.load(directory)
        if extra.labels != data.labels:
            raise DataError(f"{directory}: its labels {extra.labels} are not this data set's "
                            f"{data.labels}")
        shrunk = json.loads((Path(directory) / "student.json").read_text()).get("shrunk")
        add(name, extra.predict, accuracy(extra.predict, data.dev.texts, data.dev.labels),
            f"{shrunk['summary'] if shrunk else 'a student directory'}: {directory}")

    baseline_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sdistill-bench-") as tmp:
        say("training DAN from scratch")
        t0 = time.perf_counter()
        predict, dev_acc, settings, _ = train_dan_scratch(cfg, data, Path(tmp), report)
        report.close()
        add("DAN from scratch (gold only)", predict, dev_acc, settings,
            time.perf_counter() - t0)
        say("training TF-IDF + logistic regression")
        t0 = time.perf_counter()
        predict, dev_acc, settings = train_tfidf_lr(data, cfg.run.seed)
        add("TF-IDF + logistic regression", predict, dev_acc, settings,
            time.perf_counter() - t0)
        say("training fastText")
        t0 = time.perf_counter()
        predict, dev_acc, settings = train_fasttext(data, cfg.run.seed, Path(tmp))
        add("fastText supervised", predict, dev_acc, settings, time.perf_counter() - t0)
    say("training model2vec")
    t0 = time.perf_counter()
    # The teacher's own pretrained encoder: the same knowledge, distilled model2vec's way.
    predict, dev_acc, settings = train_model2vec(data, expand_path(t.model), cfg.run.seed)
    add("model2vec", predict, dev_acc, settings, time.perf_counter() - t0)
    baselines_s = time.perf_counter() - baseline_start

    # The best by dev; on a tie the simpler KD student.
    best_student = max((m for m in models if m.name in students),
                       key=lambda m: m.dev_accuracy or 0.0)
    say("profiling the student")
    load.start()
    profile = profile_student(students[best_student.name], texts, best_student.batch_size,
                              repeats)
    load.stop()
    return DatasetResult(
        name=Path(cfg._path).stem if getattr(cfg, "_path", None) else run_dir.name,
        config=str(getattr(cfg, "_path", "")), n={s.name: len(s.texts) for s in data.splits()},
        labels=len(data.labels), models=models, profile=profile,
        profile_batch_size=best_student.batch_size, pipeline_s=pipeline_s,
        baselines_s=baselines_s,
        stage_s={stage: r.manifest.get("timings", {}).get("total_s", 0.0)
                 for stage, r in results.items()},
        extra={"pool": results["teacher"].manifest.get("counts", {}).get("pool", {}).get("kept"),
               "best_student": best_student.name, "others_cpu_share": load.share(),
               "vocab_size": len(students[best_student.name].featurizer.vocab),
               # The students and baselines run on the CPU, the teacher on run.device.
               "teacher_device": str(rt.device)})


def check_benchmarkable(cfg: Config) -> None:
    missing = [key for key in ("dev", "test") if getattr(cfg.data, key) is None]
    if missing:
        where = getattr(cfg, "_path", "the config")
        raise SDistillError(f"{where}: benchmark needs data.dev (tuning) and data.test (the "
                            f"figures); add data.{missing[0]}")


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


BASELINES = ("DAN from scratch (gold only)", "TF-IDF + logistic regression",
             "fastText supervised", "model2vec")
SHORT = {"DAN from scratch (gold only)": "DAN scratch", "TF-IDF + logistic regression":
         "TF-IDF + LR", "fastText supervised": "fastText", "model2vec": "model2vec"}


def student_speed(d: DatasetResult) -> dict[str, float]:
    """The best student's texts/s: end to end (as every model was measured), and from the
    profile, whose parts are timed one right after the other on the same texts and batches:
    end to end, model only, the featuriser on the student's threads and on one, and
    scikit-learn's transform. Ratios take both sides from the profile: on a shared machine,
    figures timed minutes apart differ by more than the ratio is meant to show."""
    p = d.profile
    return {"e2e": d.model(d.extra["best_student"]).texts_per_s,
            "profile_e2e": 1000 / p["total"], "model_only": 1000 / p["model"],
            "featurize": 1000 / p["featurize"], "featurize_1": 1000 / p["featurize_1_thread"],
            "sklearn": 1000 / p["sklearn_transform"]}


def targets(d: DatasetResult) -> list[tuple[str, bool, str]]:
    """The issues' targets for one data set: (what, met, by how much)."""
    student = d.model(d.extra["best_student"])
    teacher = d.model("teacher")
    rows = [("student >= 0.97 x teacher", student.test_accuracy >= 0.97 * teacher.test_accuracy,
             f"retention {student.test_accuracy / teacher.test_accuracy:.3f}")]
    scratch = d.model("DAN from scratch (gold only)")
    rows.append(("student >= DAN from scratch + 2 points",
                 student.test_accuracy >= scratch.test_accuracy + 0.02,
                 f"{100 * (student.test_accuracy - scratch.test_accuracy):+.1f} points"))
    for name in BASELINES[1:]:
        other = d.model(name)
        rows.append((f"student >= {name}", student.test_accuracy >= other.test_accuracy,
                     f"{100 * (student.test_accuracy - other.test_accuracy):+.1f} points"))
    speed = student_speed(d)
    rows.append(("featuriser >= 10x scikit-learn's transform (both on one thread)",
                 speed["featurize_1"] >= 10 * speed["sklearn"],
                 f"{speed['featurize_1'] / speed['sklearn']:.1f}x"))
    for name in ("fastText supervised", "model2vec"):
        rate = d.model(name).texts_per_s
        rows.append((f"student end to end >= {SHORT[name]}'s texts/s", speed["e2e"] >= rate,
                     f"{speed['e2e'] / rate:.2f}x"))
    # A benchmark file written before devices were recorded ran everything on the CPU.
    where = d.extra.get("teacher_device", "cpu")
    rows.append(("student end to end >= 300x the teacher" if where == "cpu" else
                 f"student end to end (cpu) >= 300x the teacher ({where})",
                 speed["e2e"] >= 300 * teacher.texts_per_s,
                 f"{speed['e2e'] / teacher.texts_per_s:,.0f}x"))
    rows.append(("student end to end >= 50% of its model-only throughput",
                 speed["profile_e2e"] >= 0.5 * speed["model_only"],
                 f"{speed['profile_e2e'] / speed['model_only']:.0%} (profile: "
                 f"{speed['profile_e2e']:,.0f} / {speed['model_only']:,.0f})"))
    return rows


def write_figure(d: DatasetResult, path: Path) -> bool:
    """Test accuracy against end-to-end texts/s (log x) of every model; False without
    matplotlib (`pip install sparse-distill[plots]`)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(8.5, 4.8))
    markers = {"teacher": "D", "student (KD)": "o", "student (KD+FT)": "o"}
    for m in d.models:
        best = m.name == d.extra["best_student"]
        ax.scatter([m.texts_per_s], [m.test_accuracy], s=90 if best else 50, zorder=3,
                   marker=markers.get(m.name, "s"), edgecolors="black" if best else "none",
                   label=f"{m.name}: {m.test_accuracy:.3f}, {m.texts_per_s:,.0f}/s")
    ax.set_xscale("log")
    ax.set_xlabel("texts/s, end to end on CPU, each at its fastest batch size (log)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{d.name}: accuracy against throughput")
    ax.grid(True, which="both", alpha=0.3)
    ax.margins(x=0.1, y=0.15)
    # A legend, not labels beside the points: the fast models sit close together.
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    from .model import write_then_replace

    try:
        write_then_replace(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    finally:
        plt.close(fig)
    return True


def figure_path(out: Path, name: str) -> Path:
    return out.with_name(f"{out.stem}-{name}.png")


def render_results(datasets: list[DatasetResult], command: str, when: str, host: str,
                   commit: str | None, figures: dict[str, str] | None = None) -> str:
    figures = figures or {}
    lines = ["# Benchmark results", "",
             f"- Date: {when}", f"- Machine: {host}",
             f"- Command: `{command}`" + (f" at commit `{commit}`" if commit else ""),
             "- Accuracy on each data set's test split; every model tuned or selected on dev. "
             "Throughput is end to end on CPU (raw text in, label out) over the first "
             "test texts, at each model's fastest batch size, median of repeated runs, all "
             "measured in the one process. Retention and speedup are against the teacher.",
             "- What else ran while models were timed (other processes' share of the CPUs, "
             "from /proc/stat): " + ", ".join(
                 f"{d.name} {d.extra['others_cpu_share']:.1%}"
                 if d.extra.get("others_cpu_share") is not None else f"{d.name} not measured"
                 for d in datasets) + ".", ""]
    lines += ["## Accuracy (test; the student is the best of KD / KD+FT by dev)", "",
              "| data set | teacher | student | retention | "
              + " | ".join(SHORT[n] for n in BASELINES) + " |",
              "|---|---|---|---|" + "---|" * len(BASELINES)]
    for d in datasets:
        teacher, student = d.model("teacher"), d.model(d.extra["best_student"])
        lines.append(f"| {d.name} | {teacher.test_accuracy:.4f} | {student.test_accuracy:.4f} | "
                     f"{student.test_accuracy / teacher.test_accuracy:.3f} | "
                     + " | ".join(f"{d.model(n).test_accuracy:.4f}" for n in BASELINES) + " |")
    lines += ["", "## Speed (texts/s, end to end unless said)", "",
              "| data set | student | student in the profile: end to end / model only | "
              "featuriser | featuriser, 1 thread | scikit-learn transform | "
              "featuriser (1 thread) / scikit-learn | fastText | model2vec | TF-IDF + LR | teacher "
              "| student / teacher |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for d in datasets:
        sp = student_speed(d)
        teacher = d.model("teacher")
        lines.append(
            f"| {d.name} | {sp['e2e']:,.0f} | {sp['profile_e2e']:,.0f} / "
            f"{sp['model_only']:,.0f} = {sp['profile_e2e'] / sp['model_only']:.0%} "
            f"| {sp['featurize']:,.0f} "
            f"| {sp['featurize_1']:,.0f} | {sp['sklearn']:,.0f} "
            f"| {sp['featurize_1'] / sp['sklearn']:.1f}x "
            f"| {d.model('fastText supervised').texts_per_s:,.0f} "
            f"| {d.model('model2vec').texts_per_s:,.0f} "
            f"| {d.model('TF-IDF + logistic regression').texts_per_s:,.0f} "
            f"| {teacher.texts_per_s:,.0f} | {sp['e2e'] / teacher.texts_per_s:,.1f}x |")
    lines.append("")
    for d in datasets:
        teacher = d.model("teacher")
        lines += [f"## {d.name}", "",
                  f"{d.labels} classes; train {d.n.get('train', 0):,}, dev {d.n.get('dev', 0):,}, "
                  f"test {d.n.get('test', 0):,}; unlabelled pool after de-duplication "
                  f"{d.extra.get('pool') or 0:,} texts. "
                  # a config built in Python has no file to name
                  + (f"Config `{d.config}`. " if d.config else "") + "Stage times "
                  "(each from its manifest): "
                  + ", ".join(f"{k} {v / 60:.1f} min" for k, v in d.stage_s.items())
                  + f"; baselines {d.baselines_s / 60:.1f} min.", "",
                  "| model | test acc | dev acc | retention | texts/s | batch | speedup | "
                  "settings |", "|---|---|---|---|---|---|---|---|"]
        for m in d.models:
            mark = " (best student by dev)" if m.name == d.extra["best_student"] else ""
            dev = "-" if m.dev_accuracy is None else f"{m.dev_accuracy:.4f}"
            lines.append(f"| {m.name}{mark} | {m.test_accuracy:.4f} | {dev} | "
                         f"{m.test_accuracy / teacher.test_accuracy:.3f} | "
                         f"{m.texts_per_s:,.0f} | {m.batch_size} | "
                         f"{m.texts_per_s / teacher.texts_per_s:,.1f}x | {m.settings} |")
        lines += ["", "| target | met | margin |", "|---|---|---|"]
        lines += [f"| {what} | {'yes' if ok else 'NO'} | {margin} |"
                  for what, ok, margin in targets(d)]
        p = d.profile
        lines += ["", f"Where the student's end-to-end time goes (batch {d.profile_batch_size}, "
                  "ms per 1,000 texts):", "", "| part | ms | share |", "|---|---|---|"]
        for part, label in PROFILE_PARTS.items():
            lines.append(f"| {label} | {1000 * p[part]:.1f} | {p[part] / p['total']:.0%} |")
        lines += [f"| total | {1000 * p['total']:.1f} | |",
                  f"| (the featuriser alone on one thread) | {1000 * p['featurize_1_thread']:.1f} "
                  "| |",
                  f"| (scikit-learn's transform on the same texts, which the featuriser "
                  f"replaces) | {1000 * p['sklearn_transform']:.1f} | |", ""]
        if d.name in figures:
            lines += [f"![{d.name}: accuracy against throughput]({figures[d.name]})", ""]
    return "\n".join(lines)


# What follows this line in RESULTS.md (tables written by other runs, e.g. scripts/ablation.py)
# is carried over when the benchmark rewrites the file.
KEEP_MARKER = "<!-- kept across benchmark reruns -->"


def kept_tail(path: Path) -> str:
    """The part of an existing results file from KEEP_MARKER on ("" when none)."""
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    at = old.find(KEEP_MARKER)
    return "\n" + old[at:] if at >= 0 else ""


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
        if not (Path(directory) / "student.json").is_file():
            raise DataError(f"--student {name}={directory}: not a student directory (no "
                            "student.json)")
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
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
