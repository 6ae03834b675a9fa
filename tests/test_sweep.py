"""`sdistill sweep`: the config's student against variants that share what they can with its run
(a narrower student trains only a student; a pool budget labels its own pool with the run's
fine-tuned teacher, never fine-tuning it again), measured in one sitting."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from conftest import base_config, student_section, teacher_config
from typer.testing import CliRunner

import sparse_distill.stages.teach as teach_mod
from sparse_distill.cli import app


@pytest.fixture(scope="module")
def swept(tiny_classifier: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("sweep")
    data = teacher_config(base_config(tmp / "run"), tiny_classifier, finetune=True, epochs=1)
    data["student"] = student_section()
    data["eval"] = {"speed_texts": 6, "repeats": 1}
    config = tmp / "toy.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    rows = tmp / "rows.yaml"
    rows.write_text(yaml.safe_dump({"toy": [
        {"name": "d 8", "set": ["student.embedding_dim=8", "student.hidden_dims=[8]"]},
        {"name": "pool of 5", "set": ["data.pool_budget=5"]}]}), encoding="utf-8")
    fine_tunes: list[str] = []
    real = teach_mod.finetune

    def counted(cfg, *args, **kwargs):
        fine_tunes.append(str(cfg.run_dir()))
        return real(cfg, *args, **kwargs)

    mp = pytest.MonkeyPatch()  # module-scoped: the fixture's own patch, undone below
    mp.setattr(teach_mod, "finetune", counted)
    try:
        result = CliRunner().invoke(app, ["sweep", str(config), str(rows),
                                          "-o", str(tmp / "sweep.md")])
    finally:
        mp.undo()
    assert result.exit_code == 0, result.output
    return tmp, result.output, fine_tunes


def test_every_row_is_measured_beside_the_configs_student(swept):
    tmp, output, _ = swept
    report = json.loads((tmp / "sweep.json").read_text())
    names = [r["name"] for r in report["rows"]]
    assert names == ["the config's student", "d 8", "pool of 5"]
    for row in report["rows"]:
        assert 0.0 <= row["dev_accuracy"] <= 1.0 and row["test_accuracy"] is not None
        assert row["texts_per_s_1"] > 0 and row["texts_per_s"] > 0
        assert row["peak_gib"] > 0 and row["weights"] in ("KD", "KD+FT")
    text = (tmp / "sweep.md").read_text()
    assert all(f"| {n} |" in text for n in names) and "best by dev" in output
    # The pool-size curve's axes: what each row's teacher labelled, and retention.
    teacher = json.loads((tmp / "run" / "teacher" / "manifest.json").read_text())
    assert report["teacher_test"] == teacher["eval"]["test"]["accuracy"]
    # Every row here shares the run's teacher, so each row's own is that one.
    assert {r["teacher_test"] for r in report["rows"]} == {report["teacher_test"]}
    labelled = {r["name"]: r["labelled"] for r in report["rows"]}
    assert labelled["the config's student"] == labelled["d 8"] == teacher["counts"]["targets"]
    assert labelled["pool of 5"] == teacher["counts"]["train"] + 5  # no copies in the fixture
    ref = report["rows"][0]
    assert f"| {ref['labelled']:,} | {ref['dev_accuracy']:.4f} | +0.0 points | " \
           f"{ref['test_accuracy']:.4f} | {ref['test_accuracy'] / report['teacher_test']:.3f} |" \
           in text


def test_a_row_shares_the_runs_stages_and_its_fine_tuned_teacher(swept):
    tmp, _, fine_tunes = swept
    run = tmp / "run"
    assert fine_tunes == [str(run)]  # the pool row labelled its pool with the same teacher

    def inode(path: Path) -> int:
        return os.stat(path).st_ino

    narrow, budget = run / "variants" / "d-8", run / "variants" / "pool-of-5"
    # The narrower student shares the vocabulary and the whole teacher stage.
    assert inode(narrow / "vocab" / "vocab.json") == inode(run / "vocab" / "vocab.json")
    assert inode(narrow / "teacher" / "manifest.json") == \
        inode(run / "teacher" / "manifest.json")
    # The budget row labels its own, smaller pool, with the main run's fine-tuned weights.
    weights = next((run / "teacher" / "model").glob("*.safetensors"))
    assert inode(budget / "teacher" / "model" / weights.name) == inode(weights)
    manifest = json.loads((budget / "teacher" / "manifest.json").read_text())
    main = json.loads((run / "teacher" / "manifest.json").read_text())
    assert manifest["counts"]["pool"]["kept"] == 5 < main["counts"]["pool"]["kept"]
    assert manifest["counts"]["pool"]["selection"]["rule"] == "cross-entropy"
    # ... and copies the main run's logits of the texts the two share: every one here (the
    # budget's pool is part of the main run's, the perturbed copies the same at the same seed)
    labelling = manifest["labelling"]
    assert labelling["reused_texts"] == labelling["texts"] == manifest["counts"]["targets"]
    assert labelling["texts_per_s"] is None  # the teacher read no text
    from sparse_distill.training.teacher import read_targets

    logits, rows = read_targets(budget / "teacher" / "targets")
    main_logits, main_rows = read_targets(run / "teacher" / "targets")
    where = {r["text"]: i for i, r in enumerate(main_rows)}
    assert (logits == main_logits[[where[r["text"]] for r in rows]]).all()


def test_the_benchmark_renders_a_sweep_as_it_was_made(swept):
    from sparse_distill.evaluation.results import read_sweeps, sweeps_section

    tmp, _, _ = swept
    (tmp / "sweeps").mkdir(exist_ok=True)
    raw = (tmp / "sweep.json").read_text()
    (tmp / "sweeps" / "toy.json").write_text(raw)
    text = "\n".join(sweeps_section(read_sweeps(tmp / "sweeps")))
    made = json.loads(raw)
    assert "### Sweep of" in text and made["date"] in text and made["command"] in text
    # The section's table is the sweep's own file's, row for row.
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table == [line for line in (tmp / "sweep.md").read_text().splitlines()
                     if line.startswith("| ")]
    assert sweeps_section([]) == []


def test_a_row_reuses_the_runs_caches(swept):
    tmp, _, _ = swept
    run = tmp / "run"
    cached = [p for p in (run / "features").rglob("*") if p.is_file()]
    assert cached
    for path in cached:  # the teacher's word vectors and the featurised corpus, not made again
        twin = run / "variants" / "d-8" / "features" / path.relative_to(run / "features")
        assert os.stat(twin).st_ino == os.stat(path).st_ino


def test_a_resumed_rows_stage_time_says_it_is_the_last_process_share():
    from sparse_distill.evaluation.results import StageTime, SweepResult, SweepRow, render_sweep

    def row(name, stage):
        return SweepRow(name, [], "KD+FT", 0.9, 0.8, 0.7, 100.0, 150.0, 1.0, [stage], 10)

    result = SweepResult("c.yaml", "abc", [
        row("the config's student", StageTime("student", 600.0, False, "2026-12-07")),
        row("wide part", StageTime("student", 150.0, True, "2026-12-07", resumed=True)),
        row("d 8", StageTime("student", 60.0, True, "2026-12-07"))], 2, 0.5, 0.85)
    lines = {line.split(" | ")[0]: line for line in
             render_sweep(result, "sdistill sweep", "now", "here", None).splitlines()
             if line.startswith("| ")}
    assert lines["| the config's student"].endswith("| 10.0 min (up to date) |")
    assert lines["| wide part"].endswith("| 2.5 min (resumed: the last process's share) |")
    assert lines["| d 8"].endswith("| 1.0 min |")
    # One bullet list above the table: no blank line inside it.
    text = render_sweep(result, "sdistill sweep", "now", "here", None)
    head = text.split("\n| row |")[0].strip().splitlines()
    assert [line for line in head[2:] if not line.startswith("- ")] == []


def test_retention_divides_by_the_rows_own_teacher():
    """A row that fine-tunes another teacher (teacher.lr=...) is retained against that one, not
    the config's; rows of older JSON files, without their own, fall back to the config's."""
    from sparse_distill.evaluation.results import StageTime, SweepResult, SweepRow, render_sweep

    stage = StageTime("student", 60.0, True, "2026-12-07")
    result = SweepResult("c.yaml", "abc", [
        SweepRow("the config's student", [], "KD", 0.9, 0.80, None, 1.0, 2.0, 1.0, [stage], 10),
        SweepRow("teacher lr", ["teacher.lr=1e-4"], "KD", 0.9, 0.80, None, 1.0, 2.0, 1.0,
                 [stage], 10, teacher_test=0.90)], 2, None, 0.80)
    lines = {line.split(" | ")[0]: line for line in
             render_sweep(result, "sdistill sweep", "now", "here", None).splitlines()
             if line.startswith("| ")}
    assert "| 0.8000 | 1.000 |" in lines["| the config's student"]
    assert "| 0.8000 | 0.889 |" in lines["| teacher lr"]
