"""`sdistill train-student`: distil the sparse DAN on the teacher's logits, then fine-tune it on
the gold labels; RUN/student/ is a student directory (`inference.student.Student.load`).

Work in progress lives in `RUN/student.partial/` (each phase's checkpoint, best weights and
log), so that a stopped run resumes at its last checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from ..errors import DataError, StageError
from ..files import (
    atomic_write_json,
    available_gib,
    peak_resident_gib,
    replace_dir,
    reset_peak_resident,
    resident_gib,
    sha256_file,
    staged_dir,
)
from ..inference.artifact import PROJECTION_FILE, student_meta, write_student
from ..inference.card import write_card
from ..inference.featurize import Bag, Featurizer, Unseen, Vocabulary
from ..inference.network import SparseDAN, load_weights_into, save_weights
from ..progress import Reporter
from ..training.calibration import fit_temperature, nll
from ..training.config import Config
from ..training.corpus import featurize_corpus
from ..training.data import load_labeled
from ..training.embed_init import teacher_table
from ..training.losses import class_weights
from ..training.memory import (
    DISK_TABLES,
    GIB,
    MemoryEstimate,
    StudentShape,
    memory_check_enabled,
)
from ..training.runtime import Runtime, bf16_native, runtime
from ..training.teacher import read_targets
from ..training.trainer import (
    PhaseTrainer,
    accuracy,
    bag_logits,
    best_path,
    checkpoint_seconds,
    distill_schedule,
    return_freed_memory,
    reuse_freed_memory,
    run_phase,
)
from .config import as_config
from .rundir import (
    StageResult,
    begin_stage,
    locked,
    make_manifest,
    prepare_partial,
    read_manifest,
    teacher_source,
    write_resolved_config,
)

PARTIAL = "student.partial"


@dataclass
class StudentData:
    """What the student learns from: the featurised texts of the teacher's targets, their
    logits and gold labels (-1 for pool texts), and dev."""

    labels: list[str]
    bag: Bag  # (n_texts rows)
    teacher_logits: np.ndarray  # (n_texts, n_labels)
    gold: np.ndarray  # (n_texts,) int64
    train_rows: int  # the first rows: the labelled training texts
    dev: tuple[Bag, np.ndarray]  # dev's rows and gold labels
    featurizer: Featurizer


@locked
def train_student(cfg: Config | str | Path, *, force: bool = False,
                  report: Reporter | None = None) -> StageResult:
    """Distil the DAN on the teacher's logits, then fine-tune on gold labels; RUN/student/."""
    cfg = as_config(cfg)
    checkpoint_seconds()  # a bad SDISTILL_CHECKPOINT_SECONDS stops here, before any work
    inputs, fp, done = begin_stage(cfg, "student", force)
    if done is not None:
        return done
    report = report or Reporter()
    return_freed_memory()  # what an earlier student in this process freed is not this one's
    reset_peak_resident()
    rt = _runtime(cfg)
    start = time.perf_counter()
    timings: dict[str, float] = {}
    vocab = Vocabulary.load(cfg.run_dir() / "vocab")
    data = _data(cfg, vocab, timings)
    memory = check_memory(cfg, data, rt)
    work = cfg.run_dir() / PARTIAL
    check_disk(work, memory)
    prepare_partial(work, fp)
    model, dense_bf16 = _model(cfg, data, vocab, rt, work, timings, report)
    results = _train(cfg, model, data, rt, work, timings, report)
    report.close()
    timings["total_s"] = time.perf_counter() - start
    manifest = make_manifest(cfg, "student", fp, inputs,
                             counts={"targets": len(data.bag),
                                     "train_rows": data.train_rows,
                                     "parameters": sum(p.numel() for p in model.parameters()),
                                     "nnz": int(data.bag.offsets[-1])},
                             labels=data.labels, timings=timings)
    peak = peak_resident_gib()
    manifest.update(memory={"estimate_gib": memory.to_json(),
                            "peak_gib": None if peak is None else round(peak, 3)})
    manifest.update(results=results, device=str(rt.device), threads=torch.get_num_threads(),
                    dense_precision="bf16" if dense_bf16 and rt.device.type == "cuda" else "fp32")
    return _finish(cfg, work, data, manifest)


def _runtime(cfg: Config) -> Runtime:
    """The run's device, set up for reproducible training; torch seeded once, here."""
    rt = runtime(cfg.run.device)
    if rt.device.type == "cuda":
        # Deterministic kernels where torch has them (cuBLAS reads its workspace setting when
        # it starts). The rest, atomics in CUDA's sparse updates, may differ in rounding from
        # run to run, so a resumed CUDA run matches an uninterrupted one within a tolerance.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    reuse_freed_memory()
    torch.manual_seed(cfg.student_seed())
    return rt


def _data(cfg: Config, vocab: Vocabulary, timings: dict[str, float]) -> StudentData:
    """The teacher's targets and the data, checked against each other, and featurised."""
    run_dir = cfg.run_dir()
    s = cfg.student
    targets_dir = run_dir / "teacher" / "targets"
    teacher_logits, rows = read_targets(targets_dir)
    labels = json.loads((targets_dir / "index.json").read_text())["labels"]
    labeled = load_labeled(cfg)
    if labeled.labels != labels:
        raise DataError(f"the teacher's labels {labels} differ from the data's {labeled.labels}; "
                        f"rerun `sdistill teach {getattr(cfg, '_path', 'CONFIG')} --force`")
    if labeled.dev is None:
        raise DataError("student: labeled.dev is needed to pick the best checkpoint; add a dev "
                        "split to the config")
    label_id = {lab: i for i, lab in enumerate(labels)}
    gold = np.asarray([label_id[r["label"]] if r["label"] is not None else -1 for r in rows],
                      dtype=np.int64)
    unseen = Unseen(s.buckets, s.bucket_ngrams,
                    (s.subwords[0], s.subwords[1]) if s.subwords else None)
    # The featurised corpus is shared by every student run on the same vocabulary, texts and
    # buckets; without buckets the key hashes no bucket setting, as run directories made before
    # buckets existed did, so that their features are found.
    key = (sha256_file(run_dir / "vocab" / "vocab.json")
           + sha256_file(targets_dir / "texts.jsonl")
           + (json.dumps(unseen.to_json(), sort_keys=True) if unseen.buckets else ""))
    digest = hashlib.sha256(key.encode()).hexdigest()
    start = time.perf_counter()
    bag = featurize_corpus([r["text"] for r in rows], vocab, run_dir / "features" / digest[:16],
                           unseen=unseen)
    featurizer = Featurizer(vocab, unseen=unseen)
    dev = (featurizer(labeled.dev.texts), np.asarray([label_id[x] for x in labeled.dev.labels]))
    timings["featurize_s"] = time.perf_counter() - start
    train_rows = sum(1 for r in rows if r["split"] == "train")
    return StudentData(labels, bag, teacher_logits, gold, train_rows, dev, featurizer)


def student_shape(cfg: Config, data: StudentData) -> StudentShape:
    """What the student's memory depends on besides its width (`training.memory`)."""
    s, bag = cfg.student, data.bag
    per_text = int(bag.offsets[-1]) / max(1, len(bag))  # n-grams per text, the whole corpus
    per_train_text = int(bag.offsets[data.train_rows]) / max(1, data.train_rows)
    corpus = sum(a.nbytes for a in (bag.ids, bag.offsets, bag.weights)) / GIB
    teacher = None
    if s.init == "teacher":
        source = Path(teacher_source(cfg.run_dir()))
        weights = [*source.glob("*.safetensors"), *source.glob("*.bin")]
        # A hub id's weights live in the hub's cache: about a base model's 0.5 GiB.
        teacher = sum(w.stat().st_size for w in weights) / GIB if weights else 0.5
    return StudentShape(
        rows=data.featurizer.n_rows, hidden_dims=list(s.hidden_dims), n_labels=len(data.labels),
        wide=s.wide,
        corpus_gib=corpus,
        batch_ngrams=int(max(s.distill.batch_size * per_text,
                             s.finetune.batch_size * per_train_text)),
        teacher_gib=teacher, held_gib=resident_gib() or 0.0)


def check_memory(cfg: Config, data: StudentData, rt: Runtime) -> MemoryEstimate:
    """The stage's peak memory, estimated before the table exists; on a CPU run it stops here,
    with the setting that fits, when the machine has less available (SDISTILL_MEMORY_CHECK=0
    goes on anyway)."""
    shape = student_shape(cfg, data)
    s = cfg.student
    estimate = shape.estimate(s.embedding_dim)
    available = available_gib()
    # On CUDA the table lives in the GPU's memory (which torch reports itself when it is short).
    if rt.device.type != "cpu" or available is None or not memory_check_enabled():
        return estimate
    if estimate.peak > available:
        fixes = []
        dim = shape.fitting_dim(s.embedding_dim, available)
        if dim is not None:
            fixes.append(f"student.embedding_dim: {dim} (about {shape.estimate(dim).peak:.1f} "
                         "GiB)")
        rows = shape.fitting_rows(s.embedding_dim, available) - data.featurizer.unseen.buckets
        if rows >= 1000:
            fixes.append(f"vocab.max_features: {rows // 1000 * 1000} (at this width)")
        fixes.append("SDISTILL_MEMORY_CHECK=0 to try anyway")
        raise StageError(
            f"student: needs about {estimate.peak:.1f} GiB at its peak ({estimate.parts()}) "
            f"and {available:.1f} GiB is available; set {' or '.join(fixes)}")
    return estimate


def check_disk(work: Path, estimate: MemoryEstimate) -> None:
    """Stop before training when run.dir's disk lacks room for the student's checkpoints at
    their peak: a full disk would otherwise end the run at a checkpoint, minutes in."""
    if not memory_check_enabled():
        return
    held = sum(f.stat().st_size for f in work.iterdir()) / GIB if work.is_dir() else 0.0
    free = shutil.disk_usage(work.parent).free / GIB + held  # a resumed run replaces its own
    if estimate.disk > free:
        raise StageError(
            f"student: needs about {estimate.disk:.1f} GiB of disk in {work} at its peak "
            f"({DISK_TABLES} tables of {estimate.table:.2f} GiB: both phases' best weights and a "
            f"checkpoint of the weights and SparseAdam's moments beside the one it replaces) and "
            f"{free:.1f} GiB is free there; free some space, point run.dir at another disk, or "
            "set a smaller vocab.max_features or student.embedding_dim "
            "(SDISTILL_MEMORY_CHECK=0 to try anyway)")


def _model(cfg: Config, data: StudentData, vocab: Vocabulary, rt: Runtime, work: Path,
           timings: dict[str, float], report: Reporter) -> tuple[SparseDAN, bool]:
    """The DAN at its starting point on the run's device (random, or the teacher's view of each
    n-gram's words: `student.init`), and whether its dense layers run in bf16."""
    s = cfg.student
    dense_bf16 = s.dense_precision == "bf16" or (
        s.dense_precision == "auto" and rt.device.type == "cuda" and bf16_native(rt.device))
    model = SparseDAN(data.featurizer.n_rows, len(data.labels), s.embedding_dim,
                      s.hidden_dims, s.pooling, s.activation, s.dropout, dense_bf16,
                      wide=s.wide)
    if s.init == "teacher":
        start = time.perf_counter()
        table, projection = teacher_table(
            vocab, teacher_source(cfg.run_dir()), s.embedding_dim,
            cfg.run_dir() / "features" / "init", rt.device, cfg.teacher.trust_remote_code,
            report)  # (|V|, d)
        with torch.no_grad():  # the buckets' rows, hashed strings with no words, stay random
            model.embedding.weight[:len(vocab), :s.embedding_dim].copy_(table)
        del table
        # Kept with the student: a word its vocabulary lacks can be mapped the same way later
        # (evaluation.unseen_words).
        projection.save(work / PROJECTION_FILE)
        timings["init_s"] = time.perf_counter() - start
    return model.to(rt.device), dense_bf16


def _train(cfg: Config, model: SparseDAN, data: StudentData, rt: Runtime, work: Path,
           timings: dict[str, float], report: Reporter) -> dict[str, Any]:
    """Distillation, then fine-tuning on the gold labels (if student.finetune.epochs > 0); the
    model ends with the best weights by dev. Returns each phase's results."""
    s, log = cfg.student, work / "log.jsonl"
    d = s.distill
    # before distilling: a label the mapping names wrongly stops here, not after minutes of KD
    weight = class_weights(s.finetune.class_weight, data.labels,
                           [data.labels[g] for g in data.gold[:data.train_rows]],
                           "student.finetune.class_weight")
    steps, eval_every = distill_schedule(d, len(data.bag))
    start = time.perf_counter()
    kd = PhaseTrainer(model, s, d.lr, steps, int(d.warmup_ratio * steps), d.schedule,
                      rt.device, work, "distill")
    kd_state = run_phase(kd, data.bag, data.teacher_logits, data.gold, data.train_rows,
                         data.dev, steps, d.batch_size, eval_every, d.patience, d.temperature,
                         d.alpha, cfg.student_seed(), log, report, d.loss)
    timings["distill_s"] = time.perf_counter() - start
    kd.release()
    _load_best(model, kd.best_path, rt)
    results: dict[str, Any] = {"kd": {"dev_accuracy": kd_state["best"],
                                      "best_step": kd_state["best_step"],
                                      "steps": kd_state["step"], "planned_steps": steps,
                                      "eval_every": eval_every,
                                      # the phase's time is then the last process's share
                                      "resumed": kd_state["resumed"]}}
    ft_cfg = s.finetune
    if ft_cfg.epochs > 0:
        start = time.perf_counter()
        per_epoch = max(1, data.train_rows // ft_cfg.batch_size)
        ft = PhaseTrainer(model, s, ft_cfg.lr, ft_cfg.epochs * per_epoch, 0, "constant",
                          rt.device, work, "finetune")
        if not ft.ckpt.is_file():  # a resumed fine-tune keeps its own best so far
            # The KD weights are the starting point: if fine-tuning never beats them, they stay.
            ft.state["best"] = accuracy(model, *data.dev, s.pooling, rt.device)
            save_weights(model.state_dict(), ft.best_path)
        ft_state = run_phase(ft, data.bag, None, data.gold, data.train_rows, data.dev,
                             ft_cfg.epochs * per_epoch, ft_cfg.batch_size, per_epoch,
                             ft_cfg.patience, 1.0, 0.0, cfg.student_seed() + 1, log, report,
                             class_weight=weight)
        timings["finetune_s"] = time.perf_counter() - start
        results["kd_ft"] = {"dev_accuracy": ft_state["best"], "best_step": ft_state["best_step"],
                            "steps": ft_state["step"], "resumed": ft_state["resumed"]}
    if s.calibrate and len(data.dev[1]):
        _load_best(model, best_path(work, "finetune" if ft_cfg.epochs > 0 else "distill"), rt)
        results["calibration"] = calibrate(model, data, s.pooling, rt.device)
    return results


def _load_best(model: SparseDAN, path: Path, rt: Runtime) -> None:
    if rt.device.type == "cpu":
        load_weights_into(model, path)  # no second table beside the model's
    else:
        model.load_state_dict(load_file(str(path)))


def calibrate(model: SparseDAN, data: StudentData, pooling: str, device: torch.device
              ) -> dict[str, Any]:
    """The final model's temperature, fitted on dev (`training.calibration`), with dev's NLL
    before and after."""
    logits = bag_logits(model, data.dev[0], pooling, device)  # (n_dev, n_classes)
    gold = data.dev[1]
    t = fit_temperature(logits, gold)
    return {"temperature": t, "fitted_on": "dev", "n": len(gold),
            "dev_nll_before": nll(logits, gold), "dev_nll_after": nll(logits, gold, t)}


def _finish(cfg: Config, work: Path, data: StudentData, manifest: dict[str, Any]) -> StageResult:
    """The student directory, written beside the work and renamed to RUN/student."""
    run_dir, s = cfg.run_dir(), cfg.student
    unseen = data.featurizer.unseen
    arch = {"vocab_size": data.featurizer.n_rows, "embedding_dim": s.embedding_dim,
            "hidden_dims": s.hidden_dims, "pooling": s.pooling, "activation": s.activation,
            **({"unseen": unseen.to_json()} if unseen.buckets else {}),
            **({"wide": True} if s.wide else {})}
    teacher_info = (read_manifest(run_dir / "teacher") or {}).get("teacher", {})
    teacher = {"source": teacher_info.get("source", cfg.teacher.model),
               "finetuned": bool(teacher_info.get("finetuned"))}
    with staged_dir(work / "final", force=True) as tmp:
        write_student(tmp, student_meta(data.labels, arch, teacher,
                                        manifest["results"].get("calibration")))
        shutil.copytree(run_dir / "vocab", tmp / "vocab")
        shutil.copy(best_path(work, "distill"), tmp / "model-kd.safetensors")
        final = "finetune" if s.finetune.epochs > 0 else "distill"
        shutil.copy(best_path(work, final), tmp / "model.safetensors")
        shutil.copy(work / "log.jsonl", tmp / "log.jsonl")
        if (work / PROJECTION_FILE).is_file():
            shutil.copy(work / PROJECTION_FILE, tmp / PROJECTION_FILE)
        atomic_write_json(tmp / "manifest.json", manifest)
        write_card(tmp)
    out = run_dir / "student"
    replace_dir(work / "final", out)  # begin_stage made sure `out` is absent or forced
    shutil.rmtree(work)
    write_resolved_config(cfg)
    return StageResult("student", out, False, manifest)
