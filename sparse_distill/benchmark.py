"""`sdistill benchmark`: the pipeline against real baselines, written up as one Markdown file.

For each config: run the pipeline (stages that are up to date are skipped), then, in this one
process, train the baselines (sparse_distill.baselines) on the same train/dev split and measure
every model the same way: test and dev accuracy, and end-to-end CPU throughput (raw text in,
label out) on the same test texts, at each model's fastest batch size.
"""

from __future__ import annotations

import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from .baselines import Predict, accuracy, train_dan_scratch, train_fasttext, train_tfidf_lr
from .config import Config, as_config
from .data import load_labeled
from .errors import SDistillError
from .evaluation import load_teacher, median_rate
from .progress import Reporter
from .rundir import atomic_write_json, atomic_write_text
from .vocab import Bag


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


def profile_student(student: Any, texts: list[str], batch_size: int, repeats: int
                    ) -> dict[str, float]:
    """Seconds per 1,000 texts of each part of the student's end-to-end prediction."""
    from .student import bag_tensors

    analyze = student.featurizer.vocab.vectorizer().build_analyzer()
    chunks = [texts[i:i + batch_size] for i in range(0, len(texts), batch_size)]
    bags: list[Bag] = [student.featurizer(c) for c in chunks]
    tensors = [bag_tensors(b, student.pooling, torch.device("cpu")) for b in bags]
    per_k = 1000 / len(texts)

    def timed(run: Callable[[], Any]) -> float:
        return per_k * len(texts) / median_rate(run, len(texts), repeats)

    extract = timed(lambda: [[analyze(t) for t in c] for c in chunks])
    featurize = timed(lambda: [student.featurizer(c) for c in chunks])
    to_tensors = timed(lambda: [bag_tensors(b, student.pooling, torch.device("cpu"))
                                for b in bags])

    @torch.inference_mode()
    def forward() -> None:
        for t in tensors:
            student.model(*t).argmax(dim=1)

    model = timed(forward)
    total = timed(lambda: [student.predict(c) for c in chunks])
    return {"ngram_extraction": extract, "vocabulary_lookup": max(featurize - extract, 0.0),
            "tensors": to_tensors, "model": model,
            "other": max(total - featurize - to_tensors - model, 0.0), "total": total}


# ---------------------------------------------------------------------------------------------
# One data set, then all


def benchmark_config(cfg: Config | str | Path, report: Reporter | None = None,
                     on_step: Callable[[str], None] | None = None) -> DatasetResult:
    """Run the pipeline for `cfg`, train the baselines, measure every model on its test split."""
    from .pipeline import run_all
    from .student import Student
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

    def add(name: str, predict: Predict, dev_acc: float | None, settings: str,
            train_s: float | None = None, sizes: Sequence[int] = batch_sizes) -> None:
        say(f"measuring {name}")
        test_acc = accuracy(predict, data.test.texts, data.test.labels)
        rate, bs = throughput(predict, texts, sizes, repeats)
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
                                sort_by_length=t.sort_by_length)
        return [data.labels[i] for i in logits[:, columns].argmax(axis=1)]

    teacher_dev = accuracy(teacher, data.dev.texts, data.dev.labels)
    add("teacher", teacher, teacher_dev,
        f"{Path(t.model).name}, max_length {t.max_length}, {precision}",
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
    baselines_s = time.perf_counter() - baseline_start

    # The best by dev; on a tie the simpler KD student.
    best_student = max((m for m in models if m.name in students),
                       key=lambda m: m.dev_accuracy or 0.0)
    say("profiling the student")
    profile = profile_student(students[best_student.name], texts, best_student.batch_size,
                              repeats)
    return DatasetResult(
        name=Path(cfg._path).stem if getattr(cfg, "_path", None) else run_dir.name,
        config=str(getattr(cfg, "_path", "")), n={s.name: len(s.texts) for s in data.splits()},
        labels=len(data.labels), models=models, profile=profile,
        profile_batch_size=best_student.batch_size, pipeline_s=pipeline_s,
        baselines_s=baselines_s,
        stage_s={stage: r.manifest.get("timings", {}).get("total_s", 0.0)
                 for stage, r in results.items()},
        extra={"pool": results["teacher"].manifest.get("counts", {}).get("pool", {}).get("kept"),
               "best_student": best_student.name})


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


def targets(d: DatasetResult) -> list[tuple[str, bool, str]]:
    """The issue's targets for one data set: (what, met, by how much)."""
    student = d.model(d.extra["best_student"])
    teacher = d.model("teacher")
    rows = [("student >= 0.97 x teacher", student.test_accuracy >= 0.97 * teacher.test_accuracy,
             f"retention {student.test_accuracy / teacher.test_accuracy:.3f}")]
    scratch = d.model("DAN from scratch (gold only)")
    rows.append(("student >= DAN from scratch + 2 points",
                 student.test_accuracy >= scratch.test_accuracy + 0.02,
                 f"{100 * (student.test_accuracy - scratch.test_accuracy):+.1f} points"))
    for name in ("fastText supervised", "TF-IDF + logistic regression"):
        other = d.model(name)
        rows.append((f"student >= {name}", student.test_accuracy >= other.test_accuracy,
                     f"{100 * (student.test_accuracy - other.test_accuracy):+.1f} points"))
    return rows


def render_results(datasets: list[DatasetResult], command: str, when: str, host: str,
                   commit: str | None) -> str:
    lines = ["# Benchmark results", "",
             f"- Date: {when}", f"- Machine: {host}",
             f"- Command: `{command}`" + (f" at commit `{commit}`" if commit else ""),
             "- Accuracy on each data set's test split; every model tuned or selected on dev. "
             "Throughput is end to end on CPU (raw text in, label out) over the first "
             "test texts, at each model's fastest batch size, median of repeated runs, all "
             "measured in the one process. Retention and speedup are against the teacher.", ""]
    lines += ["## Summary (test accuracy; the student is the best of KD / KD+FT by dev)", "",
              "| data set | teacher | student | retention | DAN scratch | TF-IDF + LR | fastText "
              "| student texts/s | teacher texts/s | speedup |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for d in datasets:
        teacher, student = d.model("teacher"), d.model(d.extra["best_student"])
        others = [d.model(n).test_accuracy for n in ("DAN from scratch (gold only)",
                                                     "TF-IDF + logistic regression",
                                                     "fastText supervised")]
        lines.append(f"| {d.name} | {teacher.test_accuracy:.4f} | {student.test_accuracy:.4f} | "
                     f"{student.test_accuracy / teacher.test_accuracy:.3f} | "
                     + " | ".join(f"{a:.4f}" for a in others)
                     + f" | {student.texts_per_s:,.0f} | {teacher.texts_per_s:,.0f} | "
                     f"{student.texts_per_s / teacher.texts_per_s:,.1f}x |")
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
        for part in ("ngram_extraction", "vocabulary_lookup", "tensors", "model", "other"):
            lines.append(f"| {part.replace('_', ' ')} | {1000 * p[part]:.1f} | "
                         f"{p[part] / p['total']:.0%} |")
        lines += [f"| total | {1000 * p['total']:.1f} | |", ""]
    return "\n".join(lines)


def benchmark(configs: Sequence[str | Path | Config], out: str | Path, command: str = "",
              report: Reporter | None = None, on_step: Callable[[str], None] | None = None
              ) -> list[DatasetResult]:
    """Benchmark every config; write `out` (Markdown) and the same figures as JSON beside it."""
    out = Path(out)
    cfgs = [as_config(c) for c in configs]  # every config is checked before any work
    for cfg in cfgs:
        check_benchmarkable(cfg)
    results: list[DatasetResult] = []
    commit = git_commit()
    out.parent.mkdir(parents=True, exist_ok=True)
    for cfg in cfgs:
        results.append(benchmark_config(cfg, report, on_step))
        # Written after every data set: a long run that stops keeps what it finished.
        when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        text = render_results(results, command or " ".join(sys.argv), when, machine(), commit)
        atomic_write_text(out, text)
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
