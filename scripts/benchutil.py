"""Helpers shared by the benchmark scripts (run as `python scripts/bench_*.py`)."""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def code_version() -> str:
    """The library's git commit (and whether its tracked files differ from it), for the record."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                              check=False).stdout.strip()
    dirty = git("status", "--porcelain", "--untracked-files=no", "sparse_distill")
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + (" + local changes" if dirty else "")


def read_jsonl_texts(path: Path, limit: int | None = None) -> list[str]:
    """The "text" field of the first `limit` rows (all when None) of a jsonl file."""
    texts = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if limit is not None and len(texts) >= limit:
                break
            if line.strip():
                texts.append(json.loads(line)["text"])
    return texts


def median_s(run: Callable[[], object], repeats: int) -> float:
    """Median seconds of `repeats` calls of `run`, after one call to warm up."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
