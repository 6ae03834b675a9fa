"""The teacher's fine-tuning rate against its dev accuracy: run it, then tabulate it.

    python scripts/teacher_lr.py run benchmarks/defaults-trec.yaml --lr 2e-5 5e-5 1e-4 \
        --seeds 13 1 --out runs/teacher-lr/trec
    python scripts/teacher_lr.py table runs/teacher-lr/trec runs/teacher-lr/rt ...

`run` fine-tunes and evaluates the config's teacher at each rate and seed with `sdistill teach`,
labelling only the training texts (no pool, no perturbed copies: what is compared is the
teacher, and labelling the pool would take most of the time), each into OUT/lr-LR-seed-SEED.
`table` prints, per folder, each run's dev accuracy after each epoch (Trainer's evaluation), the
stage's own dev and test accuracy of the epoch it kept (the best by dev), and the fine-tuning
time, read from the teachers' manifests, as Markdown.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def run(config: str, rates: list[str], seeds: list[int], out: Path) -> None:
    for seed in seeds:
        for lr in rates:
            target = out / f"lr-{lr}-seed-{seed}"
            if (target / "teacher" / "manifest.json").is_file():
                continue
            subprocess.run(["sdistill", "teach", config, "--set", f"run.dir={target}",
                            "--set", f"teacher.lr={float(lr)!r}", "--set", f"run.seed={seed}",
                            "--set", "data.unlabeled=[]", "--set", "data.augment.copies=0"],
                           check=True)


def rows(folder: Path) -> list[dict[str, Any]]:
    found = []
    for manifest in sorted(folder.glob("*/teacher/manifest.json")):
        m = json.loads(manifest.read_text(encoding="utf-8"))
        ft = m["finetune"]
        found.append({"run": manifest.parent.parent.name, "lr": m["config"]["teacher"]["lr"],
                      "seed": m["seed"],
                      "epochs": [e["accuracy"] for e in ft["dev_by_epoch"]],
                      "dev": m["eval"]["dev"]["accuracy"], "test": m["eval"]["test"]["accuracy"],
                      "minutes": ft["seconds"] / 60})
    return sorted(found, key=lambda r: (float(r["lr"]), r["seed"]))


def table(folders: list[Path]) -> str:
    lines = ["| set | lr | seed | dev after each epoch | dev, the kept epoch | test | fine-tune |",
             "|---|---|---:|---|---:|---:|---:|"]
    for folder in folders:
        for r in rows(folder):
            lines.append(f"| {folder.name} | {float(r['lr']):.0e} | {r['seed']} | "
                         + " / ".join(f"{a:.4f}" for a in r["epochs"])
                         + f" | {r['dev']:.4f} | {r['test']:.4f} | {r['minutes']:.1f} min |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("config")
    r.add_argument("--lr", nargs="+", required=True)
    r.add_argument("--seeds", nargs="+", type=int, default=[13])
    r.add_argument("--out", type=Path, required=True)
    t = sub.add_parser("table")
    t.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args(argv)
    if args.command == "run":
        run(args.config, args.lr, args.seeds, args.out)
    else:
        print(table(args.folders))


if __name__ == "__main__":
    main(sys.argv[1:])
