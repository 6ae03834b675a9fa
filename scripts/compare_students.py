"""End-to-end texts/s of several students on the same texts, in one process, as ratios to the
first: what an option (buckets, sub-words, a shrunk table) costs in speed.

Each student predicts every text of `--texts` (a jsonl with a "text" field, repeated to at least
`--min-texts` texts) at `--batch-size`; the runs are interleaved, `--repeats` rounds, and the
median rate of each is reported with its table rows, its load time (with a first batch) and the
memory it added to the process.

Run:
    python scripts/compare_students.py --texts $SDISTILL_CACHE/data/rt/test.jsonl \\
        --student "no buckets=runs/rt-aug-init/student" --student "buckets=runs/rt-bk/student"
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from benchutil import code_version

from sparse_distill.model import Student


def rss_gib() -> float:
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", required=True)
    parser.add_argument("--student", action="append", required=True, metavar="NAME=DIR")
    parser.add_argument("--min-texts", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with open(args.texts, encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()]
    texts = texts * -(-args.min_texts // len(texts))
    students, loads, rss = {}, {}, {}
    for spec in args.student:
        name, directory = spec.split("=", 1)
        before, t0 = rss_gib(), time.perf_counter()
        students[name] = Student.load(directory)
        students[name].predict(texts[:args.batch_size])  # the table's pages come in
        loads[name] = time.perf_counter() - t0
        rss[name] = rss_gib() - before
    batches = [texts[i:i + args.batch_size] for i in range(0, len(texts), args.batch_size)]
    rates: dict[str, list[float]] = {name: [] for name in students}
    for _ in range(args.repeats):
        for name, student in students.items():
            t0 = time.perf_counter()
            for batch in batches:
                student.predict(batch)
            rates[name].append(len(texts) / (time.perf_counter() - t0))
    print(f"{len(texts):,} texts from {args.texts}, batch {args.batch_size}, median of "
          f"{args.repeats} interleaved rounds; sparse_distill at {code_version()}")
    print("| student | table rows | load + first batch s | RSS added GiB | texts/s "
          "| ratio to first |")
    print("|---|---:|---:|---:|---:|---:|")
    first = statistics.median(next(iter(rates.values())))
    for name, student in students.items():
        rate = statistics.median(rates[name])
        print(f"| {name} | {student.model.embedding.weight.shape[0]:,} | {loads[name]:.2f} | "
              f"{rss[name]:.2f} | {rate:,.0f} | {rate / first:.3f} |")


if __name__ == "__main__":
    main()
