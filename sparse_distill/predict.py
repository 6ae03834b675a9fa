"""`sdistill predict`: raw text in, labels and probabilities out (jsonl), streamed in batches.

Memory stays constant whatever the input's size: texts are read, featurised and classified one
batch at a time. An empty or undecodable line is reported with its line number and skipped; the
output rows carry their input line so that they can be joined back.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from .data import COMPRESSED, SUFFIX_FORMATS, Record, read_text_file
from .errors import DataError
from .student import Student


@dataclass
class PredictStats:
    read: int = 0
    predicted: int = 0
    skipped: int = 0
    skipped_examples: list[str] = field(default_factory=list)


def input_format(path: str, fmt: str | None) -> str:
    if fmt:
        return fmt
    if path == "-":
        return "txt"
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] in COMPRESSED:
        suffixes = suffixes[:-1]
    found = SUFFIX_FORMATS.get(suffixes[-1]) if suffixes else None
    if found is None or found == "parquet":
        raise DataError(f"{path}: cannot tell its format from the name; pass --format txt, "
                        "jsonl, csv or tsv")
    return found


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[IO[str]]:
    """stdout, or a file written under a temporary name and renamed when complete."""
    if path is None or path == "-":
        yield sys.stdout
        return
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            yield f
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def predict_file(student: Student, input_path: str, output_path: str | None = None, *,
                 fmt: str | None = None, text_column: str = "text", top_k: int | None = None,
                 batch_size: int = 1024, force: bool = False,
                 on_skip: Callable[[str], None] | None = None) -> PredictStats:
    """Classify every text of a file (or stdin, "-") into jsonl rows (stdout when no output)."""
    if output_path not in (None, "-") and Path(output_path).exists() and not force:
        raise DataError(f"{output_path} already exists; pass --force to overwrite it")
    fmt = input_format(input_path, fmt)
    if input_path != "-" and not Path(input_path).is_file():
        raise DataError(f"{input_path}: file not found; give a text file, or - for stdin")
    stats = PredictStats()
    records = read_text_file(input_path, fmt, text_column)
    labels = student.labels
    with _output(output_path) as out:
        while batch := list(itertools.islice(records, batch_size)):
            good: list[Record] = []
            for rec in batch:
                stats.read += 1
                if rec.problem is None:
                    good.append(rec)
                    continue
                stats.skipped += 1
                message = f"{input_path}:{rec.line}: {rec.problem}; skipped"
                if len(stats.skipped_examples) < 20:
                    stats.skipped_examples.append(message)
                if on_skip is not None:
                    on_skip(message)
            if not good:
                continue
            probs = student.predict_proba([r.text for r in good])  # (batch, n_classes)
            order = np.argsort(-probs, axis=1, kind="stable")  # (batch, n_classes)
            for rec, p, rank in zip(good, probs, order, strict=True):
                row: dict[str, object] = {"line": rec.line, "label": labels[rank[0]]}
                if top_k:
                    row["top_k"] = [[labels[i], round(float(p[i]), 6)] for i in rank[:top_k]]
                else:
                    row["probabilities"] = {lab: round(float(x), 6)
                                            for lab, x in zip(labels, p, strict=True)}
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
            stats.predicted += len(good)
    return stats
