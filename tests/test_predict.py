"""`sdistill predict` on files and stdin, with bad lines."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from sparse_distill.cli import app
from sparse_distill.inference.student import Student

runner = CliRunner()


def rows_of(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_predict_a_text_file_with_bad_lines(trained_student, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_bytes(b"A warm and funny film.\n\nbad \xff byte\nA dull, lifeless mess.\n")
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["predict", str(trained_student), "-i", str(texts), "-o",
                                 str(out)])
    assert result.exit_code == 0, result.output
    assert f"{texts}:2: empty text; skipped" in result.output
    assert f"{texts}:3: not valid UTF-8 (byte 4); skipped" in result.output
    assert "predicted 2 texts; skipped 2 bad lines" in result.output
    rows = rows_of(out.read_text())
    expected = Student.load(trained_student).predict(["A warm and funny film.",
                                                      "A dull, lifeless mess."])
    assert [r["line"] for r in rows] == [1, 4]
    assert [r["label"] for r in rows] == expected
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-5 for r in rows)
    again = runner.invoke(app, ["predict", str(trained_student), "-i", str(texts), "-o",
                                str(out)])
    assert again.exit_code == 1 and "already exists; pass --force" in again.output
    forced = runner.invoke(app, ["predict", str(trained_student), "-i", str(texts), "-o",
                                 str(out), "--force", "--top-k", "1"])
    assert forced.exit_code == 0
    assert [len(r["top_k"]) for r in rows_of(out.read_text())] == [1, 1]


def test_predict_csv_with_a_text_column_in_small_batches(trained_student, tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("id,review\n1,A lovely film.\n2,\"Awful, just awful.\"\n3,Fine.\n")
    result = runner.invoke(app, ["predict", str(trained_student), "-i", str(path),
                                 "--text-column", "review", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    rows = rows_of(result.output)
    assert [r["line"] for r in rows] == [2, 3, 4]
    assert {r["label"] for r in rows} <= {"neg", "pos"}


def test_predict_reads_stdin(trained_student):
    result = runner.invoke(app, ["predict", str(trained_student)],
                           input="first text\nsecond text\n")
    assert result.exit_code == 0, result.output
    assert [r["line"] for r in rows_of(result.output)] == [1, 2]


def test_predict_device_option(trained_student, monkeypatch):
    import torch

    result = runner.invoke(app, ["predict", str(trained_student), "--device", "auto"],
                           input="first text\n")
    assert result.exit_code == 0, result.output
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = runner.invoke(app, ["predict", str(trained_student), "--device", "cuda:1"],
                           input="first text\n")
    assert result.exit_code == 1
    assert "device cuda:1: this machine has 0 CUDA device(s); use cpu or auto" in result.output
    result = runner.invoke(app, ["predict", str(trained_student), "--device", "gpu"],
                           input="first text\n")
    assert result.exit_code == 1 and "expected cpu, cuda, cuda:N or auto" in result.output


def test_predict_names_a_wrong_directory(tmp_path):
    result = runner.invoke(app, ["predict", str(tmp_path)])
    assert result.exit_code == 1 and "not a student directory (no student.json)" in result.output


def test_a_failure_while_classifying_leaves_no_output(trained_student, tmp_path, monkeypatch):
    import pytest

    from sparse_distill.inference.predict import predict_file

    student = Student.load(trained_student)
    calls = []

    def failing(texts):
        calls.append(len(texts))
        if len(calls) == 2:
            raise RuntimeError("out of memory")
        return Student.predict_proba(student, texts)

    monkeypatch.setattr(student, "predict_proba", failing)
    texts = tmp_path / "texts.txt"
    texts.write_text("".join(f"text number {i}\n" for i in range(10)))
    out = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError, match="out of memory"):
        predict_file(student, str(texts), str(out), batch_size=3)
    assert not out.exists() and list(tmp_path.iterdir()) == [texts]  # no temporary left


def test_rows_are_in_input_order_across_many_batches(trained_student, tmp_path):
    from sparse_distill.inference.predict import predict_file

    texts = tmp_path / "texts.txt"
    lines = [f"a {'warm' if i % 2 else 'dull'} film number {i}" for i in range(2500)]
    texts.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    stats = predict_file(Student.load(trained_student), str(texts), str(out), batch_size=700)
    rows = rows_of(out.read_text())
    assert stats.predicted == 2500 and [r["line"] for r in rows] == list(range(1, 2501))
    assert [r["label"] for r in rows] == Student.load(trained_student).predict(lines)
