"""The student directory's description, `student.json`: its one writer and its one reader.

A student directory holds `student.json` (labels, architecture, the teacher it came from, and
what `shrink` or `export` did to it), `model.safetensors` (or an export's arrays) and `vocab/`.
Every command that takes a student directory checks it here, with the same message.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..files import atomic_write_json

STUDENT_FILE = "student.json"
# With `init: teacher`: the map from the teacher's word vectors to the table's rows
# (`training.embed_init.Projection`), kept so that an unseen word can be mapped the same way.
PROJECTION_FILE = "projection.safetensors"
FORMAT = 1


def student_meta(labels: list[str], architecture: dict[str, Any], teacher: dict[str, Any],
                 calibration: dict[str, Any] | None = None) -> dict[str, Any]:
    """What `train-student` records: labels in the model's output order, the network's shape
    (`network.SparseDAN`'s arguments, plus `unseen` when the table has hashed buckets), where the
    vocabulary is, the teacher's source and, when one was fitted, the calibration
    (`{"temperature": T, ...}`, `training.calibration`)."""
    return {"format": FORMAT, "labels": labels, "architecture": architecture,
            "vocab": "vocab/vocab.json", "teacher": teacher,
            **({"calibration": calibration} if calibration else {})}


def fitted_temperature(meta: dict[str, Any]) -> float:
    """The T that divides the student's logits before softmax: the fitted one, or 1 for a
    student without calibration (trained with `student.calibrate: false`, without dev, or
    before calibration existed)."""
    return float(meta.get("calibration", {}).get("temperature", 1.0))


def table_width(embedding_dim: int, n_labels: int, wide: bool) -> int:
    """Columns of the student's table: the DAN's d, plus one per label for the wide (linear)
    part (`architecture.wide`, `network.SparseDAN`)."""
    return embedding_dim + (n_labels if wide else 0)


def arch_table_width(architecture: dict[str, Any], n_labels: int) -> int:
    """`table_width` of a student.json's architecture (one written before `wide`: d)."""
    return table_width(architecture["embedding_dim"], n_labels, architecture.get("wide", False))


def write_student(directory: Path, meta: dict[str, Any]) -> None:
    atomic_write_json(directory / STUDENT_FILE, meta)


def read_student(directory: str | Path, fix: str | None = None) -> dict[str, Any]:
    """The directory's student.json, or a DataError saying it is not a student directory and
    `fix` (by default: which commands write one)."""
    path = Path(directory) / STUDENT_FILE
    if not path.is_file():
        fix = fix or ("give one that `sdistill train-student` (RUN/student), `shrink` or "
                      "`export` wrote")
        raise DataError(f"{directory}: not a student directory (no {STUDENT_FILE}); {fix}")
    return json.loads(path.read_text(encoding="utf-8"))
