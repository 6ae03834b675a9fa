"""Training the student (`sdistill train-student`): distillation on the teacher's logits, then
fine-tuning on the gold labels.

The model (`model.SparseDAN`): `nn.EmbeddingBag` over the n-gram vocabulary (sparse gradients),
pooled (count-weighted mean as in the paper's code, sum or max), dropout, an MLP, the classes.
The table's optimizer is SparseAdam and the dense layers' AdamW: no dense gradient of the table
exists anywhere.

Training reads the featurised corpus (flat int32 ids, int64 offsets, float32 counts) from `.npy`
files memory-mapped once per vocabulary and text list; a batch is a vectorised gather of rows.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from .card import write_card
from .config import Config, DistillConfig, StudentConfig, as_config
from .data import load_labeled
from .embed_init import teacher_table
from .errors import ConfigError, DataError
from .featurize import NO_BUCKETS, Bag, Featurizer, Unseen, Vocabulary, thread_pool
from .model import SparseDAN, bag_tensors, save_weights, write_then_replace
from .progress import Reporter
from .rundir import (
    StageResult,
    atomic_write_json,
    atomic_write_text,
    begin_stage,
    locked,
    make_manifest,
    prepare_partial,
    read_manifest,
    replace_dir,
    sha256_file,
    staged_dir,
    write_resolved_config,
)
from .teacher import bf16_native, model_source, read_targets, runtime

PARTIAL = "student.partial"


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
            temperature: float = 1.0) -> torch.Tensor:
    """KL(teacher || student) on temperature-softened distributions, times T^2.

    The T^2 factor keeps the gradient's scale independent of T (Hinton et al. 2015), so changing
    the temperature does not silently change the effective learning rate.
    """
    t = temperature
    log_p_student = F.log_softmax(student_logits / t, dim=-1)  # (batch, classes)
    log_p_teacher = F.log_softmax(teacher_logits / t, dim=-1)  # (batch, classes)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * t * t


# ---------------------------------------------------------------------------------------------
# The featurised corpus: stored once, memory-mapped


@dataclass
class Corpus:
    """Rows of featurised texts on disk: ids (nnz,) int32, offsets (n+1,) int64, weights (nnz,)."""

    ids: np.ndarray
    offsets: np.ndarray
    weights: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def layout(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows `idx`'s starts (batch,) and lengths (batch,) in the flat arrays, and the
        offsets (batch + 1,) of the same rows laid end to end."""
        starts = self.offsets[idx]  # (batch,)
        lengths = self.offsets[idx + 1] - starts  # (batch,)
        offsets = np.zeros(len(idx) + 1, dtype=np.int64)  # (batch + 1,)
        np.cumsum(lengths, out=offsets[1:])
        return starts, lengths, offsets

    def rows(self, idx: np.ndarray) -> Bag:
        """The bags of rows `idx`, gathered without a per-row Python loop."""
        starts, lengths, offsets = self.layout(idx)
        # Position of every element in the flat arrays: its row's start plus its rank in the row.
        flat = np.arange(offsets[-1], dtype=np.int64) + np.repeat(starts - offsets[:-1], lengths)
        return Bag(np.asarray(self.ids[flat]), offsets, np.asarray(self.weights[flat]))

    @classmethod
    def open(cls, directory: Path) -> Corpus:
        return cls(*(np.load(directory / f"{name}.npy", mmap_mode="r", allow_pickle=False)
                     for name in ("ids", "offsets", "weights")))


def featurize_corpus(texts: list[str], vocab: Vocabulary, directory: Path,
                     chunk: int = 20_000, unseen: Unseen = NO_BUCKETS) -> Corpus:
    """Featurise `texts` into `directory` (once: an existing complete directory is reused)."""
    if not (directory / "offsets.npy").is_file():
        featurizer = Featurizer(vocab, unseen=unseen)
        with staged_dir(directory, force=True) as tmp:
            parts = [featurizer(texts[i:i + chunk]) for i in range(0, len(texts), chunk)]
            lengths = np.concatenate([np.diff(p.offsets) for p in parts])
            offsets = np.zeros(len(texts) + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets[1:])
            np.save(tmp / "ids.npy", np.concatenate([p.ids for p in parts]), allow_pickle=False)
            np.save(tmp / "weights.npy", np.concatenate([p.weights for p in parts]),
                    allow_pickle=False)
            np.save(tmp / "offsets.npy", offsets, allow_pickle=False)
    return Corpus.open(directory)


# ---------------------------------------------------------------------------------------------
# Training


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
def accuracy(model: SparseDAN, bag: Bag, gold: np.ndarray, pooling: str, device: torch.device,
             batch_size: int = 4096) -> float:
    model.eval()
    correct = 0
    corpus = Corpus(bag.ids, bag.offsets, bag.weights)
    for start in range(0, len(corpus), batch_size):
        idx = np.arange(start, min(start + batch_size, len(corpus)))
        pred = model(*bag_tensors(corpus.rows(idx), pooling, device)).argmax(dim=1).cpu().numpy()
        correct += int((pred == gold[idx]).sum())
    model.train()
    return correct / max(1, len(gold))


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
        self.best_path = work / f"{phase}-best.safetensors"
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
        write_then_replace(self.ckpt, lambda tmp: torch.save(checkpoint, tmp))

    def resume(self) -> bool:
        if not self.ckpt.is_file():
            return False
        ckpt = torch.load(self.ckpt, weights_only=True)
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


def _batches(n_rows: int, batch_size: int, seed: int, start_step: int, total_steps: int
             ) -> Any:
    """(step, row indices) from `start_step`: a fresh seeded permutation every epoch, drawn
    once per epoch (at 10M rows one takes 0.4 s, more than a GPU step)."""
    per_epoch = max(1, n_rows // batch_size)  # drop the last partial batch: fixed shapes
    perm, perm_epoch = np.empty(0, np.int64), -1
    for step in range(start_step, total_steps):
        epoch, position = divmod(step, per_epoch)
        if epoch != perm_epoch:
            perm, perm_epoch = np.random.default_rng([seed, epoch]).permutation(n_rows), epoch
        yield step, perm[position * batch_size:(position + 1) * batch_size]


Batch = tuple[np.ndarray, tuple[torch.Tensor, ...]]
# Batches prepared ahead on CUDA, each on its own thread: one thread kept up with the GPU on
# average, but its time varies with the GIL held by the step's kernel launches, and the GPU waited
# whenever one batch came late (scripts/bench_train_loop.py; benchmarks/RESULTS.md, GPU).
CUDA_PREFETCH = 3


def _ahead(batches: Iterator[tuple[int, np.ndarray]], prepare: Callable[[np.ndarray], Batch],
           prefetch: int) -> Iterator[tuple[int, Batch]]:
    """(step, prepare(rows)) for each batch, in order; with `prefetch` > 0, that many batches
    ahead are prepared on as many threads while the caller trains on this one (on CUDA:
    gathered, pinned and copied while the GPU runs the step). The batches are the same either
    way."""
    if prefetch <= 0:
        for step, idx in batches:
            yield step, prepare(idx)
        return
    pool = thread_pool(prefetch, "prefetch")
    pending: collections.deque[tuple[int, Future[Batch]]] = collections.deque(
        (step, pool.submit(prepare, idx)) for step, idx in itertools.islice(batches, prefetch))
    while pending:
        step, ready = pending.popleft()
        upcoming = next(batches, None)
        if upcoming is not None:
            pending.append((upcoming[0], pool.submit(prepare, upcoming[1])))
        yield step, ready.result()


class ResidentCorpus:
    """The first `n_rows` rows' ids and pooling weights on the device, so that a batch is
    gathered there: the host then handles (batch,)-sized arrays a step, not (nnz,)-sized ones.

    On CUDA the host's gathering (one thread a batch, sharing the GIL with the step's kernel
    launches) held the GPU waiting up to 27% of a step at d = 1000 (benchmarks/RESULTS.md, GPU).
    The weights are those `bag_tensors` makes, row by row the same arithmetic, so the batches
    are the host path's exactly.
    """

    CHUNK_ROWS = 100_000  # rows moved at a time: bounded host memory on a corpus of any size

    def __init__(self, corpus: Corpus, n_rows: int, pooling: str, device: torch.device):
        self.corpus = corpus
        self.device = device
        nnz = int(corpus.offsets[n_rows])
        self.ids = torch.empty(nnz, dtype=torch.int32, device=device)  # (nnz,)
        self.weights = torch.empty(nnz, dtype=torch.float32, device=device)  # (nnz,)
        for a in range(0, n_rows, self.CHUNK_ROWS):
            b = min(n_rows, a + self.CHUNK_ROWS)
            lo, hi = int(corpus.offsets[a]), int(corpus.offsets[b])
            # Copies (np.array): a read-only memory map's slice would make torch warn.
            bag = Bag(np.array(corpus.ids[lo:hi]), corpus.offsets[a:b + 1] - lo,
                      np.array(corpus.weights[lo:hi]))
            weights = bag.mean_weights() if pooling == "mean" else bag.weights
            self.ids[lo:hi].copy_(torch.from_numpy(bag.ids))
            self.weights[lo:hi].copy_(torch.from_numpy(np.ascontiguousarray(weights,
                                                                            np.float32)))

    @staticmethod
    def fits(corpus: Corpus, n_rows: int, device: torch.device) -> bool:
        """Whether the rows take at most a quarter of the device's free memory (the rest is
        the table's, SparseAdam's and the batches')."""
        if device.type != "cuda":
            return False
        free, _ = torch.cuda.mem_get_info(device)
        return 8 * int(corpus.offsets[n_rows]) <= free // 4

    def rows(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`bag_tensors` of rows `idx`, on the device, without waiting for it."""
        starts, lengths, offsets = self.corpus.layout(idx)
        shift, lengths_d, offsets_d = (to_device(torch.from_numpy(a), self.device)
                                       for a in (starts - offsets[:-1], lengths, offsets))
        total = int(offsets[-1])
        # Position of every element in the flat arrays: its row's start plus its rank in the row.
        flat = torch.arange(total, device=self.device) + torch.repeat_interleave(
            shift, lengths_d, output_size=total)  # (nnz,)
        return self.ids[flat].long(), offsets_d, self.weights[flat]


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """On CUDA, pinned first, so that the copy runs asynchronously, beside a step."""
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def batch_maker(corpus: Corpus, targets: np.ndarray | None, gold: np.ndarray,
                labelled_rows: int, alpha: float, pooling: str, device: torch.device,
                resident: bool | None = None) -> Callable[[np.ndarray], Batch]:
    """rows -> (rows, the step's inputs on `device`): bag tensors, then the teacher's logits
    (KD) or the gold labels (fine-tuning), then, for KD with alpha > 0, the positions of the
    gold-labelled rows and their labels. `resident`: gather the bags on the device from a
    `ResidentCorpus` (None: on CUDA when the rows fit)."""
    n_rows = len(corpus) if targets is not None else labelled_rows
    if resident is None:
        resident = ResidentCorpus.fits(corpus, n_rows, device)
    on_device = ResidentCorpus(corpus, n_rows, pooling, device) if resident else None
    cpu = torch.device("cpu")

    def prepare(idx: np.ndarray) -> Batch:
        host = [] if on_device is not None else [*bag_tensors(corpus.rows(idx), pooling, cpu)]
        if targets is not None:
            host.append(torch.from_numpy(targets[idx]))  # (batch, classes)
            has_gold = np.flatnonzero(idx < labelled_rows)
            if alpha > 0 and len(has_gold):
                host += [torch.from_numpy(has_gold), torch.from_numpy(gold[idx[has_gold]])]
        else:
            host.append(torch.from_numpy(gold[idx]))  # (batch,)
        bags = on_device.rows(idx) if on_device is not None else ()
        return idx, (*bags, *(to_device(t, device) for t in host))

    return prepare


def step_loss(model: SparseDAN, inputs: tuple[torch.Tensor, ...], kd: bool,
              temperature: float, alpha: float) -> torch.Tensor:
    """The loss of one step on `batch_maker`'s inputs."""
    logits = model(*inputs[:3])  # (batch, classes)
    if not kd:
        return F.cross_entropy(logits, inputs[3])
    loss = kd_loss(logits, inputs[3], temperature)
    if len(inputs) > 4:  # cross-entropy on the batch's gold-labelled rows
        ce = F.cross_entropy(logits.index_select(0, inputs[4]), inputs[5])
        loss = (1 - alpha) * loss + alpha * ce
    return loss


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


def run_phase(trainer: PhaseTrainer, corpus: Corpus, targets: np.ndarray | None,
              gold: np.ndarray, labelled_rows: int, dev: tuple[Bag, np.ndarray],
              total_steps: int, batch_size: int, eval_every: int, patience: int,
              temperature: float, alpha: float, seed: int, log: Path, report: Reporter
              ) -> dict[str, Any]:
    """Train until `total_steps` (or early stop), evaluating and checkpointing every
    `eval_every` steps. `targets` None: cross-entropy on gold labels only (fine-tuning)."""
    model, s, device = trainer.model, trainer.s, trainer.device
    resumed = trainer.resume()
    _log_until(log, trainer.phase, trainer.state["step"])
    if trainer.state["stopped"]:
        return {"resumed": resumed, **trainer.state}
    model.train()
    report.start(trainer.phase, total_steps, trainer.state["step"], unit="steps")
    cuda = device.type == "cuda"
    prepare = batch_maker(corpus, targets, gold, labelled_rows, alpha, s.pooling, device)
    start, seen, steps = time.perf_counter(), 0, 0
    # The loss is summed on the device and read back at evaluations only: reading it every
    # step would make the host wait for the GPU every step.
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    last_save, every = start, checkpoint_seconds()
    n_rows = len(corpus) if targets is not None else labelled_rows
    batches = _batches(n_rows, batch_size, seed, trainer.state["step"], total_steps)
    for step, (idx, inputs) in _ahead(batches, prepare, CUDA_PREFETCH if cuda else 0):
        loss = step_loss(model, inputs, targets is not None, temperature, alpha)
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
    return {"resumed": resumed, **trainer.state}


@locked
def train_student(cfg: Config | str | Path, *, force: bool = False,
                  report: Reporter | None = None) -> StageResult:
    """Distil the DAN on the teacher's logits, then fine-tune on gold labels; RUN/student/."""
    cfg = as_config(cfg)
    checkpoint_seconds()  # a bad SDISTILL_CHECKPOINT_SECONDS stops here, before any work
    s = cfg.student
    out = cfg.run_dir() / "student"
    inputs, fp, done = begin_stage(cfg, "student", force)
    if done is not None:
        return done
    report = report or Reporter()
    rt = runtime(cfg.run.device)
    if rt.device.type == "cuda":
        # Deterministic kernels where torch has them (cuBLAS reads its workspace setting when
        # it starts). The rest, atomics in CUDA's sparse updates, may differ in rounding from
        # run to run, so a resumed CUDA run matches an uninterrupted one within a tolerance.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    reuse_freed_memory()
    torch.manual_seed(cfg.run.seed)
    start = time.perf_counter()
    timings: dict[str, float] = {}
    run_dir = cfg.run_dir()
    vocab = Vocabulary.load(run_dir / "vocab")
    targets_dir = run_dir / "teacher" / "targets"
    teacher_logits, rows = read_targets(targets_dir)
    labels = json.loads((targets_dir / "index.json").read_text())["labels"]
    data = load_labeled(cfg)
    if data.labels != labels:
        raise DataError(f"the teacher's labels {labels} differ from the data's {data.labels}; "
                        f"rerun `sdistill teach {getattr(cfg, '_path', 'CONFIG')} --force`")
    if data.dev is None:
        raise DataError("student: data.dev is needed to pick the best checkpoint; add a dev "
                        "split to the config")
    label_id = {lab: i for i, lab in enumerate(labels)}
    train_rows = sum(1 for r in rows if r["split"] == "train")
    gold = np.asarray([label_id[r["label"]] if r["label"] is not None else -1 for r in rows],
                      dtype=np.int64)

    # The featurised corpus is shared by every student run on the same vocabulary, texts and
    # buckets (a run without buckets keeps the key it had before they existed).
    unseen = Unseen(s.buckets, s.bucket_ngrams,
                    (s.subwords[0], s.subwords[1]) if s.subwords else None)
    key = (sha256_file(run_dir / "vocab" / "vocab.json")
           + sha256_file(targets_dir / "texts.jsonl")
           + (json.dumps(unseen.to_json(), sort_keys=True) if unseen.buckets else ""))
    digest = hashlib.sha256(key.encode()).hexdigest()
    t0 = time.perf_counter()
    corpus = featurize_corpus([r["text"] for r in rows], vocab,
                              run_dir / "features" / digest[:16], unseen=unseen)
    featurizer = Featurizer(vocab, unseen=unseen)
    dev = (featurizer(data.dev.texts), np.asarray([label_id[x] for x in data.dev.labels]))
    timings["featurize_s"] = time.perf_counter() - t0

    work = run_dir / PARTIAL
    prepare_partial(work, fp)
    log = work / "log.jsonl"

    dense_bf16 = s.dense_precision == "bf16" or (
        s.dense_precision == "auto" and rt.device.type == "cuda" and bf16_native(rt.device))
    model = SparseDAN(featurizer.n_rows, len(labels), s.embedding_dim, s.hidden_dims,
                      s.pooling, s.activation, s.dropout, dense_bf16)
    if s.init == "teacher":
        t0 = time.perf_counter()
        teacher_dir = (run_dir / "teacher" / "model" if cfg.teacher.finetune
                       else model_source(cfg.teacher.model))
        with torch.no_grad():  # the buckets' rows, hashed strings with no words, stay random
            model.embedding.weight[:len(vocab)].copy_(teacher_table(
                vocab, str(teacher_dir), s.embedding_dim, run_dir / "features" / "init",
                rt.device, cfg.teacher.trust_remote_code, report))
        timings["init_s"] = time.perf_counter() - t0
    model = model.to(rt.device)
    d = s.distill
    steps, eval_every = distill_schedule(d, len(corpus))
    t0 = time.perf_counter()
    kd = PhaseTrainer(model, s, d.lr, steps, int(d.warmup_ratio * steps), d.schedule,
                      rt.device, work, "distill")
    kd_state = run_phase(kd, corpus, teacher_logits, gold, train_rows, dev, steps,
                         d.batch_size, eval_every, d.patience, d.temperature, d.alpha,
                         cfg.run.seed, log, report)
    timings["distill_s"] = time.perf_counter() - t0
    model.load_state_dict(load_file(str(kd.best_path)))
    results: dict[str, Any] = {"kd": {"dev_accuracy": kd_state["best"],
                                      "best_step": kd_state["best_step"],
                                      "steps": kd_state["step"], "planned_steps": steps,
                                      "eval_every": eval_every}}
    ft_cfg = s.finetune
    if ft_cfg.epochs > 0:
        t0 = time.perf_counter()
        per_epoch = max(1, train_rows // ft_cfg.batch_size)
        ft = PhaseTrainer(model, s, ft_cfg.lr, ft_cfg.epochs * per_epoch, 0, "constant",
                          rt.device, work, "finetune")
        if not ft.ckpt.is_file():  # a resumed fine-tune keeps its own best so far
            # The KD weights are the starting point: if fine-tuning never beats them, they stay.
            ft.state["best"] = accuracy(model, dev[0], dev[1], s.pooling, rt.device)
            save_weights(model.state_dict(), ft.best_path)
        ft_state = run_phase(ft, corpus, None, gold, train_rows, dev, ft_cfg.epochs * per_epoch,
                             ft_cfg.batch_size, per_epoch, ft_cfg.patience, 1.0, 0.0,
                             cfg.run.seed + 1, log, report)
        timings["finetune_s"] = time.perf_counter() - t0
        results["kd_ft"] = {"dev_accuracy": ft_state["best"], "best_step": ft_state["best_step"],
                            "steps": ft_state["step"]}
    report.close()

    timings["total_s"] = time.perf_counter() - start
    params = sum(p.numel() for p in model.parameters())
    arch = {"vocab_size": featurizer.n_rows, "embedding_dim": s.embedding_dim,
            "hidden_dims": s.hidden_dims, "pooling": s.pooling, "activation": s.activation,
            **({"unseen": unseen.to_json()} if unseen.buckets else {})}
    manifest = make_manifest(cfg, "student", fp, inputs,
                             counts={"targets": len(rows), "train_rows": train_rows,
                                     "parameters": params, "nnz": int(corpus.offsets[-1])},
                             labels=labels, timings=timings)
    manifest.update(results=results, device=str(rt.device), threads=torch.get_num_threads(),
                    dense_precision="bf16" if dense_bf16 and rt.device.type == "cuda" else "fp32")
    with staged_dir(work / "final", force=True) as tmp:
        teacher_info = (read_manifest(run_dir / "teacher") or {}).get("teacher", {})
        atomic_write_json(tmp / "student.json", {
            "format": 1, "labels": labels, "architecture": arch, "vocab": "vocab/vocab.json",
            "teacher": {"source": teacher_info.get("source", cfg.teacher.model),
                        "finetuned": bool(teacher_info.get("finetuned"))}})
        shutil.copytree(run_dir / "vocab", tmp / "vocab")
        shutil.copy(kd.best_path, tmp / "model-kd.safetensors")
        best = work / "finetune-best.safetensors" if ft_cfg.epochs > 0 else kd.best_path
        shutil.copy(best, tmp / "model.safetensors")
        shutil.copy(log, tmp / "log.jsonl")
        atomic_write_json(tmp / "manifest.json", manifest)
        write_card(tmp)
    replace_dir(work / "final", out)  # check_output made sure `out` is absent or forced
    shutil.rmtree(work)
    write_resolved_config(cfg)
    return StageResult("student", out, False, manifest)
