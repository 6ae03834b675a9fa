"""The teacher stage: fine-tune or load a Hugging Face classifier, evaluate it, soft-label text.

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

import datetime as dt
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import Config, TeacherConfig, as_config, expand_path
from .data import LabeledData, PoolStats, iter_pool, load_labeled
from .errors import DataError, SDistillError
from .progress import Reporter
from .rundir import (
    StageResult,
    atomic_write_bytes,
    atomic_write_json,
    begin_stage,
    locked,
    make_manifest,
    prepare_partial,
    replace_dir,
    write_resolved_config,
)

PARTIAL = "teacher.partial"


# ---------------------------------------------------------------------------------------------
# Devices, processes, precision


@dataclass
class Runtime:
    device: torch.device
    rank: int
    world: int

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def runtime(device: str) -> Runtime:
    """The device and process layout; joins the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SDistillError("run.device: cuda was asked for but no CUDA device is available; "
                            "set run.device: cpu (or auto)")
    if device == "cuda" and world > 1:
        device = f"cuda:{local_rank}"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise SDistillError(
            f"run.device: process {rank} of {world} would use {dev}, but this machine has "
            f"{torch.cuda.device_count()} CUDA device(s); launch at most that many processes "
            "(torchrun --nproc_per_node N) or set run.device: cpu")
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(
            backend="nccl" if dev.type == "cuda" else "gloo",
            timeout=dt.timedelta(hours=12))  # rank 0 evaluates while the others wait
    return Runtime(dev, rank, world)


def bf16_native(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return False


def resolve_precision(precision: str, device: torch.device, training: bool = False) -> str:
    """auto -> bf16 where the hardware computes it natively; fp32 training on CPU."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if bf16_native(device) else "fp16"
    if training:
        return "fp32"
    return "bf16" if bf16_native(device) else "fp32"


def autocast(device: torch.device, precision: str) -> Any:
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# Loading


def _load_error(source: str, exc: Exception) -> SDistillError:
    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    if Path(source).exists():
        return SDistillError(f"teacher.model: {source} could not be loaded as a Hugging Face "
                             f"model ({first}); it needs config.json, weights and a tokenizer")
    return SDistillError(f"teacher.model: {source!r} is not a local directory and could not be "
                         f"loaded from the Hugging Face Hub ({first}); use a local model folder "
                         "(e.g. `sdistill data fetch minilm`, then teacher.model: "
                         "$SDISTILL_CACHE/models/minilm)")


def model_source(model: str) -> str:
    """A local model folder (with `~` and `$VARS` expanded), else the hub id as written."""
    try:
        path = expand_path(model)
    except KeyError as exc:
        raise SDistillError(f"teacher.model: environment variable ${exc.args[0]} is not set; "
                            "set it or write the path out") from None
    return path if Path(path).exists() else model


def load_tokenizer(source: str, trust_remote_code: bool) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except Exception as exc:  # any loading failure is the user's path or network: one line
        raise _load_error(source, exc) from None


def load_classifier(source: str, labels: list[str] | None, trust_remote_code: bool) -> Any:
    """A sequence classifier; with `labels`, its head is (re)made for them (to be fine-tuned).

    Its weights are float32 whatever the checkpoint's dtype (transformers 5 would keep a float16
    checkpoint in float16, and fine-tune it so): lower precision is autocast's, per
    `teacher.precision` and `teacher.train_precision`, over float32 weights."""
    from transformers import AutoModelForSequenceClassification

    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code, "dtype": torch.float32}
    if labels is not None:
        kwargs.update(num_labels=len(labels), id2label=dict(enumerate(labels)),
                      label2id={lab: i for i, lab in enumerate(labels)},
                      ignore_mismatched_sizes=True)
    try:
        return AutoModelForSequenceClassification.from_pretrained(source, **kwargs)
    except Exception as exc:  # any loading failure is the user's path or network: one line
        raise _load_error(source, exc) from None


def label_order(model_labels: list[str], labels: list[str], label_map: dict[str, str]
                ) -> np.ndarray:
    """Column of the model's logits for each data label (data label order).

    The model's names (its config's id2label) must match the data's, directly or through
    `teacher.label_map`; otherwise the error lists both sets and how to map them.
    """
    mapped = [label_map.get(name, name) for name in model_labels]
    if sorted(mapped) != sorted(labels) or len(set(mapped)) != len(mapped):
        raise DataError(
            f"teacher.model: its labels {model_labels} do not match the data's labels {labels}; "
            "map them with teacher.label_map (model label: data label), e.g. "
            + "teacher.label_map: {" + ", ".join(f"{m}: {d}" for m, d in
                                                 zip(model_labels, labels, strict=False)) + "}")
    return np.asarray([mapped.index(lab) for lab in labels], dtype=np.int64)


def model_labels(model: Any) -> list[str]:
    id2label = model.config.id2label
    return [str(id2label[i]) for i in range(len(id2label))]


# ---------------------------------------------------------------------------------------------
# Inference


def encode_windows(tokenizer: Any, texts: list[str], max_length: int, max_windows: int = 1
                   ) -> tuple[list[list[int]], np.ndarray]:
    """Token ids of each text's windows (special tokens included), and the text each window
    belongs to: (windows, owner (n_windows,) int64).

    max_windows 1 is plain truncation. Above it, a text longer than max_length is cut by the
    tokenizer into consecutive windows of max_length; a text with more than max_windows of them
    keeps max_windows spread evenly from its start to its end, so that the teacher sees all of a
    long document, or an even sample of it, at a bounded cost.
    """
    if max_windows == 1 or not texts:
        return (tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
                if texts else [], np.arange(len(texts), dtype=np.int64))
    enc = tokenizer(texts, truncation=True, max_length=max_length,
                    return_overflowing_tokens=True)
    owner = np.asarray(enc["overflow_to_sample_mapping"], dtype=np.int64)  # (all windows,)
    first = np.searchsorted(owner, np.arange(len(texts)))  # (n_texts,) each text's first window
    count = np.bincount(owner, minlength=len(texts))  # (n_texts,)
    keep = np.concatenate([f + np.linspace(0, c - 1, min(c, max_windows)).round().astype(np.int64)
                           for f, c in zip(first.tolist(), count.tolist(), strict=True)])
    return [enc["input_ids"][i] for i in keep.tolist()], owner[keep]


@torch.inference_mode()
def predict_logits(model: Any, tokenizer: Any, texts: list[str], *, max_length: int,
                   batch_size: int, device: torch.device, precision: str,
                   sort_by_length: bool = True, max_windows: int = 1,
                   on_batch: Callable[[int], None] | None = None,
                   encoded: tuple[list[list[int]], np.ndarray] | None = None) -> np.ndarray:
    """(n_texts, n_classes) float32 logits, in the order of `texts`; a text read as several
    windows (`max_windows`, see `encode_windows`) gets the mean of its windows' logits,
    weighted by their lengths (a document's short tail counts for what it holds).

    Texts are tokenised once (unless `encoded`, from `encode_windows`, gives their windows:
    model-only timing), then batched by length (when `sort_by_length`) so that each batch is
    padded only to its own longest window. `on_batch` receives texts done, in proportion.
    """
    model.eval()
    windows, owner = encoded or encode_windows(tokenizer, texts, max_length, max_windows)
    lengths = np.fromiter(map(len, windows), dtype=np.int64, count=len(windows))
    order = np.argsort(-lengths, kind="stable") if sort_by_length else np.arange(len(windows))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = np.empty((len(windows), model.config.num_labels), dtype=np.float32)
    reported = 0
    for start in range(0, len(windows), batch_size):
        idx = order[start:start + batch_size]
        width = int(lengths[idx].max())
        ids = np.full((len(idx), width), pad_id, dtype=np.int64)  # (batch, width)
        mask = np.zeros((len(idx), width), dtype=np.int64)  # (batch, width)
        for row, i in enumerate(idx):
            ids[row, :lengths[i]] = windows[i]
            mask[row, :lengths[i]] = 1
        with autocast(device, precision):
            logits = model(input_ids=torch.from_numpy(ids).to(device),
                           attention_mask=torch.from_numpy(mask).to(device)).logits
        out[idx] = logits.float().cpu().numpy()  # (batch, n_classes)
        if on_batch is not None:
            done = (start + len(idx)) * len(texts) // len(windows)
            on_batch(done - reported)
            reported = done
    if len(windows) == len(texts):  # one window a text: owner is the identity
        return out
    weight = lengths.astype(np.float64)  # (n_windows,)
    mean = np.zeros((len(texts), out.shape[1]), dtype=np.float64)  # (n_texts, n_classes)
    np.add.at(mean, owner, out * weight[:, None])
    mean /= np.bincount(owner, weights=weight, minlength=len(texts))[:, None]
    return mean.astype(np.float32)


def _metrics(gold: list[str], logits: np.ndarray, labels: list[str]) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    pred = [labels[i] for i in logits.argmax(axis=1)]
    return {"accuracy": float(accuracy_score(gold, pred)),
            "macro_f1": float(f1_score(gold, pred, labels=labels, average="macro",
                                       zero_division=0))}


# ---------------------------------------------------------------------------------------------
# Fine-tuning


def _train_args(t: TeacherConfig, cfg: Config, output_dir: Path, rt: Runtime,
                has_dev: bool) -> Any:
    from transformers import TrainingArguments

    precision = resolve_precision(t.train_precision, rt.device, training=True)
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=t.epochs,
        learning_rate=t.lr,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.label_batch_size,
        gradient_accumulation_steps=t.grad_accum,
        warmup_steps=t.warmup_ratio,  # a float in [0, 1) is a fraction of all steps
        weight_decay=t.weight_decay,
        lr_scheduler_type="linear",
        eval_strategy="epoch" if has_dev else "no",
        save_strategy="epoch",
        load_best_model_at_end=has_dev,
        metric_for_best_model="accuracy" if has_dev else None,
        greater_is_better=True,
        save_total_limit=2 if has_dev else 1,  # the best and the last
        seed=cfg.run.seed,
        data_seed=cfg.run.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=rt.device.type == "cpu",
        train_sampling_strategy="group_by_length",
        logging_steps=10,
        report_to=[],
        disable_tqdm=True,
        ddp_timeout=12 * 3600,
        ddp_find_unused_parameters=False,  # a classifier uses every parameter
        dataloader_num_workers=0,
    )


def _progress_callback(report: Reporter, samples_per_step: int) -> Any:
    from transformers import TrainerCallback

    class _Report(TrainerCallback):
        """Forward steps, loss and samples/s to the reporter."""

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.start, self.first = time.perf_counter(), state.global_step
            report.start("fine-tune", state.max_steps, state.global_step, unit="steps")

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            report.update(1)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any
                   ) -> None:
            if logs and "loss" in logs:
                elapsed = max(time.perf_counter() - self.start, 1e-9)
                rate = (state.global_step - self.first) * samples_per_step / elapsed
                report.note(f"loss {logs['loss']:.4f}, {rate:.1f} samples/s")
            elif logs and "eval_accuracy" in logs:
                report.note(f"epoch {logs['epoch']:.0f}: dev accuracy {logs['eval_accuracy']:.4f}")

    return _Report()


def finetune(cfg: Config, data: LabeledData, work: Path, rt: Runtime,
             report: Reporter) -> dict[str, Any]:
    """Fine-tune the teacher on train (best epoch by dev accuracy) into `work/model`.

    Resumes from the last epoch checkpoint in `work/checkpoints`.
    """
    import datasets
    from transformers import DataCollatorWithPadding, Trainer
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from transformers.trainer_utils import get_last_checkpoint

    t = cfg.teacher
    labels = data.labels
    source = model_source(t.model)
    tokenizer = load_tokenizer(source, t.trust_remote_code)
    model = load_classifier(source, labels, t.trust_remote_code)
    label_id = {lab: i for i, lab in enumerate(labels)}

    def encode(split: Any) -> Any:
        ds = datasets.Dataset.from_dict({"text": split.texts,
                                         "label": [label_id[lab] for lab in split.labels]})
        return ds.map(lambda b: tokenizer(b["text"], truncation=True, max_length=t.max_length),
                      batched=True, remove_columns=["text"])

    def accuracy(pred: Any) -> dict[str, float]:
        logits, gold = pred
        return _metrics([labels[i] for i in gold], logits, labels)

    checkpoints = work / "checkpoints"
    args = _train_args(t, cfg, checkpoints, rt, data.dev is not None)
    trainer = Trainer(model=model, args=args, train_dataset=encode(data.train),
                      eval_dataset=encode(data.dev) if data.dev is not None else None,
                      data_collator=DataCollatorWithPadding(tokenizer),
                      compute_metrics=accuracy)
    for callback in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(callback)
    trainer.add_callback(_progress_callback(report, t.batch_size * t.grad_accum * rt.world))
    resume = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - start
    evals = [log for log in trainer.state.log_history if "eval_accuracy" in log]
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    info = {"resumed_from": Path(resume).name if resume else None,
            "epochs": t.epochs, "steps": trainer.state.global_step,
            # The mean of the logged 10-step means: a resumed run restores the log with the
            # checkpoint, whereas result.training_loss averages only the steps it ran itself.
            "train_loss": float(np.mean(losses)) if losses else result.training_loss,
            "seconds": seconds,
            "samples_per_s": result.metrics.get("train_samples_per_second"),
            "dev_by_epoch": [{"epoch": log["epoch"], "accuracy": log["eval_accuracy"],
                              "macro_f1": log["eval_macro_f1"]} for log in evals],
            "best_checkpoint": Path(trainer.state.best_model_checkpoint).name
            if trainer.state.best_model_checkpoint else None}
    if rt.main:
        tmp = work / "model.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        trainer.save_model(str(tmp))  # the best epoch's weights (load_best_model_at_end)
        tokenizer.save_pretrained(str(tmp))
        atomic_write_json(tmp / "finetune.json", info)
        os.replace(tmp, work / "model")
    rt.barrier()
    return info


# ---------------------------------------------------------------------------------------------
# Soft labels


def shard_path(targets: Path, index: int) -> Path:
    return targets / f"shard-{index:05d}.npy"


def _save_npy(path: Path, array: np.ndarray) -> None:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())


def label_shards(model: Any, tokenizer: Any, texts: list[str], targets: Path, t: TeacherConfig,
                 columns: np.ndarray, rt: Runtime, precision: str,
                 report: Reporter) -> dict[str, Any]:
    """Write the logits of this process's shards that are not on disk yet."""
    n_shards = (len(texts) + t.shard_size - 1) // t.shard_size
    mine = [i for i in range(n_shards) if i % rt.world == rt.rank]
    todo = [i for i in mine if not shard_path(targets, i).is_file()]
    def rows(i: int) -> int:
        return min(t.shard_size, len(texts) - i * t.shard_size)

    report.start("soft-label", sum(map(rows, mine)),
                 sum(rows(i) for i in mine if i not in todo), unit="texts")
    start, labelled = time.perf_counter(), 0
    for i in todo:
        chunk = texts[i * t.shard_size:(i + 1) * t.shard_size]
        logits = predict_logits(model, tokenizer, chunk, max_length=t.max_length,
                                batch_size=t.label_batch_size, device=rt.device,
                                precision=precision, sort_by_length=t.sort_by_length,
                                max_windows=t.max_windows, on_batch=report.update)
        _save_npy(shard_path(targets, i), np.ascontiguousarray(logits[:, columns]))
        labelled += len(chunk)
    seconds = time.perf_counter() - start
    # The texts of the run, and apart from them what an earlier, stopped run had labelled: the
    # rate is this process's own.
    return {"shards": n_shards, "texts": len(texts), "resumed_shards": len(mine) - len(todo),
            "resumed_texts": sum(rows(i) for i in mine if i not in todo), "seconds": seconds,
            "texts_per_s": labelled / seconds if labelled else None}


def read_targets(targets_dir: str | Path) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """(n_texts, n_classes) float32 logits and the rows of texts.jsonl, from RUN/teacher/targets."""
    targets_dir = Path(targets_dir)
    index = json.loads((targets_dir / "index.json").read_text(encoding="utf-8"))
    logits = np.concatenate([np.load(targets_dir / s["file"], allow_pickle=False)
                             for s in index["shards"]]) if index["shards"] else \
        np.zeros((0, len(index["labels"])), np.float32)
    with open(targets_dir / "texts.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return logits, rows


# ---------------------------------------------------------------------------------------------
# The stage


def _write_texts(path: Path, data: LabeledData, pool: list[str]) -> None:
    lines = [json.dumps({"text": t, "split": "train", "label": lab}, ensure_ascii=False)
             for t, lab in zip(data.train.texts, data.train.labels, strict=True)]
    lines += [json.dumps({"text": t, "split": "unlabeled", "label": None}, ensure_ascii=False)
              for t in pool]
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))


@locked
def teach(cfg: Config | str | Path, *, force: bool = False,
          report: Reporter | None = None) -> StageResult:
    """Fine-tune (or load) the teacher, evaluate it on dev/test and soft-label train + pool.

    Writes RUN/teacher/: model/ (when fine-tuned), targets/ (float32 logit shards, index.json,
    texts.jsonl), manifest.json. `report` receives progress (the CLI draws bars).
    """
    from transformers import set_seed

    cfg = as_config(cfg)
    t = cfg.teacher
    out = cfg.run_dir() / "teacher"
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
    texts = data.train.texts + pool

    finetune_info = None
    if t.finetune:
        if not (work / "model").is_dir():
            finetune(cfg, data, work, rt, report)
        finetune_info = json.loads((work / "model" / "finetune.json").read_text())
        source = str(work / "model")
    else:
        source = model_source(t.model)
    timings["finetune_s"] = time.perf_counter() - start
    tokenizer = load_tokenizer(source, t.trust_remote_code)
    model = load_classifier(source, None, t.trust_remote_code).to(rt.device)
    columns = label_order(model_labels(model), data.labels, t.label_map)
    precision = resolve_precision(t.precision, rt.device)

    evaluation: dict[str, Any] = {}
    if rt.main:
        eval_start = time.perf_counter()
        for split in (data.dev, data.test):
            if split is None:
                continue
            t0 = time.perf_counter()
            logits = predict_logits(model, tokenizer, split.texts, max_length=t.max_length,
                                    batch_size=t.label_batch_size, device=rt.device,
                                    precision=precision, sort_by_length=t.sort_by_length,
                                    max_windows=t.max_windows)
            seconds = time.perf_counter() - t0
            evaluation[split.name] = {"n": len(split.texts),
                                      **_metrics(split.labels, logits[:, columns], data.labels),
                                      "texts_per_s": len(split.texts) / seconds}
        timings["eval_s"] = time.perf_counter() - eval_start

    targets = work / "targets"
    if rt.main:
        targets.mkdir(exist_ok=True)
        if not (targets / "texts.jsonl").is_file():
            _write_texts(targets / "texts.jsonl", data, pool)
    rt.barrier()
    label_start = time.perf_counter()
    labelling = label_shards(model, tokenizer, texts, targets, t, columns, rt, precision, report)
    rt.barrier()
    timings["label_s"] = time.perf_counter() - label_start
    if not rt.main:
        return StageResult("teacher", out, False, {})

    n_shards = labelling["shards"]
    shards = [{"file": shard_path(targets, i).name, "start": i * t.shard_size,
               "rows": min(t.shard_size, len(texts) - i * t.shard_size)} for i in range(n_shards)]
    atomic_write_json(targets / "index.json", {
        "rows": len(texts), "labels": data.labels, "dtype": "float32", "kind": "logits",
        "train_rows": len(data.train.texts), "shards": shards})
    timings["total_s"] = time.perf_counter() - start
    manifest = make_manifest(
        cfg, "teacher", fp, inputs,
        counts={"train": len(data.train.texts), "pool": pool_stats.as_dict(),
                "targets": len(texts), "shards": n_shards,
                "splits": {s.name: s.stats.as_dict() for s in data.splits()}},
        labels=data.labels, timings=timings)
    manifest.update({
        "teacher": {"source": t.model, "model_dir": "model" if t.finetune else t.model,
                    "finetuned": t.finetune, "label_columns": columns.tolist()},
        "device": str(rt.device), "processes": rt.world, "threads": torch.get_num_threads(),
        "precision": precision, "finetune": finetune_info, "eval": evaluation,
        "labelling": labelling})
    if t.finetune:
        shutil.rmtree(work / "checkpoints", ignore_errors=True)
    atomic_write_json(work / "manifest.json", manifest)
    (work / "fingerprint.json").unlink()
    replace_dir(work, out)
    write_resolved_config(cfg)
    return StageResult("teacher", out, False, manifest)
