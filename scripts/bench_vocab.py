r"""Vocab stage at scale: wall time and peak memory of `sdistill vocab` on a 1,000,000-text pool.

What it does:

1. Makes a 1,000,000-text unlabelled corpus from real text (Rotten Tomatoes train reviews and plot
   summaries + the general-English pool sentences; rt dev/test are left out, so no held-out text
   leaks into the pool) and writes it to `--work/pool-1m.txt`, one text a line. The sources are
   cycled: the first copy of each text is the text itself, every later copy is perturbed with a
   fixed numpy seed: the word order is shuffled within a random window of 4 words, one random word
   is dropped (half the time), and one random position gets a random word of the corpus (drawn by
   corpus frequency). The lines are then shuffled. It is reused while its parameters are unchanged
   (`--regenerate` rebuilds it).
2. Runs the real stage as a subprocess, `/usr/bin/time -v sdistill vocab CONFIG --force`, with
   train = rt train (dev/test = rt dev/test for the leakage guard) and unlabelled = the 1M file:
   once with the default `vocab.max_candidates` (20,000,000) and once with
   `--set vocab.max_candidates=5000000`, to show memory bounded by pruning; once with the default
   token pattern spelt `(?u)\b\w{2,}\b`, which the compiled counter does not take, so that
   scikit-learn's analyzer and a Counter of strings count it (the counter the compiled one
   replaced: the two vocabularies must be identical); and once on the plain `configs/rt.yaml`
   (rt train + plot + pool-general) with `--set run.dir=--work/rt`.
3. Reports, per run: wall time, peak RSS ("Maximum resident set size"), texts counted, distinct
   n-grams held at the end of counting, prunings (and so whether the counts are exact), vocabulary
   size, from RUN/vocab/manifest.json; and how many of the pruned runs' n-grams are also in the
   exact/default run's vocabulary.

Run (the 1M runs take minutes each; logs go to --work/logs):
    SDISTILL_CACHE=/tmp/sdc python scripts/bench_vocab.py
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from benchutil import REPO, code_version, read_jsonl_texts

WINDOW = 4  # words shuffled together in a perturbed copy
REGEX_SPELLING = r"(?u)\b\w{2,}\b"  # the default token pattern, not recognised as such


@dataclass
class Run:
    name: str
    config: Path
    run_dir: Path
    overrides: list[str]


@dataclass
class Measured:
    run: Run
    wall_s: float
    peak_rss_kib: int
    manifest: dict[str, Any]


def read_lines(path: Path) -> list[str]:
    with path.open(encoding="utf-8") as f:
        return [s for line in f if (s := line.rstrip("\r\n")).strip()]


def perturbed_corpus(sources: list[str], n_texts: int, seed: int) -> list[str]:
    """`n_texts` texts: the sources cycled, each copy after the first one perturbed, shuffled."""
    rng = np.random.default_rng(seed)
    words = [s.split() for s in sources]
    all_words = [w for ws in words for w in ws]  # drawing a position = drawing by frequency
    n_src = len(words)
    # Every random number is drawn in bulk, so the result depends only on the seed and sources.
    perms = np.argsort(rng.random((n_texts, WINDOW)), axis=1)  # a permutation of 0..WINDOW-1
    starts, drops, swaps = rng.random(n_texts), rng.random(n_texts), rng.random(n_texts)
    do_drop = rng.random(n_texts) < 0.5
    fillers = rng.integers(0, len(all_words), n_texts)
    out = []
    for i in range(n_texts):
        ws = words[i % n_src]
        if i < n_src or len(ws) < 2:
            out.append(" ".join(ws))
            continue
        ws = list(ws)
        start = int(starts[i] * max(1, len(ws) - WINDOW + 1))
        window = ws[start:start + WINDOW]
        ws[start:start + len(window)] = [window[j] for j in perms[i] if j < len(window)]
        if do_drop[i]:
            del ws[int(drops[i] * len(ws))]
        ws[int(swaps[i] * len(ws))] = all_words[fillers[i]]
        out.append(" ".join(ws))
    order = rng.permutation(n_texts)
    return [out[j] for j in order]


def make_corpus(cache: Path, path: Path, n_texts: int, seed: int, regenerate: bool) -> None:
    rt = cache / "data" / "rt"
    source_files = [rt / "train.jsonl", rt / "plot.txt",
                    cache / "data" / "pool-general" / "pool.txt"]
    params = {"n_texts": n_texts, "seed": seed, "window": WINDOW,
              "sources": [[str(p), p.stat().st_size] for p in source_files]}
    meta = path.with_suffix(".json")
    if not regenerate and path.is_file() and meta.is_file() and \
            json.loads(meta.read_text()) == params:
        print(f"corpus: reusing {path}", file=sys.stderr)
        return
    start = time.perf_counter()
    sources = read_jsonl_texts(source_files[0]) + read_lines(source_files[1]) + \
        read_lines(source_files[2])
    texts = perturbed_corpus(sources, n_texts, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for text in texts:
            f.write(text.replace("\n", " ").replace("\r", " ") + "\n")
    meta.write_text(json.dumps(params))
    print(f"corpus: {n_texts:,} texts from {len(sources):,} sources -> {path} "
          f"({path.stat().st_size / 2**20:,.0f} MiB) in {time.perf_counter() - start:.0f} s",
          file=sys.stderr)


def write_config(cache: Path, corpus: Path, path: Path, run_dir: Path) -> None:
    rt = cache / "data" / "rt"
    cfg = {"run": {"dir": str(run_dir), "seed": 13},
           "data": {"train": {"path": str(rt / "train.jsonl"), "text": "text", "label": "label"},
                    "dev": {"path": str(rt / "dev.jsonl")},
                    "test": {"path": str(rt / "test.jsonl")},
                    "unlabeled": [{"path": str(corpus)}]}}  # vocab: the defaults
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def sdistill_command() -> str:
    beside = Path(sys.executable).parent / "sdistill"
    found = str(beside) if beside.is_file() else shutil.which("sdistill")
    if found is None:
        raise SystemExit("sdistill not found: install the package (pip install -e .)")
    return found


def measure(run: Run, cache: Path, logs: Path) -> Measured:
    cmd = ["/usr/bin/time", "-v", sdistill_command(), "vocab", str(run.config), "--force",
           "--set", f"run.dir={run.run_dir}"]
    for item in run.overrides:
        cmd += ["--set", item]
    log = logs / f"{run.name}.log"
    print(f"[{run.name}] {' '.join(cmd)}  (log: {log})", file=sys.stderr)
    env = dict(os.environ, SDISTILL_CACHE=str(cache))
    start = time.perf_counter()
    with log.open("w", encoding="utf-8") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, check=False)
    wall_s = time.perf_counter() - start
    text = log.read_text(encoding="utf-8", errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"[{run.name}] failed (exit {proc.returncode}); see {log}:\n"
                         + text[-3000:])
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    if match is None:
        raise SystemExit(f"[{run.name}] no 'Maximum resident set size' in {log}")
    manifest = json.loads((run.run_dir / "vocab" / "manifest.json").read_text())
    print(f"[{run.name}] {wall_s:.0f} s, peak RSS {int(match.group(1)) / 2**20:.2f} GiB",
          file=sys.stderr)
    return Measured(run, wall_s, int(match.group(1)), manifest)


def load_vocab(run_dir: Path) -> dict[str, int]:
    """n-gram -> its counted corpus frequency, from a run's vocab directory."""
    ngrams = json.loads((run_dir / "vocab" / "vocab.json").read_text())["ngrams"]
    tf = np.load(run_dir / "vocab" / "tf.npy", allow_pickle=False)
    return dict(zip(ngrams, tf.tolist(), strict=True))


def identical(a: Path, b: Path) -> bool:
    """Two runs' vocabularies: the same n-grams in the same id order, with the same tf and df."""
    same = json.loads((a / "vocab" / "vocab.json").read_text())["ngrams"] == \
        json.loads((b / "vocab" / "vocab.json").read_text())["ngrams"]
    return same and all(np.array_equal(np.load(a / "vocab" / f), np.load(b / "vocab" / f))
                        for f in ("tf.npy", "df.npy"))


def compare(exact: dict[str, int], pruned: dict[str, int]) -> str:
    """How far a pruned run's vocabulary is from the exact one (same corpus, same settings)."""
    cut = min(exact.values())  # the tf of the last n-gram that made the exact vocabulary
    missing = [g for g in exact if g not in pruned]
    missing_above = [g for g in missing if exact[g] > cut]
    common = [g for g in exact if g in pruned]
    under = [exact[g] - pruned[g] for g in common if pruned[g] < exact[g]]
    return (f"{len(common):,} of {len(exact):,} n-grams in common; exact vocabulary cut at "
            f"tf {cut}; of the {len(missing):,} missing from the pruned one, "
            f"{len(missing_above):,} have an exact tf above the cut (up to "
            f"{max((exact[g] for g in missing), default=0)}); {len(under):,} common n-grams "
            f"have an under-counted tf (by up to {max(under, default=0)}).")


def table(results: list[Measured]) -> str:
    rows = ["| run | texts counted | max_candidates | wall s | count s | select s | peak RSS GiB "
            "| distinct n-grams counted | prunings | exact | max_undercount | vocab size |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for m in results:
        c = m.manifest["counts"]
        max_candidates = next((o.split("=", 1)[1] for o in m.run.overrides
                               if o.startswith("vocab.max_candidates=")), "20000000 (default)")
        rows.append(
            f"| {m.run.name} | {c['texts']:,} | {max_candidates} | {m.wall_s:.0f} "
            f"| {m.manifest['timings']['count_s']:.0f} "
            f"| {m.manifest['timings'].get('select_s', float('nan')):.0f} "
            f"| {m.peak_rss_kib / 2**20:.2f} "
            f"| {c['distinct_ngrams_counted']:,} | {c['prunings']} | {c['exact']} "
            f"| {c['max_undercount']} | {c['vocab_size']:,} |")
    pools = [f"{m.run.name}: kept {m.manifest['counts']['pool']['kept']:,}, "
             f"{m.manifest['counts']['pool']['duplicates_removed']:,} duplicates and "
             f"{m.manifest['counts']['pool']['leakage_removed']:,} dev/test texts removed"
             for m in results]
    rows += ["", "Unlabelled pool: " + "; ".join(pools) + ".", "",
             f"sparse_distill at {code_version()}."]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=os.environ.get("SDISTILL_CACHE"),
                        help="data cache dir holding data/rt and data/pool-general "
                             "(default: $SDISTILL_CACHE)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench"),
                        help="corpus, configs, run dirs and logs (default: /tmp/bench)")
    parser.add_argument("--n-texts", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--regenerate", action="store_true", help="rebuild the corpus")
    parser.add_argument("--small-candidates", type=int, default=5_000_000,
                        help="vocab.max_candidates of the pruned run (default 5,000,000)")
    parser.add_argument("--only", action="append", choices=["1m", "1m-regex", "1m-small", "rt"],
                        help="run only this one (repeatable)")
    args = parser.parse_args(argv)
    if args.cache is None:
        parser.error("--cache is required when $SDISTILL_CACHE is not set")
    work: Path = args.work
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    corpus = work / "pool-1m.txt"
    config = work / "vocab-1m.yaml"
    runs = {
        "1m": Run("1m", config, work / "vocab-1m", []),
        # The same semantics spelt so that scikit-learn's analyzer and a Counter of strings count
        # it: the counter the compiled one replaced.
        "1m-regex": Run("1m-regex", config, work / "vocab-1m-regex",
                        [f"vocab.token_pattern={REGEX_SPELLING}"]),
        "1m-small": Run("1m-small", config, work / "vocab-1m-small",
                        [f"vocab.max_candidates={args.small_candidates}"]),
        "rt": Run("rt", REPO / "configs" / "rt.yaml", work / "rt", []),
    }
    chosen = args.only or list(runs)
    if {"1m", "1m-regex", "1m-small"} & set(chosen):
        make_corpus(args.cache, corpus, args.n_texts, args.seed, args.regenerate)
        write_config(args.cache, corpus, config, runs["1m"].run_dir)
    results = [measure(runs[name], args.cache, logs) for name in chosen]
    print(table(results))
    done = {m.run.name: m for m in results}
    if "1m" in done and "1m-regex" in done:
        same = identical(runs["1m"].run_dir, runs["1m-regex"].run_dir)
        count_s = {k: done[k].manifest["timings"]["count_s"] for k in ("1m", "1m-regex")}
        print(f"\n1m (compiled counter) vs 1m-regex (scikit-learn's analyzer + a Counter): "
              f"{'the same' if same else 'DIFFERENT'} vocabulary (n-grams in id order, tf, df); "
              f"counting {count_s['1m-regex'] / count_s['1m']:.1f}x faster, the stage "
              f"{done['1m-regex'].wall_s / done['1m'].wall_s:.1f}x")
    if "1m" in done and "1m-small" in done and done["1m"].manifest["counts"]["exact"]:
        print("\n1m-small vs 1m (exact) vocabulary: "
              + compare(load_vocab(runs["1m"].run_dir), load_vocab(runs["1m-small"].run_dir)))


if __name__ == "__main__":
    main()
