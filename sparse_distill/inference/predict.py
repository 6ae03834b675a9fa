"""`sdistill predict`: raw text in, labels and probabilities out (jsonl), streamed in batches.

Memory stays constant whatever the input's size: texts are read, featurised and classified one
batch at a time. An empty or undecodable line is reported with its line number and skipped; the
output rows carry their input line so that they can be joined back.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from ..errors import DataError
from ..files import open_replacing, refuse_overwrite
from .featurize import thread_pool
from .readers import Record, format_from_name, read_text_file, read_txt_batches
from .student import Student


@dataclass
class PredictStats:
    read: int = 0
    predicted: int = 0
    abstained: int = 0
    skipped: int = 0
    skipped_examples: list[str] = field(default_factory=list)


def input_format(path: str, fmt: str | None) -> str:
    if fmt:
        return fmt
    if path == "-":
        return "txt"
    found = format_from_name(path)
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
    with open_replacing(path) as f:
        yield f


def format_rows(lines: list[int], probs: np.ndarray, labels: list[str], top_k: int | None,
                min_confidence: float | None = None) -> str:
    """jsonl rows for a batch: {"line", "label", "probabilities": {label: p}}, or with top_k
    {"line", "label", "top_k": [[label, p], ...]} in decreasing order; a row whose top
    probability is below `min_confidence` ends with "abstained": true (its label is still the
    most probable one).

    One %-format a row, so that writing costs less than predicting. Probabilities have 6
    decimals: %.6f rounds the exact value, as round(p, 6) would.
    """
    rows = _rows(lines, probs, labels, top_k)
    if min_confidence is not None:
        for i in np.flatnonzero(probs.max(axis=1) < min_confidence):
            rows[i] = rows[i][:-2] + ', "abstained": true}\n'  # each row ends with "}\n"
    return "".join(rows)


def _rows(lines: list[int], probs: np.ndarray, labels: list[str], top_k: int | None
          ) -> list[str]:
    quoted = [json.dumps(label, ensure_ascii=False) for label in labels]
    if top_k:
        k = min(top_k, len(labels))
        template = '{"line": %d, "label": %s, "top_k": [' + ", ".join(["[%s, %.6f]"] * k) + "]}\n"
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]  # (batch, k)
        top = np.take_along_axis(probs, order, axis=1).tolist()  # (batch, k)
        rows = []
        for line, ranked, p in zip(lines, order.tolist(), top, strict=True):
            args: list[object] = [line, quoted[ranked[0]]]
            for i, x in zip(ranked, p, strict=True):
                args += (quoted[i], x)
            rows.append(template % tuple(args))
        return rows
    template = ('{"line": %d, "label": %s, "probabilities": {'
                + ", ".join(q.replace("%", "%%") + ": %.6f" for q in quoted) + "}}\n")
    best = probs.argmax(axis=1).tolist()  # (batch,): the first of equal maxima, as argsort's
    return [template % (line, quoted[b], *p)
            for line, b, p in zip(lines, best, probs.tolist(), strict=True)]


def predict_file(student: Student, input_path: str, output_path: str | None = None, *,
                 fmt: str | None = None, text_column: str = "text", top_k: int | None = None,
                 batch_size: int = 1024, force: bool = False,
                 on_skip: Callable[[str], None] | None = None,
                 min_confidence: float | None = None) -> PredictStats:
    """Classify every text of a file (or stdin, "-") into jsonl rows (stdout when no output);
    rows below `min_confidence` are marked abstained (`format_rows`)."""
    if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
        raise DataError(f"--min-confidence {min_confidence}: a probability, from 0 to 1")
    if output_path not in (None, "-"):
        refuse_overwrite(output_path, force)
    fmt = input_format(input_path, fmt)
    if input_path != "-" and not Path(input_path).is_file():
        raise DataError(f"{input_path}: file not found; give a text file, or - for stdin")
    stats = PredictStats()
    # While the student classifies one batch (on its own threads, mostly without the GIL), this
    # thread reads the next and writes the last: reading and writing jsonl cost a third as much.
    driver = thread_pool(1, "predict-driver")
    pending: tuple[list[int], Future[np.ndarray]] | None = None

    def write(numbers: list[int], probs: Future[np.ndarray]) -> None:
        p = probs.result()  # (batch, n_classes)
        out.write(format_rows(numbers, p, student.labels, top_k, min_confidence))
        stats.predicted += len(numbers)
        if min_confidence is not None:
            stats.abstained += int((p.max(axis=1) < min_confidence).sum())

    with _output(output_path) as out:
        for numbers, texts, bad in _batches(input_path, fmt, text_column, batch_size):
            stats.read += len(numbers) + len(bad)
            for rec in bad:
                stats.skipped += 1
                message = f"{input_path}:{rec.line}: {rec.problem}; skipped"
                if len(stats.skipped_examples) < 20:
                    stats.skipped_examples.append(message)
                if on_skip is not None:
                    on_skip(message)
            if not texts:
                continue
            probs = driver.submit(student.predict_proba, texts)  # (batch, n_classes)
            if pending is not None:
                write(*pending)
            pending = (numbers, probs)
        if pending is not None:
            write(*pending)
    return stats


def _batches(path: str, fmt: str, text_column: str, size: int
             ) -> Iterator[tuple[list[int], list[str], list[Record]]]:
    """(line numbers, texts, bad lines) per batch of `size` lines of the input."""
    if fmt == "txt":
        yield from read_txt_batches(path, size)
        return
    records = read_text_file(path, fmt, text_column)
    while batch := list(itertools.islice(records, size)):
        good = [r for r in batch if r.problem is None]
        yield ([r.line for r in good], [r.text for r in good],  # type: ignore[misc]
               [r for r in batch if r.problem is not None])
