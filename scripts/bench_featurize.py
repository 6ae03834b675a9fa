"""Featuriser throughput: `Featurizer(vocab)(texts)` beside scikit-learn's own transform.

What it measures, in one process, on the real texts of two data sets (train + dev + test):

* short texts: Rotten Tomatoes (`$SDISTILL_CACHE/data/rt`), one-sentence reviews;
* long texts: 20 Newsgroups (`$SDISTILL_CACHE/data/20ng`), whole posts.

For each, with a vocabulary built by the library with the default vocab settings (n-grams 1-4,
max_features 1,000,000) on the data set's train texts + the general pool, it times

* (a) `vocab.vectorizer()`, fitted once with `.fit([])`, then `.transform(texts)` alone;
* (b) `Featurizer(vocab)(texts)`: the same transform plus the conversion to flat ids / offsets /
  weights (the EmbeddingBag inputs);
* (analyze) scikit-learn's analyzer alone (text -> list of n-grams), to show where time goes;

each warmed up once, then the median of `--repeats` runs (a and b alternate, so drift hits both).
It reports texts/s for (a) and (b) and their ratio (b)/(a), and asserts that the `Bag` holds
exactly the content of the CSR matrix (ids == indices, offsets == indptr, weights == data).

The vocabularies are built by the real stage (`build_vocab`) into `--work/featurize-<name>` and
reused while their inputs and config are unchanged; `--vocab-rt DIR` / `--vocab-20ng DIR` load an
existing vocabulary directory (e.g. `RUN/vocab`) instead.

Run:
    SDISTILL_CACHE=/tmp/sdc python scripts/bench_featurize.py --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from benchutil import code_version, read_jsonl_texts
from scipy import sparse

from sparse_distill.config import config_from_dict
from sparse_distill.errors import StageError
from sparse_distill.vocab import Bag, Featurizer, Vocabulary, build_vocab

DATASETS = {"rt": "short", "20ng": "long"}


@dataclass
class Result:
    name: str
    kind: str
    n_texts: int
    mean_chars: float
    vocab_size: int
    nnz: int
    ngrams: int  # n-grams produced by the analyzer (before the vocabulary lookup)
    setup_s: float  # Featurizer(vocab): building the vectorizer and its fit([])
    analyze_s: float
    transform_s: float
    featurize_s: float

    @property
    def transform_tps(self) -> float:
        return self.n_texts / self.transform_s

    @property
    def featurize_tps(self) -> float:
        return self.n_texts / self.featurize_s


def load_or_build_vocab(name: str, cache: Path, work: Path, vocab_dir: Path | None) -> Vocabulary:
    """An existing vocab directory, else the real vocab stage on train + the general pool."""
    if vocab_dir is not None:
        return Vocabulary.load(vocab_dir)
    cfg = config_from_dict({
        "run": {"dir": str(work / f"featurize-{name}")},
        "data": {"train": {"path": str(cache / "data" / name / "train.jsonl")},
                 "unlabeled": [{"path": str(cache / "data" / "pool-general" / "pool.txt")}]},
    })  # vocab: the defaults (n-grams 1-4, max_features 1,000,000)
    start = time.perf_counter()
    try:
        result = build_vocab(cfg)
    except StageError:  # built by another version of the settings: the dir is ours, rebuild it
        result = build_vocab(cfg, force=True)
    state = "up to date, reused" if result.skipped else \
        f"built in {time.perf_counter() - start:.0f} s"
    print(f"[{name}] vocab {result.output}: {state}", file=sys.stderr)
    return Vocabulary.load(result.output)


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def fmt(seconds: list[float]) -> str:
    return " ".join(f"{s:.2f}" for s in seconds)


def check_equal(bag: Bag, matrix: sparse.csr_matrix, n_texts: int, vocab_size: int) -> None:
    """The Bag holds exactly the CSR content, in the documented dtypes, ids sorted per text."""
    assert matrix.shape == (n_texts, vocab_size), matrix.shape
    assert len(bag) == n_texts
    assert bag.ids.dtype == np.int32 and bag.offsets.dtype == np.int64, \
        (bag.ids.dtype, bag.offsets.dtype)
    assert bag.weights.dtype == np.float32, bag.weights.dtype
    assert np.array_equal(bag.offsets, matrix.indptr), "offsets != indptr"
    assert np.array_equal(bag.ids, matrix.indices), "ids != indices"
    assert np.array_equal(bag.weights, matrix.data), "weights != data"
    assert matrix.has_sorted_indices
    assert (bag.to_csr(vocab_size) != matrix).nnz == 0


def bench(name: str, texts: list[str], vocab: Vocabulary, repeats: int) -> Result:
    vectorizer = vocab.vectorizer().fit([])
    start = time.perf_counter()
    featurizer = Featurizer(vocab)
    setup_s = time.perf_counter() - start
    analyze = vectorizer.build_analyzer()

    # Warm-up (also the equality check and the counts for the table).
    matrix = vectorizer.transform(texts)
    bag = featurizer(texts)
    check_equal(bag, matrix, len(texts), len(vocab))
    ngrams = sum(len(analyze(t)) for t in texts)

    transform, featurize, analyzed = [], [], []
    for _ in range(repeats):
        transform.append(timed(lambda: vectorizer.transform(texts)))
        featurize.append(timed(lambda: featurizer(texts)))
        analyzed.append(timed(lambda: [analyze(t) for t in texts]))
    print(f"[{name}] seconds per run: transform {fmt(transform)}, featurize {fmt(featurize)}, "
          f"analyze {fmt(analyzed)}", file=sys.stderr)
    return Result(name=name, kind=DATASETS[name], n_texts=len(texts),
                  mean_chars=sum(map(len, texts)) / len(texts), vocab_size=len(vocab),
                  nnz=int(matrix.nnz), ngrams=ngrams, setup_s=setup_s,
                  analyze_s=statistics.median(analyzed),
                  transform_s=statistics.median(transform),
                  featurize_s=statistics.median(featurize))


def table(results: list[Result], repeats: int) -> str:
    rows = [
        "| texts | n | mean chars | n-grams/text | nnz/text | vocab | (a) transform texts/s "
        "| (b) Featurizer texts/s | (b)/(a) | analyzer share of (a) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        rows.append(
            f"| {r.name} ({r.kind}) | {r.n_texts:,} | {r.mean_chars:,.0f} "
            f"| {r.ngrams / r.n_texts:,.1f} | {r.nnz / r.n_texts:,.1f} | {r.vocab_size:,} "
            f"| {r.transform_tps:,.0f} | {r.featurize_tps:,.0f} "
            f"| {r.featurize_tps / r.transform_tps:.3f} | {r.analyze_s / r.transform_s:.0%} |")
    rows.append("")
    rows.append(f"Median of {repeats} runs after one warm-up. Seconds per pass: "
                + "; ".join(f"{r.name}: (a) {r.transform_s:.2f}, (b) {r.featurize_s:.2f}, "
                            f"analyzer {r.analyze_s:.2f}, Featurizer setup {r.setup_s:.2f}"
                            for r in results) + ".")
    rows.append("Content check: Bag ids/offsets/weights == CSR indices/indptr/data: passed.")
    rows.append(f"sparse_distill at {code_version()}.")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=os.environ.get("SDISTILL_CACHE"),
                        help="data cache dir holding data/rt, data/20ng, data/pool-general "
                             "(default: $SDISTILL_CACHE)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after the warm-up "
                                                               "(median reported; >= 3)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench"),
                        help="where the built vocabularies go (default: /tmp/bench)")
    parser.add_argument("--vocab-rt", type=Path, help="load this vocab dir for rt instead")
    parser.add_argument("--vocab-20ng", type=Path, help="load this vocab dir for 20ng instead")
    parser.add_argument("--only", choices=sorted(DATASETS), action="append",
                        help="bench only this data set (repeatable)")
    args = parser.parse_args(argv)
    if args.cache is None:
        parser.error("--cache is required when $SDISTILL_CACHE is not set")
    if args.repeats < 3:
        parser.error("--repeats must be >= 3")

    results = []
    for name in args.only or list(DATASETS):
        texts = [t for split in ("train", "dev", "test")
                 for t in read_jsonl_texts(args.cache / "data" / name / f"{split}.jsonl")]
        vocab_dir = {"rt": args.vocab_rt, "20ng": args.vocab_20ng}[name]
        vocab = load_or_build_vocab(name, args.cache, args.work, vocab_dir)
        results.append(bench(name, texts, vocab, args.repeats))
        del vocab
    print(table(results, args.repeats))


if __name__ == "__main__":
    main()
