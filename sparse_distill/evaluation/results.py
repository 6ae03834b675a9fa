"""`sdistill benchmark`'s results: every model's figures on each data set, the targets they are
held to, and RESULTS.md with a figure per data set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..files import write_then_replace
from .timing import PROFILE_PARTS


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
        lines += dataset_section(d, figures.get(d.name))
    return "\n".join(lines)


def dataset_section(d: DatasetResult, figure: str | None) -> list[str]:
    """A data set's own section: every model's row, the targets, the student's profile."""
    teacher = d.model("teacher")
    lines = [f"## {d.name}", "",
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
    if figure:
        lines += [f"![{d.name}: accuracy against throughput]({figure})", ""]
    return lines


# What follows this line in RESULTS.md (tables written by other runs) is carried over when the
# benchmark rewrites the file.
KEEP_MARKER = "<!-- kept across benchmark reruns -->"


def kept_tail(path: Path) -> str:
    """The part of an existing results file from KEEP_MARKER on ("" when none)."""
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    at = old.find(KEEP_MARKER)
    return "\n" + old[at:] if at >= 0 else ""
