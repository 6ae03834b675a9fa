"""`sdistill run` on a run directory made by an earlier version (tests/data/run-4d1a82c: the tiny
pipeline run by commit 4d1a82c, before the package was split into layers): every stage is up to
date, nothing is redone, and its student predicts what it predicted then."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import yaml

from sparse_distill.inference.student import Student
from sparse_distill.stages.config import config_from_dict
from sparse_distill.stages.pipeline import STAGES, run_all
from sparse_distill.stages.rundir import stage_state

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "data" / "run-4d1a82c"


def _config(run_dir: Path) -> dict:
    """The fixture's resolved config; its data paths are relative to the repository, as they
    were when it was made (they are part of the config hash)."""
    data = yaml.safe_load((FIXTURE / "config.yaml").read_text(encoding="utf-8"))
    data["run"]["dir"] = str(run_dir)  # no stage hashes run.dir
    return data


def test_a_run_directory_of_an_earlier_version_is_up_to_date(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURE, run_dir)
    cfg = config_from_dict(_config(run_dir))
    assert {stage: stage_state(cfg, stage) for stage in STAGES} == \
        {stage: [] for stage in STAGES}
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    told = []
    results = run_all(cfg, on_stage=lambda stage, reasons: told.append((stage, reasons)))
    assert told == [(stage, []) for stage in STAGES]
    assert all(r.skipped for r in results.values())
    after = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert {p: b for p, b in after.items() if p.name not in ("config.yaml", ".sdistill.lock")} \
        == {p: b for p, b in before.items() if p.name != "config.yaml"}


def test_a_student_of_an_earlier_version_predicts_as_it_did():
    expected = json.loads((FIXTURE / "predictions.json").read_text(encoding="utf-8"))
    student = Student.load(FIXTURE / "student")
    assert student.predict(expected["texts"]) == expected["labels"]
    assert np.allclose(student.predict_proba(expected["texts"]), expected["probabilities"],
                       atol=1e-6)
