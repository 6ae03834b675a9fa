"""`sdistill shrink`: a smaller student from a trained one, as fastText's `-cutoff` and quantised
`.ftz` models are.

Rows: keep the N most frequent n-grams (the vocabulary's ids are in order of corpus frequency),
or a share of them, optionally only those in at least K texts and of at most `max_order` words;
ids are renumbered, and the featuriser of the result knows only the kept n-grams (and walks no
order above `max_order`). Hashed bucket rows, if any, are kept. Storage: float32, float16,
bfloat16, or int8 with a scale and offset per row (`network.TABLE_DTYPES`). The result is a
student directory like any other (`Student.load`, `sdistill predict`, `sdistill export`), whose
student.json and model card say what was done to it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from ..errors import DataError
from ..files import refuse_overwrite, staged_dir
from .artifact import read_student, write_student
from .card import write_card
from .featurize import Vocabulary
from .network import TABLE_DTYPES, save_weights

WEIGHTS = "model.safetensors"


@dataclass
class ShrinkResult:
    output: Path
    rows: int          # table rows kept (n-grams, then buckets)
    of: int            # table rows before
    bytes_before: int  # model.safetensors + vocab/
    bytes_after: int
    summary: str


def directory_bytes(directory: Path) -> int:
    """Bytes of a student's weights and vocabulary (what serving it reads)."""
    return (directory / WEIGHTS).stat().st_size + sum(
        p.stat().st_size for p in (directory / "vocab").iterdir() if p.is_file())


def select_rows(vocab: Vocabulary, keep: int | None, keep_share: float | None,
                min_df: int | None, max_order: int | None) -> np.ndarray:
    """The ids to keep, ascending: those passing min_df and max_order, then the first `keep`
    (or `keep_share` of the vocabulary) of them, most frequent first."""
    ok = np.ones(len(vocab), dtype=bool)
    if min_df is not None:
        ok &= vocab.df >= min_df
    if max_order is not None:
        orders = np.fromiter((g.count(" ") + 1 for g in vocab.ngrams), np.int64, len(vocab))
        ok &= orders <= max_order
    ids = np.flatnonzero(ok)
    if keep_share is not None:
        keep = max(1, round(keep_share * len(vocab)))
    return ids[:keep] if keep is not None else ids


def _check(meta: dict[str, Any], vocab: Vocabulary, keep: int | None, keep_share: float | None,
           min_df: int | None, max_order: int | None, dtype: str, model_dir: Path) -> None:
    if meta["architecture"].get("table_dtype", "float32") != "float32":
        raise DataError(f"{model_dir}: already shrunk (its table is "
                        f"{meta['architecture']['table_dtype']}); shrink the trained student")
    if keep is not None and keep_share is not None:
        raise DataError("--keep and --keep-share pick the same thing; give one of them")
    if keep is not None and keep < 1:
        raise DataError(f"--keep {keep}: keep at least 1 n-gram")
    if keep_share is not None and not 0 < keep_share <= 1:
        raise DataError(f"--keep-share {keep_share}: give a share in (0, 1], e.g. 0.1")
    lo, hi = vocab.ngram_range
    if max_order is not None and not lo <= max_order <= hi:
        raise DataError(f"--max-order {max_order}: the vocabulary has orders {lo}-{hi}; give "
                        f"one of them")
    if min_df is not None and min_df < 1:
        raise DataError(f"--min-df {min_df}: give a count of texts >= 1")
    if dtype not in TABLE_DTYPES:
        raise DataError(f"--dtype {dtype}: expected one of {', '.join(TABLE_DTYPES)}")


def shrink(model_dir: str | Path, out: str | Path, *, keep: int | None = None,
           keep_share: float | None = None, min_df: int | None = None,
           max_order: int | None = None, dtype: str = "float32",
           force: bool = False) -> ShrinkResult:
    """Write a smaller copy of the student in `model_dir` to `out` (see the module's doc)."""
    model_dir, out = Path(model_dir), Path(out)
    meta = read_student(model_dir)
    if out.resolve() == model_dir.resolve():
        raise DataError(f"{out}: the output must be a new directory, not the student itself")
    refuse_overwrite(out, force)
    vocab = Vocabulary.load(model_dir / "vocab")
    _check(meta, vocab, keep, keep_share, min_df, max_order, dtype, model_dir)
    ids = select_rows(vocab, keep, keep_share, min_df, max_order)
    if len(ids) == 0:
        raise DataError(f"{model_dir}: no n-gram passes --min-df {min_df} and --max-order "
                        f"{max_order}; lower them")
    arch = meta["architecture"]
    state = load_file(str(model_dir / WEIGHTS))
    table = state.pop("embedding.weight")  # (|V| + buckets, d)
    rows = torch.cat([table[torch.from_numpy(ids)], table[len(vocab):]])  # (kept + buckets, d)
    if dtype == "int8":
        state["packed"] = torch.ops.quantized.embedding_bag_byte_prepack(rows.contiguous())
    else:
        state["embedding.weight"] = rows.to(TABLE_DTYPES[dtype]).contiguous()
    lo, hi = vocab.ngram_range
    small = Vocabulary(ngrams=[vocab.ngrams[i] for i in ids], df=vocab.df[ids],
                       tf=vocab.tf[ids], ngram_range=(lo, min(hi, max_order or hi)),
                       lowercase=vocab.lowercase, token_pattern=vocab.token_pattern,
                       tokens=vocab.tokens)
    how = []
    if min_df is not None:
        how.append(f"in >= {min_df} texts")
    if max_order is not None:
        how.append(f"of <= {max_order} words")
    summary = (f"kept {len(ids):,} of {len(vocab):,} n-grams (the most frequent"
               + (", " + ", ".join(how) if how else "") + f"); table in {dtype}"
               + (" with a scale and offset per row" if dtype == "int8" else ""))
    shrunk = {"from": str(model_dir), "ngrams_kept": len(ids), "ngrams_before": len(vocab),
              "keep": keep, "keep_share": keep_share, "min_df": min_df, "max_order": max_order,
              "dtype": dtype, "summary": summary}
    meta = {**meta, "architecture": {**arch, "vocab_size": len(rows), "table_dtype": dtype},
            "shrunk": shrunk}
    with staged_dir(out, force=force) as tmp:  # renamed into place only when complete
        write_student(tmp, meta)
        save_weights(state, tmp / WEIGHTS)
        (tmp / "vocab").mkdir()
        small.save(tmp / "vocab")
        shutil.copy(model_dir / "manifest.json", tmp / "manifest.json")
        write_card(tmp)
    return ShrinkResult(out, len(rows), arch["vocab_size"], directory_bytes(model_dir),
                        directory_bytes(out), summary)
