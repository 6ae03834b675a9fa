"""The teacher: a Hugging Face sequence classifier that reads texts (in windows when long),
fine-tunes on the labelled set (transformers' Trainer, data-parallel under torchrun) and writes
its logits in shards (`label_shards`) that a stopped run resumes from.

`Teacher` is the one way texts become the teacher's logits or labels, in the data's label order:
the teacher stage, eval, the benchmark and the GPU check all call it.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..files import atomic_write_bytes, atomic_write_json, staged_dir
from ..progress import Reporter
from .config import Config, TeacherConfig
from .data import LabeledData
from .hf import label_order, load_classifier, load_tokenizer, model_labels, model_source
from .losses import class_weights
from .runtime import Runtime, autocast, resolve_precision


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


@dataclass
class Teacher:
    """A loaded teacher classifier on a device: texts -> logits or labels in the data's label
    order (`columns`: the model's logit column of each data label), read as `settings` say
    (max_length, windows, batch size, precision, batching by length)."""

    model: Any
    tokenizer: Any
    columns: np.ndarray
    labels: list[str]
    settings: TeacherConfig
    device: torch.device
    precision: str

    @classmethod
    def load(cls, source: str, labels: list[str], settings: TeacherConfig,
             device: torch.device) -> Teacher:
        tokenizer = load_tokenizer(source, settings.trust_remote_code)
        model = load_classifier(source, None, settings.trust_remote_code)
        columns = label_order(model_labels(model), labels, settings.label_map)
        return cls(model, tokenizer, columns, labels, settings, torch.device("cpu"),
                   "fp32").to(device)

    def to(self, device: torch.device) -> Teacher:
        """The teacher on `device`, in the precision `settings.precision` gives there."""
        self.model.to(device)
        self.device = device
        self.precision = resolve_precision(self.settings.precision, device)
        return self

    def encode(self, texts: list[str]) -> tuple[list[list[int]], np.ndarray]:
        """The texts' windows, tokenised beforehand (for model-only timing)."""
        return encode_windows(self.tokenizer, texts, self.settings.max_length,
                              self.settings.max_windows)

    def logits(self, texts: list[str], batch_size: int | None = None,
               encoded: tuple[list[list[int]], np.ndarray] | None = None,
               on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """(n_texts, n_labels) float32 logits (`predict_logits`), columns in label order."""
        t = self.settings
        logits = predict_logits(self.model, self.tokenizer, texts, max_length=t.max_length,
                                batch_size=batch_size or t.label_batch_size, device=self.device,
                                precision=self.precision, sort_by_length=t.sort_by_length,
                                max_windows=t.max_windows, on_batch=on_batch, encoded=encoded)
        return np.ascontiguousarray(logits[:, self.columns])

    def predict(self, texts: list[str], batch_size: int | None = None,
                encoded: tuple[list[list[int]], np.ndarray] | None = None) -> list[str]:
        return [self.labels[i] for i in self.logits(texts, batch_size, encoded).argmax(axis=1)]


def label_metrics(gold: list[str], logits: np.ndarray, labels: list[str]) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    pred = [labels[i] for i in logits.argmax(axis=1)]
    return {"accuracy": float(accuracy_score(gold, pred)),
            "macro_f1": float(f1_score(gold, pred, labels=labels, average="macro",
                                       zero_division=0))}


# ---------------------------------------------------------------------------------------------
# Fine-tuning


# teacher.lr: auto's anchor: the paper's rate for RoBERTa-large, whose hidden width is 1024.
AUTO_LR, AUTO_LR_WIDTH = 2.0e-5, 1024


def teacher_lr(t: TeacherConfig, model_config: Any) -> float:
    """The fine-tuning rate: teacher.lr, or for `auto` AUTO_LR x AUTO_LR_WIDTH / the encoder's
    hidden width. Adam's rate for a hidden layer scales as 1 / width (Yang et al. 2021, muP),
    and the published recipes go the same way (ELECTRA: 5e-5 large, 1e-4 base, 3e-4 small);
    MiniLM's teacher (384 wide) was 2.8 points of dev better at auto's 5.3e-5 than at 2e-5 on
    trec (two seeds) and 1.3 on rt, but 9.3 worse on R8 (benchmarks/teacher-lr.md). A config
    without a width (none of hidden_size, d_model, dim) gets AUTO_LR."""
    if t.lr != "auto":
        return float(t.lr)
    width = next((w for w in (getattr(model_config, name, None)
                              for name in ("hidden_size", "d_model", "dim"))
                  if isinstance(w, int) and w > 0), AUTO_LR_WIDTH)
    return AUTO_LR * AUTO_LR_WIDTH / width


def _train_args(t: TeacherConfig, cfg: Config, output_dir: Path, rt: Runtime,
                has_dev: bool, lr: float) -> Any:
    from transformers import TrainingArguments

    precision = resolve_precision(t.train_precision, rt.device, training=True)
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=t.epochs,
        learning_rate=lr,
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


def _weighted_loss(weight: np.ndarray) -> Callable[..., torch.Tensor]:
    """Trainer's `compute_loss_func` for class weights: sum of w[gold] x cross-entropy over the
    texts, divided by the texts of the whole accumulated batch (`num_items_in_batch`, as
    Trainer's own loss), so gradient accumulation changes nothing (`losses.gold_loss`)."""
    w = torch.from_numpy(weight)

    def loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None
             ) -> torch.Tensor:
        logits = outputs["logits"]  # (batch, n_labels)
        total = torch.nn.functional.cross_entropy(logits.float(), labels,
                                                  weight=w.to(logits.device), reduction="sum")
        n = num_items_in_batch if num_items_in_batch is not None else len(labels)
        return total / n

    return loss


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
        return label_metrics([labels[i] for i in gold], logits, labels)

    checkpoints = work / "checkpoints"
    lr = teacher_lr(t, model.config)
    args = _train_args(t, cfg, checkpoints, rt, data.dev is not None, lr)
    weight = class_weights(t.class_weight, labels, data.train.labels, "teacher.class_weight")
    trainer = Trainer(model=model, args=args, train_dataset=encode(data.train),
                      eval_dataset=encode(data.dev) if data.dev is not None else None,
                      data_collator=DataCollatorWithPadding(tokenizer),
                      compute_metrics=accuracy,
                      compute_loss_func=None if weight is None else _weighted_loss(weight))
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
            "epochs": t.epochs, "lr": lr, "steps": trainer.state.global_step,
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
        with staged_dir(work / "model", force=True) as tmp:
            trainer.save_model(str(tmp))  # the best epoch's weights (load_best_model_at_end)
            tokenizer.save_pretrained(str(tmp))
            atomic_write_json(tmp / "finetune.json", info)
    rt.barrier()
    return info


# ---------------------------------------------------------------------------------------------
# Soft labels


def shard_path(targets: Path, index: int) -> Path:
    return targets / f"shard-{index:05d}.npy"


def save_npy(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())


# Logits an earlier labelling by the same teacher gave, by text (`known_labels`).
Known = tuple[dict[str, int], np.ndarray]


def label_shards(teacher: Teacher, texts: list[str], targets: Path, shard_size: int,
                 rt: Runtime, report: Reporter, known: Known | None = None) -> dict[str, Any]:
    """Write the logits of this process's shards that are not on disk yet. A text `known` has
    is copied from it, not run through the teacher."""
    n_shards = (len(texts) + shard_size - 1) // shard_size
    mine = [i for i in range(n_shards) if i % rt.world == rt.rank]
    todo = [i for i in mine if not shard_path(targets, i).is_file()]

    def rows(i: int) -> int:
        return min(shard_size, len(texts) - i * shard_size)

    report.start("soft-label", sum(map(rows, mine)),
                 sum(rows(i) for i in mine if i not in todo), unit="texts")
    start, labelled, reused = time.perf_counter(), 0, 0
    for i in todo:
        chunk = texts[i * shard_size:(i + 1) * shard_size]
        logits, found = _chunk_logits(teacher, chunk, known, report)
        save_npy(shard_path(targets, i), logits)
        labelled += len(chunk) - found
        reused += found
    seconds = time.perf_counter() - start
    # The texts of the run, and apart from them what an earlier, stopped run had labelled: the
    # rate is this process's own, of the texts the teacher read.
    return {"shards": n_shards, "texts": len(texts), "resumed_shards": len(mine) - len(todo),
            "resumed_texts": sum(rows(i) for i in mine if i not in todo), "seconds": seconds,
            "reused_texts": reused,
            "texts_per_s": labelled / seconds if labelled else None}


def _chunk_logits(teacher: Teacher, chunk: list[str], known: Known | None, report: Reporter
                  ) -> tuple[np.ndarray, int]:
    """(len(chunk), n_labels) logits of a shard's texts, and how many came from `known`."""
    if known is None:
        return teacher.logits(chunk, on_batch=report.update), 0
    index, known_logits = known
    rows = np.array([index.get(t, -1) for t in chunk], dtype=np.int64)  # (n,), -1: unknown
    found = rows >= 0
    out = np.empty((len(chunk), known_logits.shape[1]), np.float32)
    out[found] = known_logits[rows[found]]
    report.update(int(found.sum()))
    missing = np.flatnonzero(~found)
    if len(missing):
        out[missing] = teacher.logits([chunk[j] for j in missing], on_batch=report.update)
    return out, int(found.sum())


def known_labels(targets_dir: Path) -> Known:
    """An earlier run's logits, indexed by text: a variant labelled by the same fine-tuned
    teacher with the same settings copies the rows of the texts they share."""
    logits, rows = read_targets(targets_dir)
    return {r["text"]: i for i, r in enumerate(rows)}, logits


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


