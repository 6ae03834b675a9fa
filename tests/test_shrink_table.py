"""The shrink table (`stages.shrink_table`): every variant made and measured in its own process,
its figures against what the test works out itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sparse_distill.evaluation.results import SHRINK_HEADER, render_variants
from sparse_distill.inference.portable import NumpyStudent, OnnxStudent
from sparse_distill.inference.student import Student
from sparse_distill.stages import shrink_table
from sparse_distill.stages.shrink_table import VARIANTS, measure_variants

DATA = Path(__file__).parent / "data"
STUDENT = DATA / "run-4d1a82c" / "student"  # committed: |V| 500, d 16, no buckets


def files_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], list[str], list[str]]:
    rows = [json.loads(line) for name in ("train", "dev", "test")
            for line in (DATA / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()]
    texts, labels = [r["text"] for r in rows], [r["label"] for r in rows]
    steps: list[str] = []
    # One batch size, one repeat, the texts as they are: the figures' plumbing, not the speed.
    table = measure_variants(STUDENT, texts, labels, tmp_path_factory.mktemp("work"), [16], 1,
                             steps.append, min_texts=0)
    assert steps[0] == "shrink table: making full" and len(steps) == 2 * len(VARIANTS)
    return table, texts, labels


def test_every_variant_is_a_row_and_the_full_student_is_its_own_reference(measured):
    rows, texts, labels = measured
    assert [r["name"] for r in rows] == [v.name for v in VARIANTS]
    assert all("skipped" not in r for r in rows)  # onnx is installed in the dev environment
    full = rows[0]
    predictions = Student.load(STUDENT).predict(texts)
    assert full["accuracy"] == np.mean(np.array(predictions) == np.array(labels))
    assert full["agreement"] == 1.0 and full["accuracy_share"] == 1.0
    assert full["bytes"] == (STUDENT / "model.safetensors").stat().st_size + files_bytes(
        STUDENT / "vocab")
    for r in rows:
        assert r["load_s"] > 0 and r["texts_per_s"] > 0 and r["batch_size"] == 16
        assert r["rss_load_gib"] > 0 and r["rss_first_gib"] > 0
        assert r["bytes_share"] == r["bytes"] / full["bytes"]


def test_shrunk_rows_hold_the_table_bytes_their_rows_and_dtype_need(measured):
    rows, _, _ = measured
    n, d = 500, 16
    # float32: 4d bytes a row; int8: d codes + a float32 scale and offset (24 of 64 bytes at d 16)
    row_bytes = {"float32": 4 * d, "int8": d + 8}
    others = (STUDENT / "model.safetensors").stat().st_size - n * row_bytes["float32"]
    for r, variant in zip(rows, VARIANTS, strict=True):
        if not variant.shrink:
            continue
        kept = round(variant.shrink.get("keep_share", 1.0) * n)
        table = kept * row_bytes[variant.shrink.get("dtype", "float32")]
        expected = others + table + files_bytes(Path(r["directory"]) / "vocab")
        assert abs(r["bytes"] - expected) <= 64, r["name"]  # the safetensors header's names
        assert r["bytes"] < rows[0]["bytes"]
    by_name = {r["name"]: r for r in rows}
    # The same 50 rows in float32 and in int8: the difference is their tables'.
    assert abs(by_name["10% of rows"]["bytes"] - by_name["10% + int8"]["bytes"]
               - 50 * (row_bytes["float32"] - row_bytes["int8"])) <= 64


def test_exports_give_the_full_students_labels(measured):
    rows, texts, _ = measured
    full = Student.load(STUDENT).predict(texts)
    by_name = {r["name"]: r for r in rows}
    for name, loader in (("numpy export of full", NumpyStudent),
                         ("onnx export of full", OnnxStudent)):
        row = by_name[name]
        assert loader.load(row["directory"]).predict(texts) == full
        assert row["agreement"] == 1.0 and row["accuracy"] == rows[0]["accuracy"]
        assert row["bytes"] == files_bytes(Path(row["directory"]))


def test_render_gives_a_line_a_row(measured):
    rows, _, _ = measured
    lines = render_variants(rows)
    assert lines[:2] == SHRINK_HEADER and len(lines) == 2 + len(rows)
    columns = lines[0].count("|")
    for line, r in zip(lines[2:], rows, strict=True):
        assert line.startswith(f"| {r['name']} |") and line.count("|") == columns
    assert lines[2].endswith("| 1.000 | 1.0000 | " + f"{rows[0]['texts_per_s']:,.0f} (16) |")


def test_a_missing_onnx_is_a_skipped_row_not_a_crash(monkeypatch, tmp_path):
    monkeypatch.setattr(shrink_table.importlib.util, "find_spec",
                        lambda name: None if name == "onnxruntime" else object())
    with pytest.raises(shrink_table.DataError, match="onnxruntime not installed"):
        shrink_table._check_installed("onnx")
    shrink_table._check_installed("numpy")
    line = render_variants([{"name": "onnx export of full", "skipped": "onnxruntime not "
                             "installed"}])[2]
    assert line.startswith("| onnx export of full | not measured: onnxruntime not installed |")
    assert line.count("|") == SHRINK_HEADER[0].count("|")
