"""The student stage's peak memory, estimated before it allocates the table (`train_student`
stops with one line when the machine lacks it). The paper's sizes (|V| 1M, d 1000) peaked at
21.8 GiB on a CPU: on a 16 GiB laptop, an out-of-memory kill halfway through.

What the stage holds at its peak, beside what the process already holds when it asks (torch,
the texts, the teacher's logits):
- the table, rows x d float32, and SparseAdam's two moments of the same shape (allocated in
  full at the first step);
- with `student.init: teacher`, a second table-sized array while the teacher's rows are
  composed, beside the teacher's weights (before the moments exist);
- one step's temporaries: the sparse gradient and SparseAdam's update, a few arrays of
  (n-grams in the batch) x d;
- the featurised corpus, memory-mapped, which training reads in full.
The student manifest records the estimate and the stage's measured peak side by side.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import asdict, dataclass

GIB = float(1 << 30)

# One step's temporaries, in (n-grams in the batch) x d float32 arrays: the gathered rows, the
# embedding bag's sparse gradient and its coalesced copy, and SparseAdam's old and new moment
# values, numerator, denominator and update. With 6, trec at d 1000 (|V| 1M, batch 2048) was
# estimated at 12.8 GiB and peaked at 13.3; with 10, 13.4.
STEP_ARRAYS = 10

# The student's work directory at its peak, in tables: both phases' best weights, and a
# checkpoint (the weights and SparseAdam's two moments: 3 tables) written beside the one it
# replaces (20ng at 1M x 256: each best 1.02 GB, each checkpoint 3.07 GB).
DISK_TABLES = 8


@dataclass(frozen=True)
class MemoryEstimate:
    """GiB, by what holds them; `peak` is their largest simultaneous sum."""

    held: float  # what the process holds when it asks
    corpus: float  # the featurised corpus on disk, read in full by training
    table: float  # the embedding table
    optimizer: float  # SparseAdam's two moments, and the dense layers' Adam state
    init: float  # teacher init's extra table-sized array and the teacher's weights (0: random)
    step: float  # one training step's temporaries

    @property
    def disk(self) -> float:
        """The student's files at their peak (`DISK_TABLES` tables)."""
        return DISK_TABLES * self.table

    @property
    def peak(self) -> float:
        return self.held + self.corpus + self.table + max(self.init, self.optimizer + self.step)

    def to_json(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in {**asdict(self), "peak": self.peak}.items()}

    def parts(self) -> str:
        """The peak's terms, 'optimizer 7.5 + table 3.7 + ...' GiB, the largest first."""
        named = asdict(self)
        del named["init" if self.init <= self.optimizer + self.step else "optimizer"]
        if "optimizer" not in named:
            del named["step"]
        return " + ".join(f"{k} {v:.1f}" for k, v in sorted(named.items(), key=lambda kv: -kv[1])
                          if v >= 0.05)


@dataclass(frozen=True)
class StudentShape:
    """What the estimate depends on, besides the table's width."""

    rows: int  # table rows: the vocabulary and the buckets
    hidden_dims: list[int]
    n_labels: int
    wide: bool  # n_labels more columns a row
    corpus_gib: float
    batch_ngrams: int  # n-grams in the largest training batch
    teacher_gib: float | None  # the teacher's weights for `init: teacher`; None: random init
    held_gib: float

    def estimate(self, dim: int, rows: int | None = None) -> MemoryEstimate:
        rows = self.rows if rows is None else rows
        widths = [dim, *self.hidden_dims, self.n_labels]
        dense = sum((a + 1) * b for a, b in itertools.pairwise(widths)) * 4 / GIB
        table = rows * (dim + (self.n_labels if self.wide else 0)) * 4 / GIB
        return MemoryEstimate(
            held=self.held_gib, corpus=self.corpus_gib, table=table,
            optimizer=2 * table + 4 * dense,
            init=0.0 if self.teacher_gib is None else table + self.teacher_gib,
            step=STEP_ARRAYS * self.batch_ngrams * dim * 4 / GIB)

    def fitting_dim(self, dim: int, available: float) -> int | None:
        """The largest width below `dim` (a multiple of 32) whose estimate fits `available`
        GiB, the rest as it is; None when not even 32 does."""
        for d in range((dim - 1) // 32 * 32, 31, -32):
            if self.estimate(d).peak <= available:
                return d
        return None

    def fitting_rows(self, dim: int, available: float) -> int:
        """How many table rows fit `available` GiB at width `dim`, the rest as it is."""
        empty = self.estimate(dim, rows=0).peak
        per_row = self.estimate(dim, rows=1).peak - empty
        return max(0, int((available - empty) / per_row))


def memory_check_enabled() -> bool:
    """SDISTILL_MEMORY_CHECK=0 lets a run go on past a failed check of memory or disk (swap,
    or an estimate known to be high for the data)."""
    return os.environ.get("SDISTILL_MEMORY_CHECK", "1").lower() not in ("0", "false", "no")
