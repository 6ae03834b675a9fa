"""Issue 13's ablation: students of one data set, each from its own run directory, side by side.

For each `--run NAME=RUN_DIR`, in one process: the teacher's test accuracy (its stage manifest),
the student's dev accuracy (its manifest) and test accuracy, retention (student / teacher test
accuracy), accuracy on the quarter of test texts with the most n-grams the vocabulary lacks
(`sparse_distill.evaluation.oov_rates`), the student stage's minutes, and the student's
end-to-end texts/s on the first 1,000 test texts at the benchmark's batch sizes (the benchmark's
`throughput`: the fastest, median of 3). Prints a markdown table.

Run:
    SDISTILL_CACHE=/tmp/sdc python scripts/ablation.py --data rt \
        --run "recipe=runs/rt-auto" --run "teacher init=runs/rt-init"
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
from benchutil import code_version

from sparse_distill.benchmark import throughput
from sparse_distill.evaluation import oov_quartile, oov_rates
from sparse_distill.model import Student


def read_split(path: Path) -> tuple[list[str], list[str]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [r["text"] for r in rows], [str(r["label"]) for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="data set under $SDISTILL_CACHE/data")
    parser.add_argument("--run", action="append", required=True, metavar="NAME=RUN_DIR")
    args = parser.parse_args()
    cache = Path(os.environ.get("SDISTILL_CACHE", Path.home() / ".cache" / "sparse-distill"))
    texts, gold = read_split(cache / "data" / args.data / "test.jsonl")
    print(f"code {code_version()}, test {args.data}: {len(texts):,} texts\n")
    print("| student | teacher test | dev | test | retention | most-unseen quarter | "
          "student stage | texts/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for spec in args.run:
        name, run_dir = spec.split("=", 1)
        run = Path(run_dir)
        teacher = json.loads((run / "teacher" / "manifest.json").read_text())["eval"]["test"]
        manifest = json.loads((run / "student" / "manifest.json").read_text())
        results = manifest["results"]
        dev = results.get("kd_ft", results["kd"])["dev_accuracy"]
        student = Student.load(run / "student")
        pred = student.predict(texts)
        acc = float(np.mean(np.asarray(pred) == np.asarray(gold)))
        worst = oov_quartile(oov_rates(student.featurizer.vocab, texts), gold, {"s": pred})
        rate, bs = throughput(student.predict, texts[:1000], [32, 128, 1024], 3)
        print(f"| {name} | {teacher['accuracy']:.4f} | {dev:.4f} | {acc:.4f} | "
              f"{acc / teacher['accuracy']:.3f} | {worst['s']:.4f} | "
              f"{manifest['timings']['total_s'] / 60:.1f} min | {rate:,.0f} (batch {bs}) |",
              flush=True)


if __name__ == "__main__":
    main()
