"""The student's inference path, measured: what each choice of the lean path costs or buys.

On a trained student directory and a data set's test texts (`$SDISTILL_CACHE/data/NAME`), in
one process:

1. end-to-end texts/s at batch 1024 (`Student.predict`) on the student's threads (every usable
   CPU, each thread featurising and classifying a chunk, torch on one thread meanwhile) and on
   one thread, beside the model alone on inputs made beforehand (the same chunks on the same
   threads), each the median of --repeats after a warm-up;
2. the MLP under bf16 autocast against fp32 on this CPU: model-only and end-to-end texts/s, and
   the labels' agreement with fp32 on the test split of every --data set given (whether the CPU
   computes bf16 natively is printed);
3. batch-1 latency through the Python API (`Student.predict([text])`): p50 and p99 over
   --latency-calls calls, texts cycling through the test split;
4. `predict_file` on a text file of --file-texts lines (test + pool texts cycled, written once to
   --work), to a jsonl file: texts/s, beside `Student.predict` alone on the same texts in the same
   batches, so that reading and writing jsonl can be seen not to be the bottleneck.

Run:
    SDISTILL_CACHE=/tmp/sdc python scripts/bench_inference.py runs/rt/student --data rt
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from benchutil import code_version, read_jsonl_texts

from sparse_distill.evaluation import median_rate
from sparse_distill.model import Student
from sparse_distill.predict import predict_file
from sparse_distill.teacher import bf16_native


def batches(texts: list[str], size: int) -> list[list[str]]:
    return [texts[i:i + size] for i in range(0, len(texts), size)]


def throughput(student: Student, texts: list[str], repeats: int, bs: int = 1024) -> float:
    chunks = batches(texts, bs)
    return median_rate(lambda: [student.predict(c) for c in chunks], len(texts), repeats)


def model_only(student: Student, texts: list[str], repeats: int, bs: int = 1024) -> float:
    prepared = [[student.tensors(c) for c in student.chunks(b, bs)] for b in batches(texts, bs)]

    def run() -> None:
        for inputs in prepared:
            np.concatenate(student.map(student.forward, inputs)).argmax(axis=1)

    return median_rate(run, len(texts), repeats)


def bf16_model(student: Student) -> None:
    """Run the student's MLP under CPU bf16 autocast (the table and the pooling stay fp32)."""
    mlp = student.model._mlp

    def autocast_mlp(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return mlp(x).float()

    student.model._mlp = autocast_mlp  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("student", type=Path)
    parser.add_argument("--data", action="append", required=True,
                        help="data set(s) whose test texts to use; the first is timed")
    parser.add_argument("--cache", type=Path, default=os.environ.get("SDISTILL_CACHE"))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--latency-calls", type=int, default=5000)
    parser.add_argument("--file-texts", type=int, default=1_000_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench/inference"))
    args = parser.parse_args(argv)
    if args.cache is None:
        parser.error("--cache is required when $SDISTILL_CACHE is not set")
    out: list[str] = []

    def say(line: str) -> None:
        print(line, file=sys.stderr)
        out.append(line)

    student = Student.load(args.student)
    tests = {name: read_jsonl_texts(args.cache / "data" / name / "test.jsonl")
             for name in args.data}
    # Enough texts that batches of 1024 keep every thread busy.
    texts = (tests[args.data[0]] * (8192 // len(tests[args.data[0]]) + 1))[:8192]
    say(f"{args.student}, {args.data[0]} test texts cycled to {len(texts):,}, torch "
        f"{torch.get_num_threads()} threads, student {student.threads} threads; native bf16: "
        f"{bf16_native(torch.device('cpu'))}")

    # 1. threads
    e2e = throughput(student, texts, args.repeats)
    model = model_only(student, texts, args.repeats)
    one = Student.load(args.student, threads=1)
    e2e_one = throughput(one, texts, args.repeats)
    say(f"batch 1024: end to end {e2e:,.0f} texts/s (on one thread: {e2e_one:,.0f}); model "
        f"only {model:,.0f}; end to end / model only {e2e / model:.0%}")

    # 2. bf16 MLP
    fp32 = {name: student.predict(t) for name, t in tests.items()}
    bf16 = Student.load(args.student)
    bf16_model(bf16)
    agree = {name: float(np.mean(np.asarray(bf16.predict(t)) == np.asarray(fp32[name])))
             for name, t in tests.items()}
    say(f"MLP in bf16 autocast: model only {model_only(bf16, texts, args.repeats):,.0f} texts/s "
        f"(fp32 {model:,.0f}), end to end {throughput(bf16, texts, args.repeats):,.0f} "
        f"(fp32 {e2e:,.0f}); labels equal to fp32's on "
        + ", ".join(f"{n} {a:.2%}" for n, a in agree.items()))

    # 3. batch-1 latency
    student.predict(texts[:10])
    lat = np.empty(args.latency_calls)
    for i in range(args.latency_calls):
        text = [texts[i % len(texts)]]
        start = time.perf_counter()
        student.predict(text)
        lat[i] = time.perf_counter() - start
    say(f"batch 1, Student.predict([text]) over {args.latency_calls:,} calls: p50 "
        f"{1e6 * np.percentile(lat, 50):.0f} us, p99 {1e6 * np.percentile(lat, 99):.0f} us, "
        f"max {1e6 * lat.max():.0f} us")

    # 4. predict_file on a large file
    args.work.mkdir(parents=True, exist_ok=True)
    source = args.work / f"texts-{args.file_texts}.txt"
    if not source.is_file():
        pool = (args.cache / "data" / "pool-general" / "pool.txt").read_text(
            encoding="utf-8").splitlines()
        lines = (texts + pool) * (args.file_texts // (len(texts) + len(pool)) + 1)
        tmp = source.with_suffix(".tmp")
        tmp.write_text("\n".join(lines[:args.file_texts]) + "\n", encoding="utf-8")
        os.replace(tmp, source)
    target = args.work / "predictions.jsonl"
    start = time.perf_counter()
    stats = predict_file(student, str(source), str(target), force=True)
    file_s = time.perf_counter() - start
    all_texts = source.read_text(encoding="utf-8").splitlines()
    start = time.perf_counter()
    for chunk in batches(all_texts, 1024):
        student.predict_proba(chunk)
    alone_s = time.perf_counter() - start
    say(f"predict_file: {stats.predicted:,} texts from {source.name} to jsonl "
        f"({target.stat().st_size / 2**20:,.0f} MiB) in {file_s:.1f} s: "
        f"{stats.predicted / file_s:,.0f} texts/s; predict_proba alone on the same texts in the "
        f"same batches {len(all_texts) / alone_s:,.0f} texts/s ({alone_s / file_s:.0%} of the "
        f"file's time)")
    print("\n".join([*out, f"sparse_distill at {code_version()}."]))


if __name__ == "__main__":
    main()
