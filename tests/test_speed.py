"""`sparse_distill.evaluation.speed` and `sdistill speed ...`: every measurement on tiny inputs
(the figures themselves are the machine's; these check what is measured and reported)."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sparse_distill import __version__
from sparse_distill.cli import app
from sparse_distill.errors import DataError, SDistillError
from sparse_distill.evaluation import speed
from sparse_distill.inference.student import Student
from sparse_distill.training.hf import load_classifier, load_tokenizer

runner = CliRunner()

# Sizes that keep every timing well under a second on 2 CPU cores.
TINY_LOOP = {"vocab_size": 500, "batch_size": 16, "n_texts": 128, "ngrams": 5, "steps": 3,
             "warmup": 1}
TINY_GPU = {"repeats": 1, "short_texts": 16, "long_texts": 8, "doc_words": 30,
            "label_batch_size": 8, "batch_sizes": [8], "vocab_size": 3000, "dim": 8}


@pytest.fixture
def cache(tmp_path: Path, data_dir: Path, tiny_classifier: Path) -> Path:
    """A fetch cache laid out as `sdistill data fetch rt 20ng minilm` leaves it, holding the
    test fixtures as the data sets and the tiny classifier as MiniLM."""
    root = tmp_path / "cache"
    for name, splits in (("rt", ("train", "dev", "test")), ("20ng", ("test",))):
        (root / "data" / name).mkdir(parents=True)
        for split in splits:
            shutil.copy(data_dir / f"{split}.jsonl", root / "data" / name / f"{split}.jsonl")
    shutil.copytree(tiny_classifier, root / "models" / "minilm")
    return root


def test_code_version_names_the_package_version():
    assert speed.code_version().startswith(__version__)


def test_read_texts_skips_bad_lines_and_stops_at_the_limit(data_dir, tmp_path):
    # bad.jsonl: 3 good lines among an empty one, a non-UTF-8 one, bad JSON and a blank text.
    texts = speed.read_texts(data_dir / "bad.jsonl")
    assert texts == ["A warm, funny and moving film that earns every one of its tears.",
                     "A dull, lifeless mess that overstays its welcome.",
                     "The plot makes no sense and the acting is wooden."]
    assert speed.read_texts(data_dir / "bad.jsonl", limit=2) == texts[:2]
    assert speed.read_texts(data_dir / "pool.txt", limit=3) == \
        (data_dir / "pool.txt").read_text().splitlines()[:3]
    with pytest.raises(DataError, match=re.escape("cannot tell its format from its name")):
        speed.read_texts(tmp_path / "texts.docx")
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'none.jsonl'}: no such file")):
        speed.read_texts(tmp_path / "none.jsonl")


def test_compare_students_times_each_student_on_the_same_texts(trained_student, data_dir):
    texts = speed.read_texts(data_dir / "train.jsonl")
    result = speed.compare_students({"a": trained_student, "b": trained_student}, texts,
                                    batch_size=64, repeats=2, min_texts=300)
    assert result.n_texts == 308  # 28 texts repeated 11 times: at least 300
    assert (result.batch_size, result.repeats) == (64, 2)
    assert [r.name for r in result.students] == ["a", "b"]
    first, second = result.students
    assert first.ratio == 1.0 and second.ratio == second.texts_per_s / first.texts_per_s
    rows = speed.table_rows(Student.load(trained_student))
    for row in result.students:
        assert row.table_rows == rows > 0
        assert row.texts_per_s > 0 and row.load_s > 0
        assert row.memory_added_gib is None or row.memory_added_gib >= -1


def test_compare_students_needs_texts_and_students(trained_student):
    with pytest.raises(DataError, match="no texts to time the students on"):
        speed.compare_students({"a": trained_student}, [])
    with pytest.raises(SDistillError, match=re.escape("no student to time: give at least one "
                                                      "NAME=DIR")):
        speed.compare_students({}, ["a text"])


def test_synthetic_corpus_is_a_zipf_bag_within_the_vocabulary():
    bag = speed.synthetic_corpus(50, 7, 100)
    assert len(bag) == 50 and bag.offsets[-1] == 350 == len(bag.ids)
    assert bag.ids.dtype == np.int32 and bag.ids.min() >= 0 and bag.ids.max() < 100
    assert (np.diff(bag.offsets) == 7).all() and (bag.weights == 1).all()
    # Zipf: the first id is the most frequent, far ahead of the median id, and the draws past
    # the vocabulary land on its last id.
    counts = np.bincount(bag.ids, minlength=100)
    assert counts[:-1].argmax() == 0 and counts[0] > 10 * np.median(counts)
    assert counts[-1] > counts[-2]


def test_train_loop_speed_on_cpu_and_both_gathers_train_alike():
    host = speed.train_loop_speed([8, 16], "cpu", gather="host", **TINY_LOOP)
    assert host.device.startswith("cpu") and host.prefetch == 0 and host.gather == "host"
    assert [r.dim for r in host.rows] == [8, 16]
    for row in host.rows:
        assert row.samples_per_s > 0 and row.steps_samples_per_s > 0
        assert 0.0 <= row.host_wait_share < 1.0
        assert row.peak_gib is None and math.isfinite(row.loss) and row.loss > 0
    # Gathered from a device-resident copy of the corpus (here the CPU), the batches, and so
    # the training, are the host path's.
    device = speed.train_loop_speed([8], "cpu", gather="device", **TINY_LOOP)
    assert device.rows[0].loss == pytest.approx(host.rows[0].loss, rel=1e-6)


def test_train_loop_speed_refuses_what_it_cannot_time():
    with pytest.raises(SDistillError, match=re.escape(
            "batch size 256 is more than the corpus's 128 texts")):
        speed.train_loop_speed([8], "cpu", **{**TINY_LOOP, "batch_size": 256})
    with pytest.raises(SDistillError, match=re.escape(
            "gather 'gpu': expected one of auto, host, device")):
        speed.train_loop_speed([8], "cpu", gather="gpu", **TINY_LOOP)


def test_labelling_speed_times_each_setting_and_compares_predictions(tiny_classifier,
                                                                    data_dir):
    model = load_classifier(str(tiny_classifier), None, False)
    tokenizer = load_tokenizer(str(tiny_classifier), False)
    texts = speed.read_texts(data_dir / "train.jsonl")
    rows, agreement = speed.labelling_speed(
        "tiny", model, tokenizer, [speed.TextSet("short", texts[:12], 16),
                                   speed.TextSet("long", texts[:6], 64)],
        torch.device("cpu"), batch_size=4, repeats=1)
    assert [(r.texts, r.precision, r.by_length) for r in rows] == [
        (name, p, order) for name in ("short", "long") for p in ("fp32", "bf16")
        for order in (False, True)]
    assert [r.n for r in rows] == [12] * 4 + [6] * 4
    assert rows[0].ratio == rows[4].ratio == 1.0 and all(r.texts_per_s > 0 for r in rows)
    assert set(agreement) == {"short", "long"}
    assert all(0.0 <= share <= 1.0 for share in agreement.values())


def test_as_teacher_labels_as_the_model_does(tiny_classifier):
    model = load_classifier(str(tiny_classifier), None, False)
    tokenizer = load_tokenizer(str(tiny_classifier), False)
    teacher = speed.as_teacher(model, tokenizer, torch.device("cpu"), 32, 4, "fp32")
    assert teacher.labels == ["neg", "pos"] and teacher.settings.max_length == 32
    texts = ["a warm, funny film", "a dull mess", "fine"]
    with torch.inference_mode():
        enc = tokenizer(texts, padding=True, truncation=True, max_length=32,
                        return_tensors="pt")
        expected = model(**enc).logits.numpy()
    np.testing.assert_allclose(teacher.logits(texts), expected, atol=1e-5)


def test_teacher_speed_on_the_cache_texts(cache):
    result = speed.teacher_speed(cache, repeats=1, short_texts=10, long_texts=4)
    assert result.model == str(cache / "models" / "minilm") and result.batch_size == 128
    # rt: 6 test texts topped up from train to 10, at 64; 20ng: 4 texts at 256.
    assert {(r.texts, r.n, r.max_length) for r in result.rows} == {("rt", 10, 64),
                                                                   ("20ng", 4, 256)}
    assert len(result.rows) == 8 and set(result.agreement) == {"rt", "20ng"}


def test_teacher_speed_says_what_to_fetch(tmp_path, tiny_classifier):
    with pytest.raises(DataError, match=re.escape(
            f"{tmp_path / 'models' / 'minilm'} is missing; fetch it with: sdistill data fetch "
            "rt 20ng minilm")):
        speed.teacher_speed(tmp_path)
    with pytest.raises(DataError, match=re.escape(
            f"{tmp_path / 'data' / 'rt' / 'test.jsonl'} is missing; fetch it with: sdistill "
            "data fetch rt 20ng (or")):
        speed.teacher_speed(tmp_path, model=tiny_classifier)


def test_documents_join_consecutive_snippets_to_the_word_count():
    snippets = ["one two", "three", "four five six", "seven", "eight"]
    assert speed.documents(snippets, 3) == ["one two three", "four five six"]
    assert speed.documents(snippets, 100) == []


def test_paper_student_has_the_full_table_and_predicts():
    texts = ["a warm, funny film", "a dull mess of a film", "not bad"]
    student = speed.paper_student(texts, 500, 8, torch.device("cpu"))
    assert len(student.featurizer.vocab) == 500 == speed.table_rows(student)
    assert "funny film" in student.featurizer.vocab.ngrams
    assert set(student.predict(texts)) <= set(speed.LABELS)


def test_gpu_speed_on_cpu_at_tiny_sizes(cache):
    result = speed.gpu_speed(cache, "cpu", ["minilm"], **TINY_GPU)
    assert result.device.startswith("cpu")
    assert (result.snippets, result.documents, result.vocab_size, result.dim) == (16, 8, 3000, 8)
    assert result.document_words >= 30 and result.document_tokens > 0
    assert [(r.texts, r.max_length, r.precision) for r in result.labelling] == [
        ("snippets", 64, "fp32"), ("snippets", 64, "bf16"), ("documents", 256, "fp32"),
        ("documents", 256, "bf16")]
    assert [(r.teacher, r.precision, r.batch_size) for r in result.inference] == [
        ("minilm", "fp32", 8), ("minilm", "bf16", 8)]
    for row in result.inference:
        assert row.ratio == row.student_per_s / row.teacher_per_s > 0
        assert row.model_only_ratio > 0


def test_gpu_speed_names_the_teachers_it_knows(cache):
    with pytest.raises(SDistillError, match=re.escape(
            "teachers ['bert']: expected one or more of minilm, roberta-large")):
        speed.gpu_speed(cache, "cpu", ["bert"])


@pytest.mark.gpu
def test_on_cuda_the_loop_reports_peak_memory_and_the_gpu_figures_come(cache):
    if not torch.cuda.is_available():
        pytest.fail("no CUDA device: run `pytest -m gpu` on a machine with an NVIDIA GPU")
    loop = speed.train_loop_speed([8], "cuda", **TINY_LOOP)
    assert loop.prefetch == speed.CUDA_PREFETCH and loop.rows[0].peak_gib > 0
    result = speed.gpu_speed(cache, "cuda", ["minilm"], **TINY_GPU)
    assert result.device == torch.cuda.get_device_name() and len(result.inference) == 2


# ---------------------------------------------------------------------------------------------
# The commands


def invoke(*args: str):
    return runner.invoke(app, ["speed", *args])


def test_speed_help_lists_the_four_commands():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("students", "train", "teacher", "gpu"):
        assert command in result.output


def test_speed_students_prints_a_row_per_student(trained_student, data_dir):
    result = invoke("students", "--texts", str(data_dir / "train.jsonl"), "--student",
                    f"base={trained_student}", "--student", f"again={trained_student}",
                    "--min-texts", "100", "--batch-size", "32", "--repeats", "1")
    assert result.exit_code == 0, result.output
    assert "112 texts from" in result.output and "base" in result.output
    assert "again" in result.output and "1.000" in result.output
    assert f"sparse_distill {__version__}" in result.output


def test_speed_students_bad_specs_are_one_line_errors(trained_student, data_dir):
    texts = str(data_dir / "train.jsonl")
    result = invoke("students", "--texts", texts, "--student", str(trained_student))
    assert result.exit_code == 1 and "expected NAME=DIR" in result.output
    result = invoke("students", "--texts", texts, "--student", f"a={trained_student}",
                    "--student", f"a={trained_student}")
    assert result.exit_code == 1 and "the name 'a' is given twice" in result.output
    assert "Traceback" not in result.output


def test_speed_train_prints_a_row_per_size():
    result = invoke("train", "--device", "cpu", "--dims", "8", "--dims", "16", "--vocab-size",
                    "500", "--batch-size", "16", "--texts", "128", "--ngrams", "5", "--steps",
                    "3", "--warmup", "1", "--gather", "host")
    assert result.exit_code == 0, result.output
    assert "|V| 500, batch 16, 5 ids a text (Zipf), 3 steps after 1" in result.output
    assert "gathered on: host" in result.output and "host wait at most" in result.output
    assert re.search(r"│ 8\s+│", result.output) and re.search(r"│ 16\s+│", result.output)


def test_speed_teacher_prints_every_setting(cache):
    result = invoke("teacher", "--cache-dir", str(cache), "--repeats", "1", "--short-texts",
                    "8", "--long-texts", "4", "--batch-size", "4")
    assert result.exit_code == 0, result.output
    assert "by length" in result.output and "input" in result.output
    assert "bf16 and fp32 predict the same class on: rt " in result.output


def test_speed_teacher_without_the_cache_says_what_to_fetch(tmp_path):
    result = invoke("teacher", "--cache-dir", str(tmp_path))
    assert result.exit_code == 1 and "sdistill data fetch rt 20ng minilm" in result.output
    assert "Traceback" not in result.output


def test_speed_gpu_on_cpu_prints_both_tables(cache):
    options = [a for k, v in TINY_GPU.items()
               for a in (f"--{k.replace('_', '-')}", str(v[0] if isinstance(v, list) else v))]
    result = invoke("gpu", "--cache-dir", str(cache), "--device", "cpu", "--teachers", "minilm",
                    *options)
    assert result.exit_code == 0, result.output
    assert "student |V| 3,000, d 8" in result.output
    assert "labelling, sorted by length" in result.output
    assert "student / teacher at batch 8, end to end: minilm fp32 " in result.output
