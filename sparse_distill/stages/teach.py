"""`sdistill teach`: fine-tune or load the teacher, evaluate it, soft-label train + pool.

Work in progress lives in `RUN/teacher.partial/` so that a long stage resumes where it stopped:
fine-tuning from its last epoch checkpoint (transformers' Trainer), labelling from its last
complete shard. Shards hold the logits of a fixed, contiguous slice of the texts and are written
atomically, so an interrupted run and an uninterrupted one write the same bytes. When everything
is done the partial directory is renamed to `RUN/teacher/`.

Under `torchrun` (WORLD_SIZE > 1) fine-tuning is data-parallel (Trainer's DDP), and shard i is
labelled by the process of rank i % WORLD_SIZE; rank 0 evaluates, writes the index and the
manifest, and renames the output.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from ..files import atomic_write_bytes, atomic_write_json, replace_dir
from ..progress import Reporter
from ..training.config import Config
from ..training.data import LabeledData, PoolStats, iter_pool, load_labeled
from ..training.hf import model_source
from ..training.runtime import Runtime, runtime
from ..training.teacher import (
    Known,
    Teacher,
    finetune,
    known_labels,
    label_metrics,
    label_shards,
    shard_path,
)
from .config import as_config
from .rundir import (
    StageResult,
    begin_stage,
    locked,
    make_manifest,
    prepare_partial,
    write_resolved_config,
)

PARTIAL = "teacher.partial"
# In the work directory: {"targets": DIR, "precision": ...}, the labels of a run with the same
# fine-tuned teacher, whose rows for the same texts are copied (`_reusable`).
LABELS_FROM = "labels-from.json"


@locked
def teach(cfg: Config | str | Path, *, force: bool = False,
          report: Reporter | None = None) -> StageResult:
    """Fine-tune (or load) the teacher, evaluate it on dev/test and soft-label train + pool.

    Writes RUN/teacher/: model/ (when fine-tuned), targets/ (float32 logit shards, index.json,
    texts.jsonl), manifest.json. `report` receives progress (the CLI draws bars).
    """
    from transformers import set_seed

    cfg = as_config(cfg)
    inputs, fp, done = begin_stage(cfg, "teacher", force)
    if done is not None:
        return done
    rt = runtime(cfg.run.device)
    report = report if report is not None and rt.main else Reporter()
    set_seed(cfg.run.seed)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    work = cfg.run_dir() / PARTIAL
    if rt.main:
        prepare_partial(work, fp)
    rt.barrier()

    data = load_labeled(cfg)
    pool_stats = PoolStats()
    pool = list(iter_pool(cfg, data, pool_stats))
    teacher, finetune_info = _teacher(cfg, data, work, rt, report)
    timings["finetune_s"] = time.perf_counter() - start
    evaluation: dict[str, Any] = {}
    if rt.main:
        eval_start = time.perf_counter()
        evaluation = _evaluate(teacher, data)
        timings["eval_s"] = time.perf_counter() - eval_start

    label_start = time.perf_counter()
    labelling = _label(cfg, teacher, data, pool, work / "targets", rt, report,
                       _reusable(work, teacher))
    timings["label_s"] = time.perf_counter() - label_start
    if not rt.main:
        return StageResult("teacher", cfg.run_dir() / "teacher", False, {})
    timings["total_s"] = time.perf_counter() - start
    manifest = make_manifest(
        cfg, "teacher", fp, inputs,
        counts={"train": len(data.train.texts), "pool": pool_stats.as_dict(),
                "targets": labelling["texts"], "shards": labelling["shards"],
                "splits": {s.name: s.stats.as_dict() for s in data.splits()}},
        labels=data.labels, timings=timings)
    t = cfg.teacher
    manifest.update({
        "teacher": {"source": t.model, "model_dir": "model" if t.finetune else t.model,
                    "finetuned": t.finetune, "label_columns": teacher.columns.tolist()},
        "device": str(rt.device), "processes": rt.world, "threads": torch.get_num_threads(),
        "precision": teacher.precision, "finetune": finetune_info, "eval": evaluation,
        "labelling": labelling})
    return _finish(cfg, work, manifest)


def _teacher(cfg: Config, data: LabeledData, work: Path, rt: Runtime, report: Reporter
             ) -> tuple[Teacher, dict[str, Any] | None]:
    """The teacher on the run's device: fine-tuned into `work/model` first (or found there, from
    a stopped run) when teacher.finetune is on; and the fine-tuning's record."""
    t = cfg.teacher
    if not t.finetune:
        return Teacher.load(model_source(t.model), data.labels, t, rt.device), None
    if not (work / "model").is_dir():
        finetune(cfg, data, work, rt, report)
    info = json.loads((work / "model" / "finetune.json").read_text())
    return Teacher.load(str(work / "model"), data.labels, t, rt.device), info


def _evaluate(teacher: Teacher, data: LabeledData) -> dict[str, Any]:
    """Accuracy, macro-F1 and texts/s of the teacher on dev and test."""
    evaluation = {}
    for split in (data.dev, data.test):
        if split is None:
            continue
        start = time.perf_counter()
        logits = teacher.logits(split.texts)
        seconds = time.perf_counter() - start
        evaluation[split.name] = {"n": len(split.texts),
                                  **label_metrics(split.labels, logits, data.labels),
                                  "texts_per_s": len(split.texts) / seconds}
    return evaluation


def _reusable(work: Path, teacher: Teacher) -> Known | None:
    """The logits of the run named in `work/LABELS_FROM` (a variant sharing that run's
    fine-tuned teacher: `stages.variants`), when its teacher ran in this one's precision."""
    path = work / LABELS_FROM
    if not path.is_file():
        return None
    source = json.loads(path.read_text(encoding="utf-8"))
    if source["precision"] != teacher.precision or not Path(source["targets"]).is_dir():
        return None
    return known_labels(Path(source["targets"]))


def _label(cfg: Config, teacher: Teacher, data: LabeledData, pool: list[str], targets: Path,
           rt: Runtime, report: Reporter, known: Known | None = None) -> dict[str, Any]:
    """The teacher's logits of train + pool in `targets` (texts.jsonl, shards, and on rank 0
    index.json); shards already there, from a stopped run, are kept, and texts `known` has are
    copied from it."""
    texts = data.train.texts + pool
    if rt.main:
        targets.mkdir(exist_ok=True)
        if not (targets / "texts.jsonl").is_file():
            _write_texts(targets / "texts.jsonl", data, pool)
    rt.barrier()
    labelling = label_shards(teacher, texts, targets, cfg.teacher.shard_size, rt, report,
                             known)
    rt.barrier()
    if rt.main:
        _write_index(targets, data, len(texts), labelling["shards"], cfg.teacher.shard_size)
    return labelling


def _write_texts(path: Path, data: LabeledData, pool: list[str]) -> None:
    lines = [json.dumps({"text": t, "split": "train", "label": lab}, ensure_ascii=False)
             for t, lab in zip(data.train.texts, data.train.labels, strict=True)]
    lines += [json.dumps({"text": t, "split": "unlabeled", "label": None}, ensure_ascii=False)
              for t in pool]
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))


def _write_index(targets: Path, data: LabeledData, rows: int, n_shards: int, shard_size: int
                 ) -> None:
    """targets/index.json: the shards in order, each's first row and row count."""
    shards = [{"file": shard_path(targets, i).name, "start": i * shard_size,
               "rows": min(shard_size, rows - i * shard_size)} for i in range(n_shards)]
    atomic_write_json(targets / "index.json", {
        "rows": rows, "labels": data.labels, "dtype": "float32", "kind": "logits",
        "train_rows": len(data.train.texts), "shards": shards})


def _finish(cfg: Config, work: Path, manifest: dict[str, Any]) -> StageResult:
    """The partial directory, its manifest written and its checkpoints gone, becomes
    RUN/teacher."""
    out = cfg.run_dir() / "teacher"
    if cfg.teacher.finetune:
        shutil.rmtree(work / "checkpoints", ignore_errors=True)
    atomic_write_json(work / "manifest.json", manifest)
    (work / "fingerprint.json").unlink()
    replace_dir(work, out)
    write_resolved_config(cfg)
    return StageResult("teacher", out, False, manifest)
