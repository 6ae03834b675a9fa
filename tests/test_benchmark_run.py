"""`sdistill benchmark` end to end on the fixture: every section of RESULTS.md comes from this
run's own figures (RESULTS.json), ratios from one sitting, intervals around their accuracies,
seeds and ablation rows trained in variant runs that share the run's teacher."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import student_section, teacher_config
from typer.testing import CliRunner

from sparse_distill.cli import app
from sparse_distill.evaluation.results import untimed
from sparse_distill.inference.student import Student

MODELS = ["teacher", "student (KD)", "student (KD+FT)",
          "student + teacher vectors for unseen words", "DAN from scratch (gold only)",
          "TF-IDF + logistic regression", "fastText supervised", "model2vec"]


@pytest.fixture(scope="module")
def bench(tiny_classifier: Path, tmp_path_factory: pytest.TempPathFactory
          ) -> tuple[Path, dict, str, Path]:
    """One benchmark of the fixture run: 2 seeds, one ablation row, the shrunk students."""
    import yaml
    from conftest import base_config

    tmp = tmp_path_factory.mktemp("bench")
    data = teacher_config(base_config(tmp / "run"), tiny_classifier, finetune=False)
    data["student"] = student_section()
    data["eval"] = {"speed_texts": 6, "batch_sizes": [2, 4], "repeats": 1}
    config = tmp / "toy.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    ablation = tmp / "ablation.yaml"
    ablation.write_text(yaml.safe_dump({"toy": [{"name": "random init", "set": [
        "student.init=random"]}]}), encoding="utf-8")
    out = tmp / "bench" / "RESULTS.md"
    out.parent.mkdir()
    out.write_text("an earlier report, hand-typed\n")
    args = ["benchmark", str(config), "-o", str(out), "--seeds", "2", "--ablation",
            str(ablation)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"replaced {out}" in result.output  # said, not silent
    first = json.loads(out.with_suffix(".json").read_text()), out.read_text()
    # Again at the same commit: every stage and variant up to date, the baselines trained and
    # every model measured anew.
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    BENCH_AGAIN.update(json=json.loads(out.with_suffix(".json").read_text()),
                       text=out.read_text())
    return out, first[0], first[1], tmp / "run"


BENCH_AGAIN: dict[str, Any] = {}


def test_every_figure_comes_from_this_run(bench):
    _, figures, text, _ = bench
    assert "hand-typed" not in text  # nothing carried over from the old file
    assert re.fullmatch(r"[0-9a-f]{7,}(\+changes)?", figures["commit"] or "0000000")
    assert figures["command"].startswith("sdistill benchmark")
    (d,) = figures["datasets"]
    assert re.fullmatch(r"[0-9a-f]{12}", d["config_hash"]) and d["config_hash"] in text
    assert [m["name"] for m in d["models"]] == MODELS
    # each stage says whether this run did it; the first benchmark of a fresh run did all
    assert {s["stage"]: s["ran_now"] for s in d["stages"]} == {
        "vocab": True, "teacher": True, "student": True, "eval": True}
    assert "(this run)" in text and "up to date, made" not in text
    for m in d["models"]:
        assert f"| {m['name']}" in text
        lo, hi = m["interval"]
        assert lo <= m["test_accuracy"] <= hi
        assert m["test_accuracy"] == m["test_correct"].count("1") / len(m["test_correct"])
        assert f"{m['test_accuracy']:.4f} ({lo:.3f}-{hi:.3f})" in text
    assert "## GPU" in text and "No GPU figures at this commit" in text


def test_speed_ratios_are_the_one_sittings(bench):
    _, figures, text, _ = bench
    (d,) = figures["datasets"]
    fair = d["fair"]
    # every timing inside the sitting, the models interleaved round by round
    assert all(fair["started"] <= b < e <= fair["ended"] for *_, b, e in fair["windows"])
    # ... the ablation row's student among them
    assert [w[0] for w in fair["windows"]][::2] == \
        [*MODELS, "ablation: random init"] * fair["rounds"]
    for m in d["models"]:
        assert m["texts_per_s"] == fair["rates"][m["name"]]["all"]
        assert m["texts_per_s_1"] == fair["rates"][m["name"]]["1"]
    best = d["extra"]["best_student"]
    row = next(line for line in text.splitlines() if line.startswith("| toy | "
                                                                    f"{fair['cores']} |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    rates = fair["rates"]
    for cell, column in ((cells[6], "1"), (cells[7], "all")):
        expected = rates[best][column] / rates["fastText supervised"][column]
        assert cell == f"{expected:.2f}x"


def test_seed_and_ablation_rows_share_the_runs_teacher(bench):
    _, figures, text, run = bench
    (d,) = figures["datasets"]
    assert [(r["model"], r["seed"]) for r in d["seeds"]] == [
        ("student", 13), ("DAN from scratch (gold only)", 13),
        ("student", 14), ("DAN from scratch (gold only)", 14)]
    seeded = run / "variants" / "seed-14"
    # the teacher and vocabulary hard-linked from the run, the student its own
    for stage in ("teacher", "vocab"):
        manifest = seeded / stage / "manifest.json"
        assert manifest.stat().st_ino == (run / stage / "manifest.json").stat().st_ino
    student_manifest = json.loads((seeded / "student" / "manifest.json").read_text())
    assert student_manifest["seed"] == 14
    test = [json.loads(x) for x in (Path(__file__).parent / "data" / "test.jsonl")
            .read_text().splitlines()]
    kd = Student.load(seeded / "student", "model-kd.safetensors").predict(
        [r["text"] for r in test])
    ft = Student.load(seeded / "student").predict([r["text"] for r in test])
    row14 = next(r for r in d["seeds"] if r["model"] == "student" and r["seed"] == 14)
    expected = {sum(p == str(r["label"]) for p, r in zip(pred, test, strict=True)) / len(test)
                for pred in (kd, ft)}
    assert row14["test_accuracy"] in expected
    (ablated,) = d["ablation"]
    assert ablated["overrides"] == ["student.init=random"]
    assert ablated["verdict"] in ("beats", "tie", "behind")
    assert "### toy: ablation" in text and "`student.init=random`" in text
    assert "## Seeds" in text


def test_shrunk_students_are_measured(bench):
    _, figures, text, _ = bench
    (d,) = figures["datasets"]
    names = [r["name"] for r in d["shrink"]]
    assert names[0] == "full" and len(names) >= 7
    assert "### toy: the student shrunk and exported" in text


def test_a_second_run_repeats_every_figure_but_the_timings(bench):
    _, figures, text, _ = bench
    again = BENCH_AGAIN["json"]
    assert untimed(again) == untimed(figures)
    (d,) = again["datasets"]
    assert not any(s["ran_now"] for s in d["stages"])
    assert "up to date, made" in BENCH_AGAIN["text"]
    # the Markdown differs only on lines that carry a timing, a date or a stage's provenance
    # (the profile's rows: ms per 1,000 texts and their shares)
    timed = re.compile(r"/s|texts/s|ms|min|Date|x \||x$|\d+x|share of the CPUs|threads\)|"
                       r"processes\)|GiB|MiB|\(batch|\(profile: |\| [\d.]+ \| (\d+%)? ?\|$")
    changed = [(a, b) for a, b in zip(text.splitlines(), BENCH_AGAIN["text"].splitlines(),
                                      strict=True) if a != b]
    untimed_lines = [a for a, _ in changed if not timed.search(a)]
    assert changed and not untimed_lines, untimed_lines[:3]
