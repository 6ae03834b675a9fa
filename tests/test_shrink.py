"""`sdistill shrink`: fewer rows and smaller tables give a student like any other."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sparse_distill.cli import app
from sparse_distill.errors import DataError
from sparse_distill.inference.featurize import Vocabulary
from sparse_distill.inference.shrink import shrink
from sparse_distill.inference.student import Student

TEXTS = ["A warm, funny film.", "A dull mess of a film.", "", "not bad at all, really",
         "the plot is dull and the acting is dull"] * 3


def expected_logits(full: Student, kept: np.ndarray, texts: list[str]) -> np.ndarray:
    """The full student on only the kept n-grams: its bag without the others, re-averaged."""
    bag = full.featurizer.bag(texts)  # counts
    keep = np.isin(bag.ids, kept)
    lengths = np.add.reduceat(keep, bag.offsets[:-1]) if len(keep) else np.zeros(len(texts))
    lengths = np.where(np.diff(bag.offsets) > 0, lengths, 0)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids, counts = bag.ids[keep], bag.weights[keep]
    rows = np.repeat(np.arange(len(texts)), lengths)
    totals = np.bincount(rows, weights=counts, minlength=len(texts))
    weights = (counts / totals[rows]).astype(np.float32)
    with torch.no_grad():
        return full.model(torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(offsets),
                          torch.from_numpy(weights)).numpy()


def test_keeping_the_most_frequent_rows_is_the_full_student_on_those_ngrams(trained_student,
                                                                            tmp_path):
    full = Student.load(trained_student)
    n = len(full.featurizer.vocab)
    result = shrink(trained_student, tmp_path / "half", keep=n // 2)
    assert result.rows == n // 2 and result.of == n and result.bytes_after < result.bytes_before
    half = Student.load(tmp_path / "half")
    assert half.featurizer.vocab.ngrams == full.featurizer.vocab.ngrams[:n // 2]
    assert np.allclose(half.logits(TEXTS), expected_logits(full, np.arange(n // 2), TEXTS),
                       atol=1e-5)
    meta = json.loads((tmp_path / "half" / "student.json").read_text())
    assert meta["shrunk"]["ngrams_kept"] == n // 2 and meta["architecture"]["vocab_size"] == n // 2
    assert "kept" in (tmp_path / "half" / "README.md").read_text()
    # Everything kept, float32: the same student.
    shrink(trained_student, tmp_path / "all", keep=n)
    assert np.array_equal(Student.load(tmp_path / "all").logits(TEXTS), full.logits(TEXTS))


@pytest.mark.parametrize(("dtype", "atol"), [("int8", 0.05), ("float16", 5e-3),
                                             ("bfloat16", 3e-2)])
def test_smaller_tables_give_nearly_the_same_logits(trained_student, tmp_path, dtype, atol):
    full = Student.load(trained_student)
    result = shrink(trained_student, tmp_path / dtype, dtype=dtype)
    small = Student.load(tmp_path / dtype)
    assert small.model.table_dtype == dtype
    assert np.allclose(small.logits(TEXTS), full.logits(TEXTS), atol=atol)
    weights = (tmp_path / dtype / "model.safetensors").stat().st_size
    assert weights < 0.6 * (trained_student / "model.safetensors").stat().st_size
    assert result.bytes_after < result.bytes_before


def test_orders_and_document_frequency_filter_rows(trained_student, tmp_path):
    vocab = Vocabulary.load(trained_student / "vocab")
    shrink(trained_student, tmp_path / "uni", max_order=1)
    uni = Vocabulary.load(tmp_path / "uni" / "vocab")
    assert uni.ngram_range == (1, 1) and all(" " not in g for g in uni.ngrams)
    assert uni.ngrams == [g for g in vocab.ngrams if " " not in g]
    shrink(trained_student, tmp_path / "df", min_df=2)
    assert Vocabulary.load(tmp_path / "df" / "vocab").ngrams == [
        g for g, df in zip(vocab.ngrams, vocab.df, strict=True) if df >= 2]
    assert set(Student.load(tmp_path / "uni").predict(TEXTS)) <= {"neg", "pos"}


def test_bad_requests_are_one_line_errors_and_write_nothing(trained_student, tmp_path):
    with pytest.raises(DataError, match="give one of them"):
        shrink(trained_student, tmp_path / "a", keep=5, keep_share=0.5)
    with pytest.raises(DataError, match=r"--keep-share 1\.5"):
        shrink(trained_student, tmp_path / "a", keep_share=1.5)
    with pytest.raises(DataError, match="--dtype int4: expected one of float32"):
        shrink(trained_student, tmp_path / "a", dtype="int4")
    with pytest.raises(DataError, match="--max-order 7: the vocabulary has orders 1-2"):
        shrink(trained_student, tmp_path / "a", max_order=7)
    assert not (tmp_path / "a").exists()
    shrink(trained_student, tmp_path / "a", dtype="int8")
    with pytest.raises(DataError, match="exists; pass --force"):
        shrink(trained_student, tmp_path / "a")
    with pytest.raises(DataError, match="already shrunk"):
        shrink(tmp_path / "a", tmp_path / "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]  # no temporary litter


def test_cli_shrink_summary(trained_student, tmp_path):
    result = CliRunner().invoke(app, ["shrink", str(trained_student), str(tmp_path / "s"),
                                      "--keep-share", "0.5", "--dtype", "int8"])
    assert result.exit_code == 0, result.output
    assert "shrink: kept" in result.output and "table in int8" in result.output
    assert f"next:   sdistill predict {tmp_path / 's'}" in result.output
    again = CliRunner().invoke(app, ["shrink", str(trained_student), str(tmp_path / "s")])
    assert again.exit_code == 1 and "exists; pass --force" in again.output
    predicted = CliRunner().invoke(app, ["predict", str(tmp_path / "s")], input="a dull film\n")
    assert predicted.exit_code == 0 and '"label"' in predicted.output
