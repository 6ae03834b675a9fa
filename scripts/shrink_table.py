"""Issue 15's table: a student against its shrunk copies (`sdistill shrink`), per data set.

For each `--data NAME=STUDENT_DIR`, the student is shrunk into `--work` as: 10% of its n-grams,
3%, an int8 table, 10% + int8 and 33% + int8 (the most frequent n-grams first), and exported to
numpy and ONNX (`sdistill export`, run by `portable.NumpyStudent` / `OnnxStudent`). Each
variant, the full one included, is then measured in a fresh process (so that memory and load
time are its own): bytes on disk (weights + vocabulary), RSS after loading and after a first
batch, load time (`load`, after the imports), test accuracy on
$SDISTILL_CACHE/data/NAME/test.jsonl, agreement with the full student's labels, and end-to-end
texts/s (the benchmark's `throughput`: the fastest of batch 32 / 128 / 1024, median of 3, on the
test texts repeated to at least 20,000).

Run:
    SDISTILL_CACHE=/tmp/sdc python scripts/shrink_table.py --data rt=runs/rt/student \\
        --data trec=runs/trec/student --work /tmp/shrunk
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from benchutil import code_version

from sparse_distill.export import export
from sparse_distill.shrink import directory_bytes, shrink

# 33%: the largest share of rows whose int8 table (264 of 1,024 bytes a row at d 256) and
# vocabulary stay within 10% of the full student's bytes.
VARIANTS = {"full": None, "10% of rows": {"keep_share": 0.1}, "3% of rows": {"keep_share": 0.03},
            "int8": {"dtype": "int8"}, "10% + int8": {"keep_share": 0.1, "dtype": "int8"},
            "33% + int8": {"keep_share": 0.33, "dtype": "int8"}}
EXPORTS = {"numpy export of full": "numpy", "onnx export of full": "onnx"}
LOADERS = {"torch": "sparse_distill.model:Student", "numpy": "sparse_distill.portable:NumpyStudent",
           "onnx": "sparse_distill.portable:OnnxStudent"}

CHILD = """
import importlib, json, sys, time
module, name = sys.argv[3].split(":")
Student = getattr(importlib.import_module(module), name)
t0 = time.perf_counter()
student = Student.load(sys.argv[1])
load_s = time.perf_counter() - t0
def rss():
    with open("/proc/self/status") as f:
        return int(next(x for x in f if x.startswith("VmRSS:")).split()[1]) / 2**20
rss_load = rss()
rows = [json.loads(x) for x in open(sys.argv[2], encoding="utf-8") if x.strip()]
texts, gold = [r["text"] for r in rows], [str(r["label"]) for r in rows]
pred = student.predict(texts)
rss_first = rss()
from sparse_distill.benchmark import throughput
many = texts * -(-20000 // len(texts))
rate, bs = throughput(student.predict, many, [32, 128, 1024], 3)
print(json.dumps({"load_s": load_s, "rss_load": rss_load, "rss_first": rss_first,
                  "accuracy": sum(p == g for p, g in zip(pred, gold)) / len(gold),
                  "pred": pred, "rate": rate, "batch": bs}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", action="append", required=True, metavar="NAME=STUDENT_DIR")
    parser.add_argument("--work", type=Path, required=True)
    args = parser.parse_args()
    cache = Path(os.environ.get("SDISTILL_CACHE", Path.home() / ".cache" / "sparse-distill"))
    print(f"sparse_distill at {code_version()}")
    for spec in args.data:
        name, student_dir = spec.split("=", 1)
        test = cache / "data" / name / "test.jsonl"
        print(f"\n### {name}\n")
        print("| student | bytes on disk | share | RSS after load / first batch GiB | load s "
              "| test accuracy | share of full | agreement with full | texts/s (batch) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        full = None
        for variant in [*VARIANTS, *EXPORTS]:
            directory = Path(student_dir)
            slug = args.work / f"{name}-{variant.replace('%', '').replace(' ', '')}"
            loader = LOADERS["torch"]
            if VARIANTS.get(variant) is not None:
                directory = slug
                shrink(student_dir, directory, force=True, **VARIANTS[variant])
            elif variant in EXPORTS:
                directory = slug
                export(student_dir, directory, EXPORTS[variant], force=True)
                loader = LOADERS[EXPORTS[variant]]
            r = json.loads(subprocess.run([sys.executable, "-c", CHILD, str(directory),
                                           str(test), loader], capture_output=True, text=True,
                                          check=True).stdout.splitlines()[-1])
            size = directory_bytes(directory) if variant not in EXPORTS else sum(
                f.stat().st_size for f in directory.rglob("*") if f.is_file())
            full = full or {**r, "bytes": size}
            agree = sum(a == b for a, b in zip(r["pred"], full["pred"], strict=True)) / len(
                r["pred"])
            print(f"| {variant} | {size / 2**20:,.1f} MiB | {size / full['bytes']:.1%} | "
                  f"{r['rss_load']:.2f} / {r['rss_first']:.2f} | {r['load_s']:.2f} | "
                  f"{r['accuracy']:.4f} | {r['accuracy'] / full['accuracy']:.3f} | "
                  f"{agree:.4f} | {r['rate']:,.0f} ({r['batch']}) |", flush=True)


if __name__ == "__main__":
    main()
