"""Calibrated confidence (issue 31, item 4): the student's temperature fitted on dev, kept in
student.json, used by predict_proba, `predict --min-confidence` and every export; eval's ECE,
reliability bins and coverage."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from sparse_distill.cli import app
from sparse_distill.evaluation.metrics import calibration_metrics
from sparse_distill.inference.artifact import fitted_temperature, read_student
from sparse_distill.inference.card import CARD_FILE
from sparse_distill.inference.export import export
from sparse_distill.inference.portable import NumpyStudent, softmax
from sparse_distill.inference.predict import format_rows
from sparse_distill.inference.student import Student
from sparse_distill.training.calibration import T_MAX, fit_temperature, nll

TEXTS = ["a warm, funny film", "a dull mess", "the plot is thin but the cast is great",
         "not good", "great"]


def sampled(n: int, temperature: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from softmax(logits / temperature): the logits are
    miscalibrated by exactly `temperature`."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 3.0, size=(n, 4))
    p = softmax(logits, temperature)
    gold = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    return logits.astype(np.float32), np.minimum(gold, 3)


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_the_fitted_temperature_is_the_one_the_labels_were_drawn_with(true_t):
    logits, gold = sampled(40_000, true_t)
    t = fit_temperature(logits, gold)
    assert abs(t - true_t) / true_t < 0.05
    # it is the minimum of the NLL, not merely near the truth
    assert nll(logits, gold, t) <= min(nll(logits, gold, t * 0.97), nll(logits, gold, t * 1.03))


def test_an_overconfident_model_gets_a_lower_ece_after_scaling():
    logits, gold = sampled(20_000, 3.0, seed=1)  # probabilities of softmax(logits) too sharp
    t = fit_temperature(logits[:10_000], gold[:10_000])  # fitted on one half, judged on the other
    before = calibration_metrics(softmax(logits[10_000:]), gold[10_000:])
    after = calibration_metrics(softmax(logits[10_000:], t), gold[10_000:])
    assert before["ece"] > 0.1 and after["ece"] < 0.02
    assert after["nll"] < before["nll"]


def test_a_separable_dev_set_stops_at_the_bound_and_no_texts_fit_nothing():
    logits = np.array([[5.0, -5.0], [-5.0, 5.0]], np.float32)
    assert math.isclose(fit_temperature(logits, np.array([0, 1])), 0.05, rel_tol=1e-6)
    assert fit_temperature(logits, np.array([1, 0])) == pytest.approx(T_MAX, rel=1e-6)
    assert fit_temperature(np.zeros((0, 2), np.float32), np.zeros(0, np.int64)) == 1.0


def test_ece_reliability_and_coverage_by_hand():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2], [0.3, 0.7]])
    gold = np.array([0, 1, 0, 1])
    m = calibration_metrics(probs, gold, bins=10)
    # bins (0.5, 0.6], (0.6, 0.7], (0.7, 0.8], (0.8, 0.9]: one text each; only the 0.6 is wrong
    assert m["reliability"] == [{"confidence": 0.6, "accuracy": 0.0, "n": 1},
                                {"confidence": 0.7, "accuracy": 1.0, "n": 1},
                                {"confidence": 0.8, "accuracy": 1.0, "n": 1},
                                {"confidence": 0.9, "accuracy": 1.0, "n": 1}]
    assert m["ece"] == pytest.approx((0.6 + 0.3 + 0.2 + 0.1) / 4)
    assert m["nll"] == pytest.approx(-np.mean(np.log([0.9, 0.4, 0.8, 0.7])))
    at = {r["threshold"]: r for r in m["risk_coverage"]}
    assert at[0.7] == {"threshold": 0.7, "coverage": 0.75, "accuracy": 1.0}
    assert at[0.5] == {"threshold": 0.5, "coverage": 1.0, "accuracy": 0.75}
    assert at[0.95] == {"threshold": 0.95, "coverage": 0.0, "accuracy": None}


def test_the_student_keeps_its_temperature_and_its_labels(trained_student, tmp_path):
    meta = read_student(trained_student)
    c = meta["calibration"]
    assert c["fitted_on"] == "dev" and c["n"] > 0 and c["temperature"] != 1.0
    assert c["dev_nll_after"] <= c["dev_nll_before"]
    student = Student.load(trained_student)
    assert student.temperature == c["temperature"]
    logits = student.logits(TEXTS)
    assert np.allclose(student.predict_proba(TEXTS), softmax(logits, c["temperature"]),
                       atol=1e-6)
    # a temperature never changes a label
    assert student.predict(TEXTS) == [student.labels[i] for i in logits.argmax(axis=1)]
    assert "calibrated: logits / T" in (trained_student / CARD_FILE).read_text()
    # the export keeps it: the same probabilities without torch
    export(trained_student, tmp_path / "numpy", "numpy")
    assert np.allclose(NumpyStudent.load(tmp_path / "numpy").predict_proba(TEXTS),
                       student.predict_proba(TEXTS), atol=1e-5)


def test_a_student_without_calibration_divides_by_one():
    assert fitted_temperature({"labels": ["a"], "architecture": {}}) == 1.0


def test_min_confidence_marks_rows_abstained():
    probs = np.array([[0.55, 0.45], [0.1, 0.9]])
    rows = [json.loads(r) for r in format_rows([1, 2], probs, ["neg", "pos"], None, 0.6)
            .splitlines()]
    assert rows[0]["abstained"] is True and rows[0]["label"] == "neg"
    assert "abstained" not in rows[1]
    top = [json.loads(r) for r in format_rows([1, 2], probs, ["neg", "pos"], 1, 0.6)
           .splitlines()]
    assert [r.get("abstained", False) for r in top] == [True, False]


def test_cli_predict_min_confidence(trained_student, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n")
    probs = Student.load(trained_student).predict_proba(TEXTS)
    threshold = float(np.median(probs.max(axis=1)))
    expected = int((probs.max(axis=1) < threshold).sum())
    result = CliRunner().invoke(app, ["predict", str(trained_student), "-i", str(texts),
                                      "--min-confidence", str(threshold)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert sum(r.get("abstained", False) for r in rows) == expected
    assert f"abstained on {expected:,} (top probability < {threshold:g})" in result.output
    bad = CliRunner().invoke(app, ["predict", str(trained_student), "-i", str(texts),
                                   "--min-confidence", "1.5"])
    assert bad.exit_code != 0 and "--min-confidence" in bad.output
