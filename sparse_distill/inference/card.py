"""The student directory's model card (README.md): what it classifies, where it came from, how
well and how fast, and how to use it, as Hugging Face model folders and spaCy packages carry.

Written by `train-student` from what the directory holds (student.json, manifest.json, the
vocabulary's settings), and written again by `eval` with the test figures. Reads JSON only: no
torch, no model.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from ..files import atomic_write_text
from .artifact import arch_table_width, read_student

CARD_FILE = "README.md"


def _table(rows: list[tuple[str, str]]) -> list[str]:
    return ["| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows]]


def parameters(arch: dict[str, Any], n_labels: int) -> int:
    """The table's rows x width plus the MLP's weights and biases."""
    widths = [arch["embedding_dim"], *arch["hidden_dims"], n_labels]
    return arch["vocab_size"] * arch_table_width(arch, n_labels) + sum(
        a * b + b for a, b in itertools.pairwise(widths))


def render_card(directory: Path, eval_metrics: dict[str, Any] | None = None) -> str:
    """The card of the student in `directory`; `eval_metrics`: `sdistill eval`'s metrics.json."""
    meta = read_student(directory)
    manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    vocab = json.loads((directory / "vocab" / "vocab.json").read_text(encoding="utf-8"))
    arch, labels = meta["architecture"], meta["labels"]
    teacher = meta.get("teacher", {})
    counts, results = manifest.get("counts", {}), manifest.get("results", {})
    unseen = arch.get("unseen")
    table_bytes = (directory / "model.safetensors").stat().st_size
    lo, hi = vocab["ngram_range"]
    made = [
        ("teacher", f"`{teacher.get('source', 'unknown')}`"
         + (" fine-tuned on the train split" if teacher.get("finetuned") else "")),
        ("training data", f"{counts.get('train_rows', 0):,} labelled texts; the teacher "
         f"soft-labelled {counts.get('targets', 0):,} texts in all"),
        ("vocabulary", f"{vocab['size']:,} word n-grams of orders {lo}-{hi}"
         + (", lower-cased" if vocab["lowercase"] else "")
         + ("; tokens: words, and each character of a script written without spaces "
            "(Chinese, Japanese, Thai, ...)" if vocab.get("tokens") == "scripts"
            else f"; tokens: `{vocab['token_pattern']}`")
         + ("; NFKC-normalised text" if vocab.get("normalize") == "nfkc" else "")
         + (f"; {unseen['buckets']:,} hashed buckets for what it lacks" if unseen else "")),
        ("model", f"EmbeddingBag {arch['vocab_size']:,} x {arch['embedding_dim']} "
         f"({arch.get('table_dtype', 'float32')}, {arch['pooling']} pooling), MLP "
         f"{arch['hidden_dims']} ({arch['activation']})"
         + (f", plus a linear part ({len(labels)} more columns a row, added to the logits)"
            if arch.get("wide") else "") + f"; {parameters(arch, len(labels)):,} "
         f"parameters, {table_bytes / 2**20:,.0f} MiB of weights"),
    ]
    if "kd" in results:
        made.append(("dev accuracy", f"{results['kd']['dev_accuracy']:.4f} after distillation"
                     + (f", {results['kd_ft']['dev_accuracy']:.4f} after fine-tuning on the "
                        "labels" if "kd_ft" in results else "")
                     + (" (before shrinking)" if meta.get("shrunk") else "")))
    if "calibration" in meta:
        c = meta["calibration"]
        made.append(("probabilities", f"calibrated: logits / T = {c['temperature']:.3g}, fitted "
                     f"on {c.get('n', 0):,} dev texts (NLL {c['dev_nll_before']:.4f} -> "
                     f"{c['dev_nll_after']:.4f}); `predict --min-confidence P` marks the texts "
                     "below P"))
    made.append(("made", f"sparse-distill {manifest.get('package_version', '?')}, "
                 f"{manifest.get('created', '?')}, on {manifest.get('device', '?')}"))
    if meta.get("shrunk"):
        made.append(("shrunk", meta["shrunk"]["summary"]))
    lines = [f"# Text classifier: {', '.join(labels)}", "",
             f"A sparse n-gram Deep Averaging Network (sparse-distill) that sorts text into "
             f"{len(labels)} classes, distilled from a transformer teacher.", "",
             "## Use it", "", "```bash", "sdistill predict THIS_DIRECTORY -i texts.txt -o "
             "predictions.jsonl   # one text a line; --device cuda for a GPU", "```", "",
             "```python", "from sparse_distill import Student", "",
             'student = Student.load("THIS_DIRECTORY")',
             'student.predict(["first text", "second text"])   # labels; '
             'predict_proba for probabilities', "```", "",
             "## How it was made", "", *_table(made), ""]
    if eval_metrics:
        lines += ["## Quality (`sdistill eval`)", "",
                  "| split | texts | accuracy | macro-F1 | teacher accuracy | retention |",
                  "|---|---:|---:|---:|---:|---:|"]
        for split, entry in eval_metrics["splits"].items():
            s = entry["student"]
            lines.append(f"| {split} | {entry['n']:,} | {s['accuracy']:.4f} | "
                         f"{s['macro_f1']:.4f} | {entry['teacher']['accuracy']:.4f} | "
                         f"{s['retention']:.3f} |")
        last = list(eval_metrics["splits"].values())[-1]
        if "calibration" in last:
            c = last["calibration"]
            lines += ["", f"Expected calibration error on the last split: "
                      f"{c['student']['ece']:.4f} (the teacher's {c['teacher']['ece']:.4f}; "
                      f"{c['student_uncalibrated']['ece']:.4f} before the temperature)."]
        lines += ["", "## Speed (`sdistill eval`, end to end, each at its fastest batch size)",
                  ""]
        for key in ("speed", "speed_cpu"):
            if key in eval_metrics:
                sp = eval_metrics[key]
                lines.append(f"- on {sp['device']} ({sp['threads']} threads): "
                             f"{sp['student']['samples_per_s']:,.0f} texts/s, the teacher "
                             f"{sp['teacher']['samples_per_s']:,.0f}: {sp['speedup']:,.0f}x")
        lines.append("")
    elif meta.get("shrunk"):
        lines += ["Test figures: the dev accuracy above is the full student's; "
                  "`sdistill eval CONFIG --student THIS_DIRECTORY` measures this one against the "
                  "run's teacher and writes them here.", ""]
    else:
        lines += ["Test figures: run `sdistill eval CONFIG`, which writes them here.", ""]
    return "\n".join(lines)


def write_card(directory: Path, eval_metrics: dict[str, Any] | None = None) -> Path:
    path = directory / CARD_FILE
    atomic_write_text(path, render_card(directory, eval_metrics))
    return path
