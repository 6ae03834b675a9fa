"""The student's training loop: one phase (distillation or fine-tuning) of SparseAdam on the
table and AdamW on the dense layers, evaluated on dev every `eval_every` steps, early-stopped by
patience, resumable from its checkpoint (model, both optimizers, schedules, RNG states).

No dense gradient of the table exists anywhere: the table's gradient is sparse
(`network.SparseDAN`) and SparseAdam updates only the rows a batch touched.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from ..files import atomic_write_text, write_then_replace
from ..inference.featurize import Bag
from ..inference.network import SparseDAN, bag_tensors, save_weights
from ..progress import Reporter
from .config import DistillConfig, StudentConfig
from .corpus import CUDA_PREFETCH, ahead, batch_maker, batches_from
from .losses import step_loss


def _schedule(kind: str, warmup: int, total: int) -> Any:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if kind == "constant":
            return 1.0
        left = max(0.0, (total - step) / max(1, total - warmup))
        return left if kind == "linear" else left ** 2

    return factor


@torch.no_grad()
def bag_logits(model: SparseDAN, bag: Bag, pooling: str, device: torch.device,
               batch_size: int = 4096) -> np.ndarray:
    """(len(bag), n_classes) float32 logits of the model in eval mode (train mode after)."""
    model.eval()
    parts = [model(*bag_tensors(bag.rows(np.arange(start, min(start + batch_size, len(bag)))),
                                pooling, device)).float().cpu().numpy()
             for start in range(0, len(bag), batch_size)]
    model.train()
    return np.concatenate(parts) if parts else np.zeros((0, model.mlp[-1].out_features),
                                                        np.float32)


def accuracy(model: SparseDAN, bag: Bag, gold: np.ndarray, pooling: str, device: torch.device,
             batch_size: int = 4096) -> float:
    pred = bag_logits(model, bag, pooling, device, batch_size).argmax(axis=1)  # (n,)
    return float((pred == gold).sum()) / max(1, len(gold))


def best_path(work: Path, phase: str) -> Path:
    """Where a phase keeps its best weights by dev accuracy."""
    return work / f"{phase}-best.safetensors"


def _save_checkpoint(checkpoint: dict[str, Any], tmp: Path, final: Path) -> None:
    # Through a file object: given a path, torch.save's C++ writer reports a full disk as a
    # RuntimeError ("unexpected pos ..."), where Python's writes raise OSError(ENOSPC), which
    # the CLI turns into its one-line error naming the file.
    try:
        with open(tmp, "wb") as f:
            torch.save(checkpoint, f)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(final)) from exc


class PhaseTrainer:
    """One training phase (distillation or fine-tuning), resumable from its checkpoint."""

    def __init__(self, model: SparseDAN, s: StudentConfig, lr: float, total_steps: int,
                 warmup: int, schedule: str, device: torch.device, work: Path, phase: str):
        self.model, self.s, self.device, self.phase = model, s, device, phase
        self.sparse = torch.optim.SparseAdam(list(model.embedding.parameters()), lr=lr)
        self.dense = torch.optim.AdamW(model.dense_parameters(), lr=lr, weight_decay=0.0)
        factor = _schedule(schedule, warmup, total_steps)
        self.schedulers = [torch.optim.lr_scheduler.LambdaLR(o, factor)
                           for o in (self.sparse, self.dense)]
        self.ckpt = work / f"{phase}.ckpt"
        self.best_path = best_path(work, phase)
        self.state: dict[str, Any] = {"step": 0, "best": -1.0, "best_step": 0, "bad_evals": 0,
                                      "stopped": False}

    def step(self, loss: torch.Tensor) -> None:
        self.sparse.zero_grad(set_to_none=True)
        self.dense.zero_grad(set_to_none=True)
        loss.backward()
        self.sparse.step()
        self.dense.step()
        for scheduler in self.schedulers:
            scheduler.step()
        self.state["step"] += 1

    def release(self) -> None:
        """Free the optimizers' state (SparseAdam's moments: two tables' worth) once the phase
        is over. Dropping the trainer is not enough: the schedulers and optimizers refer to each
        other, so their memory would wait for the garbage collector."""
        self.sparse.state.clear()
        self.dense.state.clear()

    def evaluate(self, dev_acc: float, patience: int) -> bool:
        """Keep the best weights on disk; True when patience says stop."""
        if dev_acc > self.state["best"]:
            self.state.update(best=dev_acc, best_step=self.state["step"], bad_evals=0)
            save_weights(self.model.state_dict(), self.best_path)
        else:
            self.state["bad_evals"] += 1
        stop = patience > 0 and self.state["bad_evals"] >= patience
        self.state["stopped"] = stop
        return stop

    def save(self) -> None:
        # Dropout draws from the generator of the device it runs on: both are saved.
        rng = {"rng": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        checkpoint = {"model": self.model.state_dict(), "sparse": self.sparse.state_dict(),
                      "dense": self.dense.state_dict(),
                      "schedulers": [s.state_dict() for s in self.schedulers],
                      "state": self.state, **rng}
        write_then_replace(self.ckpt, lambda tmp: _save_checkpoint(checkpoint, tmp, self.ckpt))

    def finish(self) -> None:
        """The phase is over: its checkpoint keeps only the state. What comes next starts from
        the best weights (their own file), so the model and SparseAdam's moments in the
        checkpoint (three tables: 3 GB at 1M x 256) would only hold disk until the student is
        done."""
        self.state["finished"] = True
        write_then_replace(self.ckpt,
                           lambda tmp: _save_checkpoint({"state": self.state}, tmp, self.ckpt))

    def resume(self) -> bool:
        if not self.ckpt.is_file():
            return False
        ckpt = torch.load(self.ckpt, weights_only=True, mmap=True)
        if "model" not in ckpt:  # a finished phase (`finish`)
            self.state = ckpt["state"]
            return True
        # Memory-mapped: the model's weights are copied out of the file's pages, and SparseAdam's
        # moments become private copies as they are updated, so the table is never held twice.
        self.model.load_state_dict(ckpt["model"])
        self.sparse.load_state_dict(ckpt["sparse"])
        self.dense.load_state_dict(ckpt["dense"])
        for scheduler, state in zip(self.schedulers, ckpt["schedulers"], strict=True):
            scheduler.load_state_dict(state)
        self.state = ckpt["state"]
        torch.set_rng_state(ckpt["rng"])
        if self.device.type == "cuda" and "cuda_rng" in ckpt:
            torch.cuda.set_rng_state(ckpt["cuda_rng"], self.device)
        return True


def reuse_freed_memory() -> bool:
    """Make glibc keep freed blocks for reuse instead of returning them to the OS.

    Every step allocates and frees tens to hundreds of MB of temporaries (the batch's gradient
    rows, SparseAdam's updates). Above glibc's mmap threshold each is a fresh mmap whose pages
    fault in again, step after step: measured here, that made SparseAdam's step at d = 256 take
    90 ms instead of 55. Raising the thresholds keeps those pages. Linux/glibc only; elsewhere a
    no-op. Returns whether it applied.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 1 << 30)
                    and libc.mallopt(m_trim_threshold, 1 << 31))
    except (OSError, AttributeError):
        return False


def return_freed_memory() -> bool:
    """Give back to the OS what glibc keeps of freed blocks (`reuse_freed_memory` keeps them).

    A process that trains several students (a sweep, the benchmark's rows) would otherwise start
    each with the last one's table and moments still resident though free: the next stage's
    memory estimate and measured peak would count them. Linux/glibc only; whether it applied."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
        return True
    except (OSError, AttributeError):
        return False


def _log(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _log_until(path: Path, phase: str, step: int) -> None:
    """Keep the log's records of `phase` up to the step it resumes from: the steps after it
    are replayed and log again (a run stopped between a record and its checkpoint would
    otherwise log them twice), and a line cut short by a kill is dropped."""
    if not path.is_file():
        return
    text = path.read_text(encoding="utf-8")
    kept = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("phase") != phase or record.get("step", 0) <= step:
            kept.append(line + "\n")
    if "".join(kept) != text:
        atomic_write_text(path, "".join(kept))


# `student.distill.steps: auto`: passes over the teacher-labelled corpus. The shipped configs'
# students peaked on dev after 4-6 passes (rt, trec) and were still gaining slowly at 4.7 (20ng,
# 20 classes), so 10 passes with early stopping covers them without the paper's 100,000 steps.
AUTO_PASSES = 10
AUTO_MAX_STEPS = 100_000
# `eval_every: auto`: evaluations per pass, so that `patience` counts in half passes.
AUTO_EVALS_PER_PASS = 2


# A resumable checkpoint (the table and both of SparseAdam's moments: 12 GB at |V| 1M, d 1000) is
# written at an evaluation at least this long after the last one, and at the end: at every
# half-pass evaluation it took as long as the training between them. The best weights are
# written at every improvement; after a resume from an earlier checkpoint they may be those of a
# later improvement, which the resumed run, replaying the same steps, writes again.
# SDISTILL_CHECKPOINT_SECONDS sets it (a machine that may be taken away at any moment wants a
# shorter interval; the kill -9 tests use one to kill between checkpoints).
CHECKPOINT_SECONDS = 300.0


def checkpoint_seconds() -> float:
    value = os.environ.get("SDISTILL_CHECKPOINT_SECONDS")
    if value is None:
        return CHECKPOINT_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise ConfigError([f"SDISTILL_CHECKPOINT_SECONDS: expected seconds >= 0, got "
                           f"{value!r}; unset it for the default ({CHECKPOINT_SECONDS:g})"])
    return seconds


def distill_schedule(d: DistillConfig, n_rows: int) -> tuple[int, int]:
    """(steps, eval_every) of distillation over a corpus of n_rows texts, "auto" resolved."""
    per_pass = n_rows / d.batch_size
    steps = d.steps if d.steps != "auto" else min(AUTO_MAX_STEPS,
                                                   max(1, math.ceil(AUTO_PASSES * per_pass)))
    eval_every = (d.eval_every if d.eval_every != "auto"
                  else max(1, math.ceil(per_pass / AUTO_EVALS_PER_PASS)))
    return steps, min(eval_every, steps)


def run_phase(trainer: PhaseTrainer, corpus: Bag, targets: np.ndarray | None,
              gold: np.ndarray, labelled_rows: int, dev: tuple[Bag, np.ndarray],
              total_steps: int, batch_size: int, eval_every: int, patience: int,
              temperature: float, alpha: float, seed: int, log: Path, report: Reporter,
              loss_kind: str = "kl", class_weight: np.ndarray | None = None) -> dict[str, Any]:
    """Train until `total_steps` (or early stop), evaluating and checkpointing every
    `eval_every` steps. `targets` None: cross-entropy on gold labels only (fine-tuning), with
    `class_weight` (n_classes,) if given; otherwise `loss_kind` ("kl" or "mse",
    `losses.distill_loss`) on them."""
    model, s, device = trainer.model, trainer.s, trainer.device
    resumed = trainer.resume()
    _log_until(log, trainer.phase, trainer.state["step"])
    if trainer.state["stopped"] or trainer.state.get("finished"):
        return {"resumed": resumed, **trainer.state}
    model.train()
    report.start(trainer.phase, total_steps, trainer.state["step"], unit="steps")
    cuda = device.type == "cuda"
    prepare = batch_maker(corpus, targets, gold, labelled_rows, alpha, s.pooling, device)
    weight = None if class_weight is None else torch.from_numpy(class_weight).to(device)
    start, seen, steps = time.perf_counter(), 0, 0
    # The loss is summed on the device and read back at evaluations only: reading it every
    # step would make the host wait for the GPU every step.
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    last_save, every = start, checkpoint_seconds()
    n_rows = len(corpus) if targets is not None else labelled_rows
    batches = batches_from(n_rows, batch_size, seed, trainer.state["step"], total_steps)
    for step, (idx, inputs) in ahead(batches, prepare, CUDA_PREFETCH if cuda else 0):
        loss = step_loss(model, inputs, targets is not None, loss_kind, temperature, alpha,
                         weight)
        trainer.step(loss)
        seen += len(idx)
        steps += 1
        loss_sum += loss.detach()
        report.update(1)
        if (step + 1) % eval_every == 0 or step + 1 == total_steps:
            elapsed = time.perf_counter() - start
            dev_acc = accuracy(model, dev[0], dev[1], s.pooling, device)
            record = {"phase": trainer.phase, "step": step + 1,
                      "loss": float(loss_sum) / steps,
                      "dev_accuracy": dev_acc, "samples_per_s": seen / elapsed,
                      "lr": trainer.schedulers[0].get_last_lr()[0]}
            _log(log, record)
            report.note(f"loss {record['loss']:.4f}, dev {dev_acc:.4f}, "
                        f"{record['samples_per_s']:,.0f} samples/s")
            stop = trainer.evaluate(dev_acc, patience)
            if stop or step + 1 == total_steps or time.perf_counter() - last_save >= every:
                trainer.save()
                last_save = time.perf_counter()
            start, seen, steps = time.perf_counter(), 0, 0
            loss_sum.zero_()
            if stop:
                break
    trainer.finish()
    return {"resumed": resumed, **trainer.state}


