"""`sdistill eval`: teacher vs student quality and speed, into RUN/eval/metrics.json + report.md.

Quality, per configured split: accuracy, macro-F1, per-class precision/recall/F1 and the
confusion matrix of the teacher and of the student after distillation (KD) and after
fine-tuning (KD+FT); the student's agreement with the teacher; retention (student / teacher
accuracy).

Speed, in this one process on the same texts: end to end (raw strings in, labels out,
tokenisation or n-gram extraction included) and model only (inputs prepared beforehand), at each
configured batch size; one warm-up, then the median of `eval.repeats` runs.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .card import write_card
from .config import Config, as_config
from .data import load_labeled
from .errors import DataError
from .featurize import Featurizer, Vocabulary
from .model import Student
from .progress import Reporter
from .rundir import (
    StageResult,
    atomic_write_json,
    atomic_write_text,
    begin_stage,
    locked,
    make_manifest,
    read_manifest,
    staged_dir,
    write_resolved_config,
)
from .teacher import (
    encode_windows,
    label_order,
    load_classifier,
    load_tokenizer,
    model_labels,
    model_source,
    predict_logits,
    resolve_precision,
    runtime,
)


def classification_metrics(gold: list[str], pred: list[str], labels: list[str]
                           ) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix
    (rows: gold, columns: predicted, both in `labels` order)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    p, r, f, n = precision_recall_fscore_support(gold, pred, labels=labels, zero_division=0)
    return {"accuracy": float(np.mean(np.asarray(gold) == np.asarray(pred))),
            "macro_f1": float(np.mean(f)),
            "per_class": {lab: {"precision": float(p[i]), "recall": float(r[i]),
                                "f1": float(f[i]), "support": int(n[i])}
                          for i, lab in enumerate(labels)},
            "confusion": confusion_matrix(gold, pred, labels=labels).tolist()}


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


def oov_rates(vocab: Vocabulary, texts: list[str]) -> np.ndarray:
    """(n_texts,) share of each text's n-grams (in the vocabulary's range) that the vocabulary
    lacks: what the student cannot see. A text with no n-gram at all counts as wholly unseen."""
    analyze = vocab.vectorizer().build_analyzer()
    total = np.fromiter((len(analyze(t)) for t in texts), dtype=np.float64, count=len(texts))
    bag = Featurizer(vocab)(texts)
    cumulative = np.concatenate([[0.0], np.cumsum(bag.weights, dtype=np.float64)])  # (nnz + 1,)
    seen = cumulative[bag.offsets[1:]] - cumulative[bag.offsets[:-1]]  # (n_texts,) in-vocab
    return np.where(total > 0, 1.0 - seen / np.maximum(total, 1.0), 1.0)


def oov_quartile(rates: np.ndarray, gold: list[str], preds: dict[str, list[str]]
                 ) -> dict[str, Any]:
    """Accuracy of each model on the quarter of texts with the highest out-of-vocabulary rate."""
    n = max(1, len(rates) // 4)
    worst = np.argsort(-rates, kind="stable")[:n]  # (n,)
    gold_q = np.asarray(gold)[worst]
    return {"n": int(n), "min_oov_rate": float(rates[worst].min()),
            "mean_oov_rate": float(rates[worst].mean()),
            **{key: float(np.mean(np.asarray(p)[worst] == gold_q)) for key, p in preds.items()}}


def load_teacher(cfg: Config, manifest: dict[str, Any]) -> tuple[Any, Any, np.ndarray]:
    """The teacher stage's classifier, its tokenizer and the logit columns in label order."""
    info = manifest["teacher"]
    source = str(cfg.run_dir() / "teacher" / "model") if info["finetuned"] \
        else model_source(info["source"])
    tokenizer = load_tokenizer(source, cfg.teacher.trust_remote_code)
    model = load_classifier(source, None, cfg.teacher.trust_remote_code)
    columns = label_order(model_labels(model), manifest["labels"], cfg.teacher.label_map)
    return model, tokenizer, columns


@locked
def evaluate(cfg: Config | str | Path, *, force: bool = False,
             report: Reporter | None = None, student: str | Path | None = None) -> StageResult:
    """Evaluate teacher and student on the configured splits; write RUN/eval/.

    `student`: another student directory (a shrunk one, say) to evaluate against the run's
    teacher instead of RUN/student; its figures go to STUDENT/eval/ and its model card, and are
    computed again at every call."""
    cfg = as_config(cfg)
    if student is None:
        out = cfg.run_dir() / "eval"
        inputs, fp, done = begin_stage(cfg, "eval", force)
        if done is not None:
            return done
    else:
        out, inputs, fp = Path(student) / "eval", [], {}
        if not (Path(student) / "student.json").is_file():
            raise DataError(f"{student}: not a student directory (no student.json)")
        if read_manifest(cfg.run_dir() / "teacher") is None:
            raise DataError(f"{cfg.run_dir() / 'teacher'}: no teacher to compare with; run "
                            f"`sdistill teach {getattr(cfg, '_path', 'CONFIG')}` first")
    report = report or Reporter()
    start = time.perf_counter()
    rt = runtime(cfg.run.device)
    teacher_manifest = read_manifest(cfg.run_dir() / "teacher") or {}
    labels = teacher_manifest["labels"]
    data = load_labeled(cfg)
    splits = {s.name: s for s in data.splits() if s.name in cfg.eval.splits}
    if not splits:
        raise DataError(f"eval.splits: none of {cfg.eval.splits} is configured under data; "
                        "add data.dev / data.test or change eval.splits")
    t = cfg.teacher
    model, tokenizer, columns = load_teacher(cfg, teacher_manifest)
    student_dir = cfg.run_dir() / "student" if student is None else Path(student)
    # Both models run on run.device, for quality and for speed.
    students = {"student": Student.load(student_dir, device=rt.device)}
    if students["student"].labels != labels:
        raise DataError(f"{student_dir}: its labels {students['student'].labels} are not the "
                        f"teacher's {labels}")
    if student is None and (student_dir / "model-kd.safetensors").is_file() \
            and cfg.student.finetune.epochs > 0:
        students = {"student_kd": Student.load(student_dir, "model-kd.safetensors",
                                               device=rt.device),
                    "student": students["student"]}

    def teacher_on(device: torch.device) -> tuple[Callable[..., list[str]], str]:
        """The teacher moved to `device`: its labelling function and its precision there."""
        model.to(device)
        precision = resolve_precision(t.precision, device)

        def teacher_labels(texts: list[str], batch_size: int = t.label_batch_size,
                           encoded: tuple[list[list[int]], np.ndarray] | None = None
                           ) -> list[str]:
            logits = predict_logits(model, tokenizer, texts, max_length=t.max_length,
                                    batch_size=batch_size, device=device, precision=precision,
                                    sort_by_length=t.sort_by_length, max_windows=t.max_windows,
                                    encoded=encoded)
            return [labels[i] for i in logits[:, columns].argmax(axis=1)]

        return teacher_labels, precision

    teacher_labels = teacher_on(rt.device)[0]

    quality: dict[str, Any] = {}
    report.start("evaluate", len(splits), unit="splits")
    for name, split in splits.items():
        teacher_pred = teacher_labels(split.texts)
        entry: dict[str, Any] = {"n": len(split.texts),
                                 "teacher": classification_metrics(split.labels, teacher_pred,
                                                                   labels)}
        preds = {"teacher": teacher_pred}
        for key, student in students.items():
            pred = preds[key] = student.predict(split.texts)
            metrics = classification_metrics(split.labels, pred, labels)
            metrics["agreement"] = float(np.mean(np.asarray(pred) == np.asarray(teacher_pred)))
            metrics["retention"] = metrics["accuracy"] / max(entry["teacher"]["accuracy"], 1e-12)
            entry[key] = metrics
        # DESIGN's top-level keys are the final student's.
        entry["agreement"] = entry["student"]["agreement"]
        entry["retention"] = entry["student"]["retention"]
        entry["oov_quartile"] = oov_quartile(
            oov_rates(students["student"].featurizer.vocab, split.texts), split.labels, preds)
        quality[name] = entry
        report.update(1)

    speed_split = splits.get("test") or next(iter(splits.values()))
    texts = speed_split.texts[:cfg.eval.speed_texts]

    def speed_on(device: torch.device, student: Student) -> dict[str, Any]:
        """Teacher and student both on `device`: a speedup never compares two devices."""
        labels_fn, precision = teacher_on(device)
        speed = measure_speed(texts, labels_fn, tokenizer, t.max_length, student,
                              cfg.eval.batch_sizes, cfg.eval.repeats, report, t.max_windows)
        speed.update(device=str(device), threads=torch.get_num_threads(), n_texts=len(texts),
                     teacher_precision=precision)
        return speed

    metrics = {"labels": labels, "splits": quality,
               "speed": speed_on(rt.device, students["student"])}
    if rt.device.type != "cpu":  # and where both run on the CPU, as most serving does
        metrics["speed_cpu"] = speed_on(torch.device("cpu"), Student.load(student_dir))
    manifest = make_manifest(cfg, "eval", fp, inputs, counts={n: s["n"] for n, s in
                                                              quality.items()},
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


def measure_speed(texts: list[str], teacher_labels: Callable[..., list[str]], tokenizer: Any,
                  max_length: int, student: Student, batch_sizes: list[int], repeats: int,
                  report: Reporter, max_windows: int = 1) -> dict[str, Any]:
    """samples/s end to end and model only, per batch size, for teacher and student."""
    # The teacher's inputs made beforehand, for the texts each timing reads.
    encoded = {n: encode_windows(tokenizer, texts[:n], max_length, max_windows)
               for n in {min(len(texts), 200), len(texts)}}
    rows: dict[str, dict[str, dict[str, float]]] = {"teacher": {}, "student": {}}
    report.start("speed", 2 * len(batch_sizes), unit="runs")
    for bs in batch_sizes:
        # Batch size 1 on a transformer is slow: time it on fewer texts.
        n = min(len(texts), 200) if bs == 1 else len(texts)
        rows["teacher"][str(bs)] = {
            "samples_per_s": median_rate(lambda n=n, bs=bs: teacher_labels(texts[:n], bs),
                                         n, repeats),
            "model_only_samples_per_s": median_rate(
                lambda n=n, bs=bs: teacher_labels(texts[:n], bs, encoded[n]), n, repeats)}
        report.update(1)
        batches = [texts[i:i + bs] for i in range(0, len(texts), bs)]
        # The model's inputs exactly as the end-to-end path makes them (the same chunks, on
        # the same threads), made beforehand.
        prepared = [[student.tensors(c) for c in student.chunks(b, bs)] for b in batches]

        def student_e2e(batches: list[list[str]] = batches) -> None:
            for batch in batches:
                student.predict(batch)

        def student_model(prepared: list[list[Any]] = prepared) -> None:
            for inputs in prepared:
                np.concatenate(student.map(student.forward, inputs)).argmax(axis=1)

        rows["student"][str(bs)] = {
            "samples_per_s": median_rate(student_e2e, len(texts), repeats),
            "model_only_samples_per_s": median_rate(student_model, len(texts), repeats)}
        report.update(1)
    # Bulk work runs each model at its fastest batch size: the speedup compares those.
    best = {who: max(rows[who], key=lambda bs, who=who: rows[who][bs]["samples_per_s"])
            for who in rows}
    summary = {who: {"batch_size": int(best[who]), **rows[who][best[who]]} for who in rows}
    return {"by_batch_size": rows, **summary,
            "speedup": summary["student"]["samples_per_s"] / summary["teacher"]["samples_per_s"]}


MODEL_NAMES = {"teacher": "teacher", "student_kd": "student (KD)", "student": "student"}


def write_figures(metrics: dict[str, Any], directory: Path) -> list[str]:
    """PNG figures, if matplotlib is installed (`pip install sparse-distill[plots]`): the
    confusion matrix of each model on each split, and accuracy against end-to-end throughput."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    labels = metrics["labels"]
    names = []
    for split, entry in metrics["splits"].items():
        keys = [k for k in MODEL_NAMES if k in entry]
        fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.6), squeeze=False)
        for ax, key in zip(axes[0], keys, strict=True):
            matrix = np.asarray(entry[key]["confusion"])
            ax.imshow(matrix, cmap="Blues")
            ax.set_title(f"{MODEL_NAMES[key]}: {entry[key]['accuracy']:.3f}")
            ax.set_xticks(range(len(labels)), labels, rotation=90 if len(labels) > 4 else 0)
            ax.set_yticks(range(len(labels)), labels)
            ax.set_xlabel("predicted")
            ax.set_ylabel("gold")
            if len(labels) <= 10:
                for (i, j), v in np.ndenumerate(matrix):
                    ax.text(j, i, str(v), ha="center", va="center",
                            color="white" if v > matrix.max() / 2 else "black")
        fig.tight_layout()
        names.append(f"confusion-{split}.png")
        fig.savefig(directory / names[-1], dpi=110)
        plt.close(fig)
    split = "test" if "test" in metrics["splits"] else next(iter(metrics["splits"]))
    speed = metrics["speed"]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for key in ("teacher", "student"):
        acc = metrics["splits"][split][key]["accuracy"]
        rate = speed[key]["samples_per_s"]
        ax.scatter([rate], [acc], s=60)
        ax.annotate(f"{MODEL_NAMES[key]}\n{rate:,.0f}/s (batch {speed[key]['batch_size']})",
                    (rate, acc), textcoords="offset points", xytext=(8, -4))
    ax.set_xscale("log")
    ax.set_xlabel("texts/s, end to end, at the fastest batch size (log)")
    ax.set_ylabel(f"{split} accuracy")
    ax.set_title(f"speedup {speed['speedup']:,.0f}x")
    ax.margins(x=0.6, y=0.3)
    fig.tight_layout()
    names.append("accuracy-vs-speed.png")
    fig.savefig(directory / names[-1], dpi=110)
    plt.close(fig)
    return names


def render_report(metrics: dict[str, Any], figures: list[str] | None = None) -> str:
    """report.md: quality per split, speed per batch size, and the figures."""
    lines = ["# sparse-distill evaluation", "", "## Quality", "",
             "| split | model | accuracy | macro-F1 | agreement with teacher | retention |",
             "|---|---|---:|---:|---:|---:|"]
    for split, entry in metrics["splits"].items():
        for key, label in MODEL_NAMES.items():
            if key not in entry:
                continue
            m = entry[key]
            agree = f"{m['agreement']:.4f}" if "agreement" in m else ""
            keep = f"{m['retention']:.3f}" if "retention" in m else ""
            lines.append(f"| {split} ({entry['n']:,}) | {label} | {m['accuracy']:.4f} | "
                         f"{m['macro_f1']:.4f} | {agree} | {keep} |")
    lines += ["", "The quarter of each split with the highest share of n-grams the vocabulary "
              "lacks (what the student cannot see):", "",
              "| split | texts | unseen n-grams (mean) | " + " | ".join(MODEL_NAMES.values())
              + " |", "|---|---:|---:|" + "---:|" * len(MODEL_NAMES)]
    for split, entry in metrics["splits"].items():
        if "oov_quartile" in entry:
            q = entry["oov_quartile"]
            lines.append(f"| {split} | {q['n']:,} | {q['mean_oov_rate']:.1%} | " + " | ".join(
                f"{q[k]:.4f}" if k in q else "" for k in MODEL_NAMES) + " |")
    for key in ("speed", "speed_cpu"):
        if key not in metrics:
            continue
        s = metrics[key]
        lines += ["", f"## Speed on {s['device']}", "",
                  f"{s['n_texts']:,} texts, teacher and student both on {s['device']}, "
                  f"{s['threads']} threads, teacher in {s['teacher_precision']}; samples/s end "
                  "to end (model only).", "",
                  "| batch size | teacher | student | student / teacher |",
                  "|---:|---:|---:|---:|"]
        for bs, t_row in s["by_batch_size"]["teacher"].items():
            st_row = s["by_batch_size"]["student"][bs]
            lines.append(f"| {bs} | {t_row['samples_per_s']:,.0f} "
                         f"({t_row['model_only_samples_per_s']:,.0f}) | "
                         f"{st_row['samples_per_s']:,.0f} "
                         f"({st_row['model_only_samples_per_s']:,.0f}) "
                         f"| {st_row['samples_per_s'] / t_row['samples_per_s']:,.1f}x |")
        lines += ["", f"speedup on {s['device']}, end to end, each at its fastest batch size "
                  f"(teacher {s['teacher']['batch_size']}, student {s['student']['batch_size']}):"
                  f" {s['speedup']:,.1f}x", ""]
    if figures:
        lines += ["## Figures", ""] + [f"![{name}]({name})" for name in figures] + [""]
    else:
        lines += ["(No figures: install matplotlib, e.g. `pip install sparse-distill[plots]`.)",
                  ""]
    return "\n".join(lines)
