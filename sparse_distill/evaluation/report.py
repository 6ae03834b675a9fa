"""`sdistill eval`'s report: report.md and its figures, from metrics.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

MODEL_NAMES = {"teacher": "teacher", "student_kd": "student (KD)", "student": "student"}


def write_figures(metrics: dict[str, Any], directory: Path) -> list[str]:
    """PNG figures, if matplotlib is installed (`pip install sparse-distill[plots]`): the
    confusion matrix of each model on each split, accuracy against end-to-end throughput, and
    the reliability of the teacher's and the student's probabilities."""
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
    if "calibration" in metrics["splits"][split]:
        c = metrics["splits"][split]["calibration"]
        fig, ax = plt.subplots(figsize=(5, 4.2))
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly calibrated")
        for key, name in _calibration_names(c["temperature"]).items():
            bins = c[key]["reliability"]
            ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o",
                    label=f"{name}: ECE {c[key]['ece']:.3f}")
        ax.set_xlabel("confidence (top probability, bin mean)")
        ax.set_ylabel("accuracy in the bin")
        ax.set_title(f"reliability on {split}")
        ax.legend(fontsize=8)
        fig.tight_layout()
        names.append("reliability.png")
        fig.savefig(directory / names[-1], dpi=110)
        plt.close(fig)
    return names


def _calibration_names(t: float) -> dict[str, str]:
    return {"teacher": "teacher", "student_uncalibrated": "student, T = 1",
            "student": f"student, T = {t:.3g} (fitted on dev)"}


def _calibration(metrics: dict[str, Any]) -> list[str]:
    """The calibration tables: ECE and NLL per split and model; coverage and accuracy at each
    confidence threshold on the last split (test where there is one)."""
    entries = {split: e["calibration"] for split, e in metrics["splits"].items()
               if "calibration" in e}
    if not entries:
        return []
    lines = ["", "## Calibration", "",
             "Expected calibration error (15 bins of the top probability; 0 is perfect) and "
             "negative log-likelihood; the student's temperature T divides its logits, fitted on "
             "dev after training (labels are unchanged by it).", "",
             "| split | model | ECE | NLL |", "|---|---|---:|---:|"]
    for split, c in entries.items():
        for key, name in _calibration_names(c["temperature"]).items():
            lines.append(f"| {split} | {name} | {c[key]['ece']:.4f} | {c[key]['nll']:.4f} |")
    split, c = list(entries.items())[-1]
    names = _calibration_names(c["temperature"])
    keys = ("teacher", "student")
    lines += ["", f"Coverage and accuracy on {split} when the texts whose top probability is "
              "below a threshold are set aside (`sdistill predict --min-confidence P`):", "",
              "| threshold | " + " | ".join(f"{names[k]}: coverage | accuracy" for k in keys)
              + " |", "|---:|" + "---:|---:|" * len(keys)]
    for i, row in enumerate(c["teacher"]["risk_coverage"]):
        cells = []
        for k in keys:
            r = c[k]["risk_coverage"][i]
            acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.4f}"
            cells.append(f"{r['coverage']:.1%} | {acc}")
        lines.append(f"| {row['threshold']:g} | " + " | ".join(cells) + " |")
    return lines


def render_report(metrics: dict[str, Any], figures: list[str] | None = None) -> str:
    """report.md: quality per split, calibration, speed per batch size, and the figures."""
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
    lines += _calibration(metrics)
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
