"""Student training throughput at |V| = 1M, and where a training step's time goes.

For each embedding size d (default 64, 256, 1000), in a fresh process (so that its peak RSS is its
own), it builds the student of the library (`SparseDAN`, |V| x d table, one hidden layer of d,
SparseAdam + AdamW) and trains `--steps` steps at batch `--batch-size` on rows of a real
featurised corpus (the `RUN/features/<digest>` directory that `sdistill train-student` wrote; its
ids are spread over the 1M rows in proportion to their frequency), with random soft targets.
It reports samples/s (median step time after `--warmup` steps), the split of a step into
gather (memory-mapped rows -> tensors), forward, backward, SparseAdam step and AdamW step, and
the process's peak RSS.

Run:
    python scripts/bench_student.py --features runs/rt/features/<digest>
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from benchutil import code_version

from sparse_distill.model import SparseDAN, bag_tensors
from sparse_distill.student import Corpus, kd_loss, reuse_freed_memory


def one_size(features: Path, dim: int, vocab_size: int, batch_size: int, steps: int,
             warmup: int) -> dict[str, float]:
    torch.manual_seed(0)
    reuse_freed_memory()  # as train-student does
    corpus = Corpus.open(features)
    model = SparseDAN(vocab_size, 2, dim, [dim], dropout=0.1)
    sparse = torch.optim.SparseAdam(list(model.embedding.parameters()), lr=5e-4)
    dense = torch.optim.AdamW(model.dense_parameters(), lr=5e-4)
    rng = np.random.default_rng(0)
    parts: dict[str, list[float]] = {k: [] for k in
                                     ("gather", "forward", "backward", "sparse_step", "dense_step")}
    cpu = torch.device("cpu")
    for step in range(warmup + steps):
        t0 = time.perf_counter()
        idx = rng.choice(len(corpus), batch_size, replace=False)
        inputs = bag_tensors(corpus.rows(idx), "mean", cpu)
        targets = torch.randn(batch_size, 2)
        t1 = time.perf_counter()
        loss = kd_loss(model(*inputs), targets)
        t2 = time.perf_counter()
        sparse.zero_grad(set_to_none=True)
        dense.zero_grad(set_to_none=True)
        loss.backward()
        t3 = time.perf_counter()
        sparse.step()
        t4 = time.perf_counter()
        dense.step()
        t5 = time.perf_counter()
        if step >= warmup:
            for key, seconds in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4),
                                    strict=True):
                parts[key].append(seconds)
    medians = {k: statistics.median(v) for k, v in parts.items()}
    step_s = statistics.median([sum(x) for x in zip(*parts.values(), strict=True)])
    return {"dim": dim, "samples_per_s": batch_size / step_s, "step_ms": step_s * 1e3,
            **{f"{k}_ms": v * 1e3 for k, v in medians.items()},
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "nnz_per_text": float(corpus.offsets[-1] / len(corpus))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--dims", type=int, nargs="+", default=[64, 256, 1000])
    parser.add_argument("--vocab-size", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child process's size
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(one_size(args.features, args.one, args.vocab_size, args.batch_size,
                                  args.steps, args.warmup)))
        return
    print(f"|V| {args.vocab_size:,}, batch {args.batch_size}, {torch.get_num_threads()} threads, "
          f"median of {args.steps} steps after {args.warmup}; sparse_distill at "
          f"{code_version()}")
    print("| d | parameters | samples/s | step ms | gather | forward | backward | SparseAdam | "
          "AdamW | peak RSS GiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for dim in args.dims:
        proc = subprocess.run([sys.executable, __file__, "--features", str(args.features),
                               "--vocab-size", str(args.vocab_size), "--batch-size",
                               str(args.batch_size), "--steps", str(args.steps), "--warmup",
                               str(args.warmup), "--one", str(dim)],
                              capture_output=True, text=True, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        params = args.vocab_size * dim + dim * dim + dim + 2 * dim + 2
        print(f"| {dim} | {params:,} | {r['samples_per_s']:,.0f} | {r['step_ms']:.0f} | "
              f"{r['gather_ms']:.0f} | {r['forward_ms']:.0f} | {r['backward_ms']:.0f} | "
              f"{r['sparse_step_ms']:.0f} | {r['dense_step_ms']:.0f} | {r['peak_rss_gib']:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
