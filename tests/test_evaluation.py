from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from conftest import student_section, teacher_config
from typer.testing import CliRunner

from sparse_distill.cli import app
from sparse_distill.evaluation.metrics import classification_metrics, oov_quartile, oov_rates
from sparse_distill.evaluation.timing import measure_speed, median_rate
from sparse_distill.inference.student import Student
from sparse_distill.progress import Reporter
from sparse_distill.stages.config import config_from_dict


def test_metrics_against_hand_computed_values():
    gold = ["a", "a", "a", "b", "b", "c"]
    pred = ["a", "a", "b", "b", "c", "c"]
    m = classification_metrics(gold, pred, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    # a: p 2/2, r 2/3, f 0.8; b: p 1/2, r 1/2, f 0.5; c: p 1/2, r 1/1, f 2/3
    assert m["per_class"]["a"] == {"precision": 1.0, "recall": pytest.approx(2 / 3),
                                   "f1": pytest.approx(0.8), "support": 3}
    assert m["per_class"]["c"]["f1"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_median_rate_counts_items_per_second():
    import time

    assert median_rate(lambda: time.sleep(0.02), 10, 3) == pytest.approx(500, rel=0.3)


class ConstantTeacher:
    """A stand-in teacher (`training.teacher.Teacher`'s timing interface): the teacher's side
    is not what this test measures."""

    def encode(self, texts):
        return [[0]] * len(texts), list(range(len(texts)))

    def predict(self, texts, batch_size=None, encoded=None):
        return ["pos"] * len(texts)


def test_oov_rate_is_the_share_of_ngrams_the_vocabulary_lacks():
    import numpy as np

    from sparse_distill.inference.featurize import Vocabulary

    vocab = Vocabulary(["good", "film", "good film"], np.ones(3, np.int64), np.ones(3, np.int64),
                       (1, 2), True, r"(?u)\b\w\w+\b")
    texts = ["Good film", "good film, dull plot", "", "dull", "x"]
    # n-grams: 3 (all seen) | 7 (good, film, good film seen) | none | 1 unseen | none
    np.testing.assert_allclose(oov_rates(vocab, texts), [0.0, 4 / 7, 1.0, 1.0, 1.0])
    rates = np.asarray([0.0, 0.5, 0.9, 0.8])
    q = oov_quartile(rates, ["a", "b", "a", "b"], {"m": ["a", "b", "b", "b"]})
    assert q == {"n": 1, "min_oov_rate": 0.9, "mean_oov_rate": 0.9, "m": 0.0}


def test_model_only_is_at_least_as_fast_as_end_to_end(trained_student):
    student = Student.load(trained_student)
    # Long texts of words the vocabulary lacks: featurising looks up each of their ~650
    # n-grams, while the model sees only the two it has, so a busy machine cannot turn the
    # order around (medians of 7 besides). Texts of known words cost the model about as much
    # as the featuriser, and the two figures came out within 1% either way.
    texts = ["a warm film " + " ".join(f"zq{i}" for i in range(320))] * 300
    speed = measure_speed(texts, ConstantTeacher(), student, [32, 256], 7, Reporter())
    for bs in ("32", "256"):
        row = speed["by_batch_size"]["student"][bs]
        assert row["model_only_samples_per_s"] >= row["samples_per_s"] > 0
    assert speed["student"]["batch_size"] in (32, 256)
    best = max(speed["by_batch_size"]["student"].values(), key=lambda r: r["samples_per_s"])
    assert speed["student"]["samples_per_s"] == best["samples_per_s"]


def test_eval_stage_end_to_end(config_dict, tiny_classifier, write_config, tmp_path,
                               data_dir):
    from sparse_distill.stages.teach import teach
    from sparse_distill.stages.train_student import train_student
    from sparse_distill.stages.vocab import build_vocab

    data = teacher_config(config_dict, tiny_classifier, finetune=False)
    data["student"] = student_section()
    data["eval"] = {"speed_texts": 6, "batch_sizes": [1, 4], "repeats": 1}
    cfg = config_from_dict(data)
    build_vocab(cfg)
    teach(cfg)
    train_student(cfg)
    resolved = tmp_path / "run" / "config.yaml"
    resolved.unlink()  # written by every stage: eval must write it again
    result = CliRunner().invoke(app, ["eval", str(write_config(data))])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(resolved.read_text())["eval"]["speed_texts"] == 6
    metrics = json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())
    assert metrics["labels"] == ["neg", "pos"]
    test = metrics["splits"]["test"]
    assert test["n"] == 6 and {"teacher", "student_kd", "student"} <= set(test)
    # Accuracies against the test labels from each model's own predictions, made here.
    import torch

    from sparse_distill.training.teacher import Teacher

    rows = [json.loads(line) for line in (data_dir / "test.jsonl").read_text().splitlines()]
    texts, gold = [r["text"] for r in rows], [r["label"] for r in rows]
    teacher = Teacher.load(str(tiny_classifier), ["neg", "pos"], cfg.teacher,
                           torch.device("cpu"))

    def accuracy(pred: list[str]) -> float:
        return sum(p == g for p, g in zip(pred, gold, strict=True)) / len(gold)

    teacher_acc = accuracy(teacher.predict(texts))
    student_acc = accuracy(Student.load(tmp_path / "run" / "student").predict(texts))
    assert test["teacher"]["accuracy"] == pytest.approx(teacher_acc)
    assert test["student"]["accuracy"] == pytest.approx(student_acc)
    assert test["retention"] == pytest.approx(student_acc / teacher_acc)
    assert test["oov_quartile"]["n"] == 1
    # Calibration: the teacher's and the student's probabilities against the gold labels.
    from sparse_distill.evaluation.metrics import calibration_metrics
    from sparse_distill.inference.portable import softmax

    student_model = Student.load(tmp_path / "run" / "student")
    gold_ids = np.array([["neg", "pos"].index(g) for g in gold])
    c = test["calibration"]
    assert c["temperature"] == student_model.temperature != 1.0
    assert c["student"] == calibration_metrics(student_model.predict_proba(texts), gold_ids)
    assert c["student_uncalibrated"] == calibration_metrics(
        softmax(student_model.logits(texts)), gold_ids)
    assert c["teacher"]["ece"] == pytest.approx(
        calibration_metrics(softmax(teacher.logits(texts)), gold_ids)["ece"])
    assert {"teacher", "student_kd", "student"} <= set(test["oov_quartile"])
    speed = metrics["speed"]
    # The speedup sets each model at its fastest batch size, end to end.
    fastest = {who: max(r["samples_per_s"] for r in speed["by_batch_size"][who].values())
               for who in ("teacher", "student")}
    assert speed["speedup"] == pytest.approx(fastest["student"] / fastest["teacher"])
    report = (tmp_path / "run" / "eval" / "report.md").read_text()
    assert "## Quality" in report and "## Speed on cpu" in report and "| test | 1 |" in report
    assert "## Calibration" in report and \
        f"| test | teacher | {c['teacher']['ece']:.4f} |" in report
    assert "speed_cpu" not in metrics  # run.device cpu: one device, one table
    # The student's model card now carries the test figures.
    card = (tmp_path / "run" / "student" / "README.md").read_text()
    student = test["student"]
    assert (f"| test | 6 | {student['accuracy']:.4f} | {student['macro_f1']:.4f} | "
            f"{test['teacher']['accuracy']:.4f} | {student['retention']:.3f} |") in card
    assert f"{speed['student']['samples_per_s']:,.0f} texts/s" in card
    # A shrunk student, evaluated against the same teacher: its figures go beside it.
    from sparse_distill.inference.shrink import shrink

    small = tmp_path / "small"
    shrink(tmp_path / "run" / "student", small, keep_share=0.5, dtype="int8")
    result = CliRunner().invoke(app, ["eval", str(write_config(data)), "--student", str(small)])
    assert result.exit_code == 0, result.output
    shrunk = json.loads((small / "eval" / "metrics.json").read_text())
    assert shrunk["splits"]["test"]["teacher"] == test["teacher"]
    assert "student_kd" not in shrunk["splits"]["test"]
    assert "| test | 6 |" in (small / "README.md").read_text()
    assert f"next:   sdistill predict {small}" in result.output
    missing = CliRunner().invoke(app, ["eval", str(write_config(data)), "--student",
                                       str(tmp_path)])
    assert missing.exit_code == 1 and "not a student directory" in missing.output
    pngs = sorted(p.name for p in (tmp_path / "run" / "eval").glob("*.png"))
    assert pngs == ["accuracy-vs-speed.png", "confusion-dev.png", "confusion-test.png",
                    "reliability.png"]
    assert all(f"![{name}]({name})" in report for name in pngs)
    assert all((tmp_path / "run" / "eval" / p).read_bytes()[:4] == b"\x89PNG" for p in pngs)


def test_run_skips_what_is_up_to_date_and_rebuilds_what_changed(config_dict, tiny_classifier,
                                                                 write_config):
    data = teacher_config(config_dict, tiny_classifier, finetune=False)
    data["student"] = student_section()
    data["eval"] = {"speed_texts": 6, "batch_sizes": [1, 4], "repeats": 1}
    path = write_config(data)
    first = CliRunner().invoke(app, ["run", str(path)])
    assert first.exit_code == 0, first.output
    for stage in ("vocab", "teacher", "student", "eval"):
        assert f"{stage}: running (no output yet)" in first.output
    assert "teacher accuracy" in first.output and "speedup" in first.output
    assert "calibration error (ECE): teacher / student at T =" in first.output
    again = CliRunner().invoke(app, ["run", str(path)])
    assert again.exit_code == 0
    assert again.output.count("up to date, skipped") == 4
    changed = CliRunner().invoke(app, ["run", str(path), "--set", "student.distill.steps=16"])
    assert changed.exit_code == 0, changed.output
    assert "vocab: up to date, skipped" in changed.output
    assert "teacher: up to date, skipped" in changed.output
    assert "student: running (config section 'student' changed)" in changed.output
    assert "eval: running (the student stage's output changed)" in changed.output
