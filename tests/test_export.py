"""`sdistill export`: numpy and ONNX students give the torch student's logits; the numpy one
runs with torch blocked; the compiled pooling against numpy."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from sparse_distill.cli import app
from sparse_distill.errors import DataError
from sparse_distill.inference import _ngrams
from sparse_distill.inference.export import export
from sparse_distill.inference.portable import NumpyStudent, OnnxStudent
from sparse_distill.inference.shrink import shrink
from sparse_distill.inference.student import Student

TEXTS = ["A warm, funny film.", "A dull mess of a film.", "", "not bad at all, really",
         "the plot is dull and the acting is dull", "zzz qqq"] * 60


@pytest.mark.parametrize(("student", "dtype"), [
    ("trained_student", "float32"), ("trained_student", "float16"),
    ("trained_student", "bfloat16"), ("trained_student", "int8"),
    ("wide_student", "float32"), ("wide_student", "int8")])
@pytest.mark.parametrize("fmt", ["numpy", "onnx"])
def test_exports_give_the_torch_students_logits(request, tmp_path, student, dtype, fmt):
    source = request.getfixturevalue(student)
    if dtype != "float32":
        source = tmp_path / "shrunk"
        shrink(request.getfixturevalue(student), source, dtype=dtype)
    torch_logits = Student.load(source).logits(TEXTS)
    result = export(source, tmp_path / fmt, fmt)
    assert result.bytes > 0 and (tmp_path / fmt / "vocab" / "vocab.json").is_file()
    loader = NumpyStudent if fmt == "numpy" else OnnxStudent
    for threads in (1, 2):
        student = loader.load(tmp_path / fmt, threads=threads)
        # float16 / bfloat16: torch pools in that dtype, the exports in float32
        atol = 1e-5 if dtype in ("float32", "int8") else 2e-2
        assert np.allclose(student.logits(TEXTS), torch_logits, atol=atol)
        assert student.predict(TEXTS) == Student.load(source).predict(TEXTS)
    proba = loader.load(tmp_path / fmt).predict_proba(TEXTS[:3])
    assert proba.shape == (3, 2) and np.allclose(proba.sum(1), 1.0, atol=1e-6)
    # the calibration temperature travels through shrink and export
    assert loader.load(tmp_path / fmt).temperature == Student.load(source).temperature != 1.0
    assert np.allclose(proba, Student.load(source).predict_proba(TEXTS[:3]), atol=atol)
    assert loader.load(tmp_path / fmt).logits([]).shape == (0, 2)


BLOCKED = ("torch", "transformers", "sklearn", "scipy", "onnxruntime", "yaml",
           "sparse_distill.inference.student", "sparse_distill.inference.network",
           "sparse_distill.training", "sparse_distill.stages", "sparse_distill.evaluation")

CHILD = """
import sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in {blocked!r}):
            raise ImportError("blocked in this test: " + name)
sys.meta_path.insert(0, Refuse())
from sparse_distill.inference.portable import NumpyStudent
print(" ".join(NumpyStudent.load({directory!r}).predict(["a warm, funny film", "a dull mess"])))
"""


def test_the_numpy_student_predicts_with_torch_blocked(trained_student, tmp_path):
    export(trained_student, tmp_path / "np", "numpy")
    result = subprocess.run([sys.executable, "-c", CHILD.format(
        blocked=BLOCKED, directory=str(tmp_path / "np"))], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == Student.load(trained_student).predict(
        ["a warm, funny film", "a dull mess"])
    parent = CHILD.split("from sparse_distill.inference.portable")[0]
    blocked = subprocess.run([sys.executable, "-c", parent.format(blocked=BLOCKED, directory="")
                              + "import torch\n"],
                             capture_output=True, text=True)
    assert blocked.returncode != 0 and "blocked in this test: torch" in blocked.stderr


def test_export_errors_are_one_line_and_write_nothing(trained_student, tmp_path):
    with pytest.raises(DataError, match="--format tflite: expected one of numpy, onnx"):
        export(trained_student, tmp_path / "x", "tflite")
    with pytest.raises(DataError, match="not a student directory"):
        export(tmp_path, tmp_path / "x", "numpy")
    assert not (tmp_path / "x").exists()
    export(trained_student, tmp_path / "x", "numpy")
    with pytest.raises(DataError, match="exists; pass --force"):
        export(trained_student, tmp_path / "x", "numpy")
    with pytest.raises(DataError, match="not a onnx export"):
        OnnxStudent.load(tmp_path / "x")
    with pytest.raises(DataError, match=r"\(no student\.json\); write it with `sdistill export"):
        NumpyStudent.load(tmp_path)


def test_cli_export(trained_student, tmp_path):
    result = CliRunner().invoke(app, ["export", str(trained_student), str(tmp_path / "o"),
                                      "--format", "onnx"])
    assert result.exit_code == 0, result.output
    assert "export: onnx" in result.output and "OnnxStudent.load(" in result.output
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "model.onnx", "model.onnx.data", "student.json", "vocab"]


def test_compiled_pooling_against_numpy():
    rng = np.random.default_rng(0)
    table = rng.standard_normal((50, 7)).astype(np.float32)
    offsets = np.array([0, 3, 3, 8], np.int64)  # the second text is empty
    ids = rng.integers(0, 50, 8).astype(np.int32)
    weights = rng.random(8).astype(np.float32)
    out = np.empty((3, 7), np.float32)
    _ngrams.pool(table, 0, 7, ids, offsets, weights, out, False)
    expected = np.stack([(table[ids[a:b]] * weights[a:b, None]).sum(0)
                         for a, b in itertools.pairwise(offsets)])
    assert np.allclose(out, expected, atol=1e-6)
    _ngrams.pool(table, 0, 7, ids, offsets, weights, out, True)
    assert np.array_equal(out[0], table[ids[:3]].max(0)) and not out[1].any()
    with pytest.raises(IndexError, match=r"ids\[1\] = 50 is outside the table's 50 rows"):
        _ngrams.pool(table, 0, 7, np.array([0, 50], np.int32), np.array([0, 2]), weights[:2],
                     out[:1], False)
    with pytest.raises(ValueError, match="disagree"):
        _ngrams.pool(table, 0, 7, ids, offsets, weights, out[:2], False)


def test_every_float16_value_widens_exactly():
    bits = np.arange(1 << 16, dtype=np.uint16)
    halves = bits.view(np.float16)
    finite = np.isfinite(halves)
    table = bits[finite].reshape(-1, 1)  # one value a row
    n = len(table)
    out = np.empty((n, 1), np.float32)
    _ngrams.pool(table, 1, 1, np.arange(n, dtype=np.int32), np.arange(n + 1, dtype=np.int64),
                 np.ones(n, np.float32), out, False)
    assert np.array_equal(out[:, 0], halves[finite].astype(np.float32))
