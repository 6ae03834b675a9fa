"""`sdistill vocab`: the n-gram vocabulary of train + unlabelled text (`training.vocab`), in
RUN/vocab/ with its manifest."""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable
from pathlib import Path

from ..files import atomic_write_json, staged_dir
from ..training.config import Config
from ..training.data import PoolStats, iter_pool, load_labeled
from ..training.vocab import count_ngrams, select_vocabulary, token_health
from .config import as_config
from .rundir import StageResult, begin_stage, locked, make_manifest, write_resolved_config


@locked
def build_vocab(cfg: Config | str | Path, *, force: bool = False,
                progress: Callable[[int], None] | None = None) -> StageResult:
    """Fit the n-gram vocabulary on train + unlabelled text and write RUN/vocab/.

    `progress` is called with the number of texts of each counted chunk (the CLI shows a bar).
    """
    cfg = as_config(cfg)
    out = cfg.run_dir() / "vocab"
    inputs, fp, done = begin_stage(cfg, "vocab", force)
    if done is not None:
        return done
    start = time.perf_counter()
    labeled = load_labeled(cfg)
    pool = PoolStats()
    texts = itertools.chain(labeled.train.texts, iter_pool(cfg, labeled, pool))
    # `auto` decided once, by the training texts; the vocabulary records the rule it took.
    vocab_cfg = dataclasses.replace(cfg.vocab, tokens=cfg.vocab.token_rule(labeled.train.texts))
    labeled_s = time.perf_counter() - start
    # The pool is read while it is counted: count_s includes reading it.
    counts = count_ngrams(texts, vocab_cfg, on_chunk=progress)
    count_s = time.perf_counter() - start - labeled_s
    vocab = select_vocabulary(counts, vocab_cfg)
    health = token_health(labeled.train.texts, vocab_cfg)
    select_s = time.perf_counter() - start - labeled_s - count_s
    manifest = make_manifest(
        cfg, "vocab", fp, inputs,
        counts={
            "texts": counts.n_docs,
            "train": len(labeled.train.texts),
            "pool": pool.as_dict(),
            "splits": {s.name: s.stats.as_dict() for s in labeled.splits()},
            "distinct_ngrams_counted": len(counts.tf),
            "vocab_size": len(vocab),
            "exact": counts.prunings == 0,
            "prunings": counts.prunings,
            "max_undercount": counts.max_undercount,
            "tokens": health,
        },
        labels=labeled.labels,
        timings={"read_labeled_s": labeled_s, "count_s": count_s, "select_s": select_s,
                 "total_s": time.perf_counter() - start})
    with staged_dir(out, force=True) as tmp:
        vocab.save(tmp)
        atomic_write_json(tmp / "manifest.json", manifest)
    write_resolved_config(cfg)
    return StageResult("vocab", out, False, manifest)
