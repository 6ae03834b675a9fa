"""Samples/s of the student's distillation loop at |V| = 1M, and the share of its time the device
waits on the host.

The loop is the library's own (`_batches`, `batch_maker`, `_ahead`, `step_loss`,
`PhaseTrainer.step`, as `run_phase` runs them: on CUDA the next batches are prepared on other
threads while the current step runs, gathered on the GPU when the corpus fits there). Its corpus
is synthetic, so that it runs on a bare machine: `--texts` texts of `--ngrams` ids drawn from a
Zipf law over |V| (the shape of real n-gram counts), with random soft targets; `--gather
host|device` picks where batches are gathered (`student.ResidentCorpus`; default: the library's
choice). For each d it times `--steps` steps of the loop after `--warmup`, then the same number
of steps on batches already on the device (the steps' own time). host-wait share = 1 - own /
loop. On CUDA it also prints the peak GPU memory allocated (model, Adam state, batches) for each
d.

Run:
    python scripts/bench_train_loop.py --device cuda --dims 256 1000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from benchutil import code_version

from sparse_distill.config import StudentConfig
from sparse_distill.model import SparseDAN
from sparse_distill.student import (
    CUDA_PREFETCH,
    Corpus,
    PhaseTrainer,
    _ahead,
    _batches,
    batch_maker,
    reuse_freed_memory,
    step_loss,
)


def synthetic_corpus(n_texts: int, n_ids: int, vocab_size: int, seed: int = 0) -> Corpus:
    rng = np.random.default_rng(seed)
    ids = (np.minimum(rng.zipf(1.3, n_texts * n_ids), vocab_size) - 1).astype(np.int32)
    offsets = np.arange(0, n_texts * n_ids + 1, n_ids, dtype=np.int64)
    return Corpus(ids, offsets, np.ones(len(ids), np.float32))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def one_size(dim: int, corpus: Corpus, targets: np.ndarray, device: torch.device,
             vocab_size: int, batch_size: int, steps: int, warmup: int, prefetch: int,
             resident: bool | None) -> dict[str, float]:
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model = SparseDAN(vocab_size, targets.shape[1], dim, [dim], dropout=0.1,
                      dense_bf16=device.type == "cuda").to(device)
    s = StudentConfig(embedding_dim=dim, hidden_dims=[dim])
    with tempfile.TemporaryDirectory() as work:
        trainer = PhaseTrainer(model, s, 5e-4, warmup + steps, 0, "constant", device,
                               Path(work), "distill")
        gold = np.full(len(corpus), -1, np.int64)
        prepare = batch_maker(corpus, targets, gold, 0, 0.0, "mean", device, resident)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)

        def loop(first: int, last: int) -> float:
            sync(device)
            t0 = time.perf_counter()
            batches = _batches(len(corpus), batch_size, 0, first, last)
            for _, (_, inputs) in _ahead(batches, prepare, prefetch):
                loss = step_loss(model, inputs, True, 1.0, 0.0)
                trainer.step(loss)
                loss_sum.add_(loss.detach())
            sync(device)
            return time.perf_counter() - t0

        loop(0, warmup)
        loop_s = loop(warmup, warmup + steps)
        # The same steps with every batch made beforehand: what the device itself needs.
        ready = [prepare(idx)[1] for _, idx in _batches(len(corpus), batch_size, 0, warmup,
                                                        warmup + steps)]
        sync(device)
        t0 = time.perf_counter()
        for inputs in ready:
            trainer.step(step_loss(model, inputs, True, 1.0, 0.0))
        sync(device)
        own_s = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    return {"dim": dim, "samples_per_s": steps * batch_size / loop_s, "peak_gib": peak / 2**30,
            "own_samples_per_s": steps * batch_size / own_s,
            "host_wait_share": max(0.0, 1 - own_s / loop_s), "loss": float(loss_sum)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dims", type=int, nargs="+", default=[256, 1000])
    parser.add_argument("--vocab-size", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--texts", type=int, default=200_000)
    parser.add_argument("--ngrams", type=int, default=40)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--gather", choices=["auto", "host", "device"], default="auto",
                        help="where batches are gathered (auto: the library's choice)")
    parser.add_argument("--prefetch", type=int, default=None,
                        help="batches prepared ahead (default: the library's, 0 on CPU)")
    args = parser.parse_args()
    device = torch.device(args.device)
    prefetch = args.prefetch if args.prefetch is not None else \
        CUDA_PREFETCH if device.type == "cuda" else 0
    reuse_freed_memory()  # as train-student does
    corpus = synthetic_corpus(args.texts, args.ngrams, args.vocab_size)
    targets = np.random.default_rng(1).standard_normal((args.texts, 2)).astype(np.float32)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"cpu, {torch.get_num_threads()} threads"
    print(f"{name}; |V| {args.vocab_size:,}, batch {args.batch_size}, {args.ngrams} ids a text "
          f"(Zipf), {args.steps} steps after {args.warmup}, {prefetch} batches prepared ahead, "
          f"gathered on: {args.gather}; "
          f"sparse_distill at {code_version()}")
    print("| d | loop samples/s | steps alone samples/s | host-wait share | peak GPU memory |")
    print("|---:|---:|---:|---:|---:|")
    for dim in args.dims:
        r = one_size(dim, corpus, targets, device, args.vocab_size, args.batch_size,
                     args.steps, args.warmup, prefetch,
                     {"auto": None, "host": False, "device": True}[args.gather])
        peak = f"{r['peak_gib']:.2f} GiB" if device.type == "cuda" else "-"
        print(f"| {dim} | {r['samples_per_s']:,.0f} | {r['own_samples_per_s']:,.0f} | "
              f"{r['host_wait_share']:.1%} | {peak} |", flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
