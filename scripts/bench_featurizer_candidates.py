"""How the compiled featuriser was chosen: the candidates, measured on the same texts.

* scikit-learn: `CountVectorizer(vocabulary=...).transform` (the reference and the old path);
* numba: the same algorithm as `sparse_distill/_ngrams.c` (tokens by a `\\w` table over every code
  point, a token hash table verified against code points, the n-gram trie keyed by 64-bit
  (parent, token) integers, each order looked up over the whole text before the next) written with
  `@njit(cache=True, nogil=True)` over numpy arrays; texts go in as UTF-32 code points after
  Python's own `str.lower()`, as numba cannot call it;
* C: `sparse_distill._ngrams`, the extension the package builds at install (what shipped).

For each: import / first-call cost (numba compiles on the first call of a process unless its
cache is warm; both are timed), the time to build the vocabulary's tables, texts/s on one thread
(median of --repeats after a warm-up), and a check that ids, offsets and counts equal
scikit-learn's. numba is not a dependency of the package: `pip install numba` to run this.

Run (vocabularies from `sdistill vocab`, texts = a data set's train + dev + test):
    SDISTILL_CACHE=/tmp/sdc python scripts/bench_featurizer_candidates.py \\
        --vocab rt=runs/rt/vocab --vocab 20ng=runs/20ng/vocab
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from benchutil import code_version, median_s, read_jsonl_texts

from sparse_distill.featurize import Vocabulary

NUMBA_CODE = r'''
import numpy as np
from numba import njit, uint64, uint32

FNV_OFFSET = np.uint64(0xcbf29ce484222325)
FNV_PRIME = np.uint64(0x100000001b3)
EMPTY = np.int32(-1)


@njit(inline="always")
def mix64(x):
    x ^= x >> uint64(33)
    x *= uint64(0xff51afd7ed558ccd)
    x ^= x >> uint64(33)
    x *= uint64(0xc4ceb9fe1a85ec53)
    x ^= x >> uint64(33)
    return x


@njit(cache=True, nogil=True)
def build(cps, starts, min_n, max_n, isword):
    """Tables for the vocabulary n-grams cps[starts[i]:starts[i + 1]] (id i)."""
    n = len(starts) - 1
    tcap = 1024
    while tcap < 2 * n + 2:
        tcap *= 2
    ecap = tcap
    tkey = np.zeros(tcap, np.uint64); tidx = np.full(tcap, -1, np.int32)
    tvoc = np.full(tcap, -1, np.int32)
    ekey = np.zeros(ecap, np.uint64); eidx = np.full(ecap, -1, np.int32)
    evoc = np.full(ecap, -1, np.int32)
    tok_start = np.zeros(n + 1, np.int64); tok_len = np.zeros(n + 1, np.int32)
    chars = np.zeros(len(cps), np.uint32)
    n_tok = 0; n_chars = 0; n_deep = 0
    part_s = np.zeros(256, np.int64); part_l = np.zeros(256, np.int64)
    part_h = np.zeros(256, np.uint64)
    for g in range(n):
        a, b = starts[g], starts[g + 1]
        k = 0; s = a; ok = True
        for i in range(a, b + 1):
            if i < b and cps[i] != 32:
                continue
            ln = i - s
            if ln < 2 or k == max_n:
                ok = False; break
            h = FNV_OFFSET
            for j in range(s, i):
                c = cps[j]
                if not isword[c]:
                    ok = False
                h = (h ^ uint64(c)) * FNV_PRIME
            if not ok:
                break
            part_s[k] = s; part_l[k] = ln; part_h[k] = mix64(h ^ uint64(ln)); k += 1
            s = i + 1
        if not ok or k < min_n:
            continue
        code = uint64(0); last_slot = -1; last_tab = 0
        for p in range(k):
            h = part_h[p]; slot = np.int64(mix64(h) & uint64(tcap - 1))
            while True:
                t = tidx[slot]
                if t == EMPTY:
                    break
                if tkey[slot] == h and tok_len[t] == part_l[p]:
                    same = True
                    for j in range(part_l[p]):
                        if chars[tok_start[t] + j] != cps[part_s[p] + j]:
                            same = False; break
                    if same:
                        break
                slot = (slot + 1) & (tcap - 1)
            if tidx[slot] == EMPTY:
                tkey[slot] = h; tidx[slot] = n_tok
                tok_start[n_tok] = n_chars; tok_len[n_tok] = part_l[p]
                for j in range(part_l[p]):
                    chars[n_chars] = cps[part_s[p] + j]; n_chars += 1
                n_tok += 1
            t = tidx[slot]
            if p == 0:
                code = uint64(t); last_slot = slot; last_tab = 0
                continue
            key = (code << uint64(32)) | uint64(t)
            es = np.int64(mix64(key) & uint64(ecap - 1))
            while eidx[es] != EMPTY and ekey[es] != key:
                es = (es + 1) & (ecap - 1)
            if eidx[es] == EMPTY:
                ekey[es] = key; eidx[es] = n_deep; n_deep += 1
            code = uint64(0x80000000) | uint64(eidx[es]); last_slot = es; last_tab = 1
        if last_tab == 0:
            tvoc[last_slot] = g
        else:
            evoc[last_slot] = g
    return tkey, tidx, tvoc, ekey, eidx, evoc, chars[:n_chars], tok_start, tok_len


@njit(cache=True, nogil=True)
def featurize(cps, text_off, isword, min_n, max_n, tkey, tidx, tvoc, ekey, eidx, evoc, chars,
              tok_start, tok_len):
    n_texts = len(text_off) - 1
    tmask = len(tkey) - 1; emask = len(ekey) - 1
    cap = 1024
    ids = np.zeros(cap, np.int32); weights = np.zeros(cap, np.float32)
    ends = np.zeros(n_texts, np.int64)
    nnz = 0
    toks = np.zeros(64, np.int32); codes = np.zeros(64, np.uint64)
    alive = np.zeros(64, np.int64); hits = np.zeros(64 * max_n, np.int32)
    for d in range(n_texts):
        a, b = text_off[d], text_off[d + 1]
        nt = 0; n_hits = 0; i = a
        while i < b:
            c = cps[i]
            if not isword[c]:
                i += 1; continue
            s = i; h = FNV_OFFSET
            while i < b and isword[cps[i]]:
                h = (h ^ uint64(cps[i])) * FNV_PRIME; i += 1
            ln = i - s
            if ln < 2:
                continue
            h = mix64(h ^ uint64(ln))
            slot = np.int64(mix64(h) & uint64(tmask))
            found = -1; voc = -1
            while tidx[slot] != EMPTY:
                t = tidx[slot]
                if tkey[slot] == h and tok_len[t] == ln:
                    same = True
                    for j in range(ln):
                        if chars[tok_start[t] + j] != cps[s + j]:
                            same = False; break
                    if same:
                        found = t; voc = tvoc[slot]; break
                slot = (slot + 1) & tmask
            if nt == len(toks):
                toks = np.concatenate((toks, np.zeros(nt, np.int32)))
                codes = np.concatenate((codes, np.zeros(nt, np.uint64)))
                alive = np.concatenate((alive, np.zeros(nt, np.int64)))
                hits = np.concatenate((hits, np.zeros(len(hits), np.int32)))
            toks[nt] = found
            if found >= 0 and min_n == 1 and voc >= 0:
                hits[n_hits] = voc; n_hits += 1
            nt += 1
        n_alive = 0
        for k in range(nt):
            if toks[k] >= 0:
                codes[k] = uint64(toks[k]); alive[n_alive] = k; n_alive += 1
        for n in range(2, max_n + 1):
            m = 0
            for j in range(n_alive):
                p = alive[j]
                if p + n > nt or toks[p + n - 1] < 0:
                    continue
                key = (codes[p] << uint64(32)) | uint64(toks[p + n - 1])
                es = np.int64(mix64(key) & uint64(emask))
                while eidx[es] != EMPTY and ekey[es] != key:
                    es = (es + 1) & emask
                if eidx[es] == EMPTY:
                    continue
                if n >= min_n and evoc[es] >= 0:
                    hits[n_hits] = evoc[es]; n_hits += 1
                codes[p] = uint64(0x80000000) | uint64(eidx[es]); alive[m] = p; m += 1
            n_alive = m
            if n_alive == 0:
                break
        row = hits[:n_hits]
        row.sort()  # in place: no allocation per text
        if nnz + n_hits > cap:
            while nnz + n_hits > cap:
                cap *= 2
            ids = np.concatenate((ids, np.zeros(cap - len(ids), np.int32)))
            weights = np.concatenate((weights, np.zeros(cap - len(weights), np.float32)))
        q = 0
        while q < n_hits:
            r = q + 1
            while r < n_hits and row[r] == row[q]:
                r += 1
            ids[nnz] = row[q]; weights[nnz] = r - q; nnz += 1
            q = r
        ends[d] = nnz
    return ids[:nnz], ends, weights[:nnz]
'''


def word_table() -> np.ndarray:
    """`\\w` at every code point, from `re` itself (bool, 0x110000)."""
    every = "".join(map(chr, range(sys.maxunicode + 1)))
    table = np.zeros(sys.maxunicode + 1, dtype=np.bool_)
    table[[m.start() for m in re.finditer(r"\w", every)]] = True
    return table


def as_code_points(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    cps = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum([len(t) for t in texts], out=offsets[1:])
    return cps, offsets


def numba_candidate(work: Path) -> tuple[object, float]:
    """The numba module (written to `work` so that cache=True has a place), and its import s."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "nb_featurize.py").write_text(NUMBA_CODE)
    sys.path.insert(0, str(work))
    start = time.perf_counter()
    import nb_featurize

    return nb_featurize, time.perf_counter() - start


def bench_one(item: str, cache: Path, nb: object, isword: np.ndarray, repeats: int) -> str:
    """One data set: check all three against each other, then time them; a table row."""
    from sparse_distill import _ngrams

    name, vocab_dir = item.split("=", 1)
    vocab = Vocabulary.load(vocab_dir)
    lo, hi = vocab.ngram_range
    texts = [t for split in ("train", "dev", "test")
             for t in read_jsonl_texts(cache / "data" / name / f"{split}.jsonl")]
    vectorizer = vocab.vectorizer().fit([])
    expected = vectorizer.transform(texts)

    start = time.perf_counter()
    index = _ngrams.Index(vocab.ngrams, lo, hi, vocab.lowercase)
    c_build = time.perf_counter() - start
    start = time.perf_counter()
    v_cps, v_off = as_code_points(vocab.ngrams)
    tables = nb.build(v_cps, v_off, lo, hi, isword)
    nb_build = time.perf_counter() - start

    def run_c() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ids, offsets, weights = index.featurize(texts)
        return (np.frombuffer(ids, np.int32), np.frombuffer(offsets, np.int64)[1:],
                np.frombuffer(weights, np.float32))

    def run_numba() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cps, off = as_code_points([t.lower() for t in texts])
        return nb.featurize(cps, off, isword, lo, hi, *tables)

    for label, run in (("C", run_c), ("numba", run_numba)):
        ids, ends, weights = run()
        assert np.array_equal(ids, expected.indices), label
        assert np.array_equal(ends, expected.indptr[1:]), label
        assert np.array_equal(weights, expected.data), label
    sk = median_s(lambda: vectorizer.transform(texts), max(3, repeats // 2))
    c = median_s(run_c, repeats)
    nb_s = median_s(run_numba, repeats)
    return (f"| {name} | {len(texts):,} | {len(vocab):,} | {len(texts) / sk:,.0f} "
            f"| {len(texts) / nb_s:,.0f} ({sk / nb_s:.1f}x) | {len(texts) / c:,.0f} "
            f"({sk / c:.1f}x) | {nb_build:.2f} / {c_build:.2f} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=os.environ.get("SDISTILL_CACHE"))
    parser.add_argument("--vocab", action="append", required=True, metavar="NAME=DIR",
                        help="a data set name (its texts: CACHE/data/NAME) and a vocab dir")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench/numba"))
    parser.add_argument("--first-call", action="store_true",
                        help="(internal) time the numba first call in this fresh process")
    args = parser.parse_args(argv)
    if args.first_call:  # a fresh process: numba's compile, or load from its cache
        nb, import_s = numba_candidate(args.work)
        start = time.perf_counter()
        table = np.zeros(0x110000, np.bool_)
        cps, off = as_code_points(["warm up", "the film"])
        tables = nb.build(cps, off, 1, 4, table)
        nb.featurize(cps, off, table, 1, 4, *tables)
        print(f"{import_s:.3f} {time.perf_counter() - start:.3f}")
        return

    def first_call() -> str:
        out = subprocess.run([sys.executable, __file__, "--first-call", "--work", str(args.work),
                              "--vocab", args.vocab[0]], capture_output=True, text=True,
                             check=True).stdout.split()
        return f"import {float(out[0]):.2f} s, first call {float(out[1]):.2f} s"

    cold = first_call() if not (args.work / "__pycache__").exists() else "cache was warm"
    warm = first_call()
    print(f"numba first call in a new process: cold cache: {cold}; warm cache: {warm}",
          file=sys.stderr)
    nb, _ = numba_candidate(args.work)
    start = time.perf_counter()
    isword = word_table()
    table_s = time.perf_counter() - start
    rows = [bench_one(item, args.cache, nb, isword, args.repeats) for item in args.vocab]
    print("| texts | n | vocab | scikit-learn texts/s | numba texts/s | C texts/s "
          "| tables built, s (numba / C) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    print(f"\nOne thread each; median of {args.repeats} after a warm-up; identical ids, offsets "
          f"and counts to scikit-learn's. numba's `\\w` table over every code point: "
          f"{table_s:.2f} s a process. numba first call in a new process: cold cache: {cold}; "
          f"warm cache: {warm}. sparse_distill at {code_version()}.")


if __name__ == "__main__":
    main()
