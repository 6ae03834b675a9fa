"""Runs that differ from a config's run by a few `--set` overrides: the benchmark's seed rows and
ablation rows (`benchmarks/ablation.yaml`).

A variant lives in `RUN/variants/NAME/`. Each stage whose config and inputs are the same as the
main run's starts as a hard-linked copy of the main run's output (no disk, no time), so that a
row that changes only the student trains only a student; a row that changes the pool labels
its own.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from ..files import atomic_write_json, staged_dir
from ..inference.student import Student
from ..progress import Reporter
from ..training.config import Config
from .config import apply_overrides, config_from_dict
from .rundir import (
    STAGE_UPSTREAM,
    StageResult,
    fingerprint,
    input_fingerprints,
    prepare_partial,
    read_manifest,
    stage_differences,
)
from .teach import LABELS_FROM, PARTIAL, teach
from .train_student import train_student
from .vocab import build_vocab


@dataclass
class Variant:
    name: str
    overrides: list[str]


def variant_config(cfg: Config, name: str, overrides: list[str]) -> Config:
    """`cfg` with `overrides`, run in RUN/variants/<name>."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "variant"
    run_dir = cfg.run_dir() / "variants" / slug
    data = apply_overrides(cfg.to_dict(), [*overrides, f"run.dir={run_dir}"])
    out = config_from_dict(data, check_inputs=False)
    out._path = getattr(cfg, "_path", None)  # type: ignore[attr-defined]
    return out


def _share(main: Config, variant: Config, stage: str) -> None:
    """Hard-link the main run's `stage` output into the variant when the variant would build the
    same thing (same config sections, inputs and upstream outputs)."""
    src, dst = main.run_dir() / stage, variant.run_dir() / stage
    manifest = read_manifest(src)
    if dst.exists() or manifest is None or any(
            not (variant.run_dir() / up).exists() for up in STAGE_UPSTREAM[stage]):
        return
    wanted = fingerprint(variant, stage, input_fingerprints(variant))
    # The upstream digests name the main run's files, hard-linked: the same bytes.
    if stage_differences(manifest.get("fingerprint", {}), wanted):
        return
    with staged_dir(dst, force=False) as tmp:
        shutil.rmtree(tmp)
        shutil.copytree(src, tmp, copy_function=os.link)


def _finetune_key(cfg: Config) -> dict[str, Any]:
    """What the teacher's fine-tuning reads: its settings, the seed, and train and dev (their
    files and how bad lines are read); the pool and its augmentation it never sees."""
    d = cfg.to_dict()["data"]
    sources = {i["key"]: i["sha256"] or i["path"] for i in input_fingerprints(cfg)
               if i["key"] in ("data.train", "data.dev")}
    return {"teacher": cfg.to_dict()["teacher"], "seed": cfg.run.seed, "sources": sources,
            "read": {k: d[k] for k in ("train", "dev", "on_bad_line", "max_bad_fraction")}}


def _share_finetuned(main: Config, variant: Config) -> None:
    """A variant that labels another pool (augmentation, a budget) with the same fine-tuned
    teacher: the main run's fine-tuned model is hard-linked into the variant's teacher work
    directory, where `teach` finds it and goes straight to labelling (on rt that saves the
    fine-tuning's 10-45 minutes a row), and copies the main run's logits of every text the two
    pools share instead of labelling it again (a pool budget's row labels nothing new)."""
    model = main.run_dir() / "teacher" / "model"
    work = variant.run_dir() / PARTIAL
    if (variant.run_dir() / "teacher").exists() or (work / "model").exists() \
            or not (model / "finetune.json").is_file() or not variant.teacher.finetune \
            or _finetune_key(main) != _finetune_key(variant):
        return
    prepare_partial(work, fingerprint(variant, "teacher", input_fingerprints(variant)))
    with staged_dir(work / "model", force=False) as tmp:
        shutil.rmtree(tmp)
        shutil.copytree(model, tmp, copy_function=os.link)
    manifest = read_manifest(main.run_dir() / "teacher") or {}
    atomic_write_json(work / LABELS_FROM, {
        "targets": str((main.run_dir() / "teacher" / "targets").resolve()),
        "precision": manifest.get("precision")})


def _share_features(main: Config, variant: Config) -> None:
    """The main run's caches (RUN/features: featurised corpora and the teacher's word vectors,
    each in a folder named by the digest of what made it), hard-linked into the variant: a
    variant with the same vocabulary and texts, or the same teacher and words, finds them
    there instead of making them again (the word vectors take a minute or two a row)."""
    src, dst = main.run_dir() / "features", variant.run_dir() / "features"
    if not src.is_dir():
        return
    for entry in src.rglob("*"):
        target = dst / entry.relative_to(src)
        if entry.is_dir() or target.exists() or any(  # a writer's temporary: not yet a cache
                part.startswith(".") for part in entry.relative_to(src).parts):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(entry, target)


def run_variant(main: Config, variant: Config, report: Reporter | None = None
                ) -> dict[str, StageResult]:
    """The variant's vocab, teacher and student stages, each shared with the main run where it
    can be (the benchmark measures the student itself: no eval stage)."""
    report = report or Reporter()
    results: dict[str, StageResult] = {}
    for stage, run in (("vocab", lambda c: build_vocab(c)),
                       ("teacher", lambda c: teach(c, report=report)),
                       ("student", lambda c: train_student(c, report=report))):
        _share(main, variant, stage)
        if stage == "teacher":
            _share_finetuned(main, variant)
        if stage == "student":
            _share_features(main, variant)
        results[stage] = run(variant)
        report.close()
    return results


def best_student(student_dir: Path, manifest: dict[str, Any]) -> tuple[Student, str, float]:
    """A student stage's best student by dev (KD on a tie): itself, "KD" or "KD+FT", its dev
    accuracy."""
    trained = manifest["results"]
    kd, ft = trained["kd"]["dev_accuracy"], trained.get("kd_ft", {}).get("dev_accuracy")
    if ft is not None and ft > kd:
        return Student.load(student_dir, "model.safetensors"), "KD+FT", ft
    return Student.load(student_dir, "model-kd.safetensors"), "KD", kd


def read_variants(path: Path, dataset: str) -> list[Variant]:
    """The rows of `dataset` in an ablation file: `{dataset: [{name: ..., set: [KEY=VALUE,
    ...]}, ...]}`."""
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError([f"{path}: cannot read it as YAML ({exc})"]) from None
    rows = data.get(dataset, []) if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise ConfigError([f"{path}: {dataset}: expected a list of rows, each "
                           "{name: ..., set: [KEY=VALUE, ...]}"])
    out = []
    for i, row in enumerate(rows):
        ok = isinstance(row, dict) and isinstance(row.get("name"), str) and isinstance(
            row.get("set"), list) and all(isinstance(s, str) for s in row["set"])
        if not ok:
            raise ConfigError([f"{path}: {dataset}[{i}]: expected {{name: TEXT, set: "
                               f"[KEY=VALUE, ...]}}, got {row!r}"])
        out.append(Variant(row["name"], list(row["set"])))
    return out
