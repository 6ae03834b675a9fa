"""The compiled featuriser at HEAD against itself at an older commit, and against scikit-learn.

    python scripts/featurizer_ab.py --ref 1f492c5 rt trec 20ng --zh zh-reviews

For each English data set (train + dev + test texts of `$SDISTILL_CACHE/data/NAME`, the run's
vocabulary `runs/NAME/vocab` where it exists, else one counted from train) both builds featurise
the same texts on one thread, their rounds interleaved in one process; the figure is each one's
median texts/s and their ratio, after checking that they give the same ids. For `--zh` the
scripts rule at HEAD is timed against scikit-learn's `CountVectorizer.transform` with the rule's
reference pattern (the same ids, checked). The old build is compiled from `git show
REF:sparse_distill/inference/_ngrams.c` into a temporary folder.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from sparse_distill.files import default_cache_dir
from sparse_distill.inference import _ngrams
from sparse_distill.inference.featurize import Vocabulary
from sparse_distill.inference.tokens import scripts_pattern
from sparse_distill.training.config import VocabConfig
from sparse_distill.training.vocab import count_ngrams, select_vocabulary

ROOT = Path(__file__).resolve().parent.parent


def build_old(ref: str, workdir: Path) -> Any:
    """The extension as it was at `ref`, compiled here and loaded under its own path."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:sparse_distill/inference/"
                             "_ngrams.c"], check=True, capture_output=True, text=True).stdout
    (workdir / "_ngrams.c").write_text(source)
    (workdir / "setup.py").write_text(
        "from setuptools import Extension, setup\n"
        "setup(name='old', ext_modules=[Extension('_ngrams', ['_ngrams.c'])])\n")
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=workdir,
                   check=True, capture_output=True)
    path = next(workdir.glob("_ngrams*.so"))
    loader = importlib.machinery.ExtensionFileLoader("_ngrams", str(path))
    spec = importlib.util.spec_from_file_location("_ngrams", path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def texts_of(name: str) -> tuple[list[str], list[str]]:
    """(train texts, train + dev + test texts) of a fetched data set."""
    folder = default_cache_dir() / "data" / name
    splits = {s: [json.loads(line)["text"] for line in
                  (folder / f"{s}.jsonl").read_text(encoding="utf-8").splitlines()]
              for s in ("train", "dev", "test")}
    return splits["train"], splits["train"] + splits["dev"] + splits["test"]


def vocabulary(name: str, train: list[str], tokens: str) -> Vocabulary:
    run = ROOT / "runs" / name / "vocab"
    if run.is_dir():
        return Vocabulary.load(run)
    cfg = VocabConfig(max_features=1_000_000, tokens=tokens)
    return select_vocabulary(count_ngrams(train, cfg), cfg)


def interleaved(calls: dict[str, Any], rounds: int) -> dict[str, float]:
    """Median seconds of each call, the calls taking turns round after round."""
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("datasets", nargs="*", default=["rt", "trec", "20ng"])
    parser.add_argument("--ref", required=True, help="the older commit")
    parser.add_argument("--zh", default=None, help="a data set in an unspaced script")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    print("| data set | texts | HEAD texts/s | texts/s at the old commit | HEAD / old |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        old = build_old(args.ref, Path(tmp))
        for name in args.datasets:
            train, texts = texts_of(name)
            vocab = vocabulary(name, train, "words")
            lo, hi = vocab.ngram_range
            new_index = _ngrams.Index(vocab.ngrams, lo, hi, vocab.lowercase)
            old_index = old.Index(vocab.ngrams, lo, hi, vocab.lowercase)
            a, b = new_index.featurize(texts), old_index.featurize(texts)
            assert all(bytes(x) == bytes(y) for x, y in zip(a, b, strict=True)), name
            sec = interleaved({"new": lambda i=new_index, t=texts: i.featurize(t),
                               "old": lambda i=old_index, t=texts: i.featurize(t)}, args.rounds)
            print(f"| {name} | {len(texts):,} | {len(texts) / sec['new']:,.0f} | "
                  f"{len(texts) / sec['old']:,.0f} | {sec['old'] / sec['new']:.3f} |")
    if args.zh:
        from sklearn.feature_extraction.text import CountVectorizer

        train, texts = texts_of(args.zh)
        vocab = vocabulary(args.zh, train, "scripts")
        assert vocab.tokens == "scripts", f"{args.zh}: its vocabulary is not of the scripts rule"
        lo, hi = vocab.ngram_range
        index = _ngrams.Index(vocab.ngrams, lo, hi, vocab.lowercase, scripts=True)
        sk = CountVectorizer(vocabulary=vocab.ngrams, ngram_range=(lo, hi),
                             lowercase=vocab.lowercase, token_pattern=scripts_pattern())
        ids = np.frombuffer(index.featurize(texts)[0], dtype=np.int32)
        assert np.array_equal(ids, sk.transform(texts).indices), args.zh
        sec = interleaved({"compiled": lambda: index.featurize(texts),
                           "scikit-learn": lambda: sk.transform(texts)}, max(3, args.rounds // 3))
        print(f"\n{args.zh} ({len(texts):,} texts, {len(vocab):,} n-grams, scripts rule, one "
              f"thread): compiled {len(texts) / sec['compiled']:,.0f} texts/s, scikit-learn "
              f"CountVectorizer with the rule's pattern {len(texts) / sec['scikit-learn']:,.0f}:"
              f" {sec['scikit-learn'] / sec['compiled']:.1f}x, the same ids")


if __name__ == "__main__":
    main()
