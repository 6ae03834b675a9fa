"""The training corpus: the featurised texts on disk, memory-mapped, and the batches a training
step takes from it (gathered on the host or, on CUDA, on the device), prepared ahead on threads.

The corpus is a `Bag` (flat int32 ids, int64 offsets, float32 counts) whose arrays are `.npy`
files, written once per vocabulary, text list and bucket setting; a batch is a vectorised gather
of rows.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import torch

from ..files import staged_dir
from ..inference.featurize import NO_BUCKETS, Bag, Featurizer, Unseen, Vocabulary, thread_pool
from ..inference.network import bag_tensors


def open_corpus(directory: Path) -> Bag:
    """A featurised corpus on disk (ids.npy, offsets.npy, weights.npy), memory-mapped."""
    return Bag(*(np.load(directory / f"{name}.npy", mmap_mode="r", allow_pickle=False)
                 for name in ("ids", "offsets", "weights")))


def featurize_corpus(texts: list[str], vocab: Vocabulary, directory: Path,
                     chunk: int = 20_000, unseen: Unseen = NO_BUCKETS) -> Bag:
    """Featurise `texts` into `directory` (once: an existing complete directory is reused)."""
    if not (directory / "offsets.npy").is_file():
        featurizer = Featurizer(vocab, unseen=unseen)
        with staged_dir(directory, force=True) as tmp:
            parts = [featurizer(texts[i:i + chunk]) for i in range(0, len(texts), chunk)]
            lengths = np.concatenate([np.diff(p.offsets) for p in parts])
            offsets = np.zeros(len(texts) + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets[1:])
            np.save(tmp / "ids.npy", np.concatenate([p.ids for p in parts]), allow_pickle=False)
            np.save(tmp / "weights.npy", np.concatenate([p.weights for p in parts]),
                    allow_pickle=False)
            np.save(tmp / "offsets.npy", offsets, allow_pickle=False)
    return open_corpus(directory)


def batches_from(n_rows: int, batch_size: int, seed: int, start_step: int, total_steps: int
                 ) -> Iterator[tuple[int, np.ndarray]]:
    """(step, row indices) from `start_step`: a fresh seeded permutation every epoch, drawn
    once per epoch (at 10M rows one takes 0.4 s, more than a GPU step)."""
    per_epoch = max(1, n_rows // batch_size)  # drop the last partial batch: fixed shapes
    perm, perm_epoch = np.empty(0, np.int64), -1
    for step in range(start_step, total_steps):
        epoch, position = divmod(step, per_epoch)
        if epoch != perm_epoch:
            perm, perm_epoch = np.random.default_rng([seed, epoch]).permutation(n_rows), epoch
        yield step, perm[position * batch_size:(position + 1) * batch_size]


Batch = tuple[np.ndarray, tuple[torch.Tensor, ...]]


# Batches prepared ahead on CUDA, each on its own thread: one thread keeps up with the GPU on
# average, but its time varies with the GIL held by the step's kernel launches, and the GPU waits
# whenever one batch comes late (`sdistill speed train`; benchmarks/HISTORY.md, GPU).
CUDA_PREFETCH = 3


def ahead(batches: Iterator[tuple[int, np.ndarray]], prepare: Callable[[np.ndarray], Batch],
          prefetch: int) -> Iterator[tuple[int, Batch]]:
    """(step, prepare(rows)) for each batch, in order; with `prefetch` > 0, that many batches
    ahead are prepared on as many threads while the caller trains on this one (on CUDA:
    gathered, pinned and copied while the GPU runs the step). The batches are the same either
    way."""
    if prefetch <= 0:
        for step, idx in batches:
            yield step, prepare(idx)
        return
    pool = thread_pool(prefetch, "prefetch")
    pending: collections.deque[tuple[int, Future[Batch]]] = collections.deque(
        (step, pool.submit(prepare, idx)) for step, idx in itertools.islice(batches, prefetch))
    while pending:
        step, ready = pending.popleft()
        upcoming = next(batches, None)
        if upcoming is not None:
            pending.append((upcoming[0], pool.submit(prepare, upcoming[1])))
        yield step, ready.result()


class ResidentCorpus:
    """The first `n_rows` rows' ids and pooling weights on the device, so that a batch is
    gathered there: the host then handles (batch,)-sized arrays a step, not (nnz,)-sized ones.

    On CUDA the host's gathering (one thread a batch, sharing the GIL with the step's kernel
    launches) held the GPU waiting up to 27% of a step at d = 1000 (benchmarks/HISTORY.md, GPU).
    The weights are those `bag_tensors` makes, row by row the same arithmetic, so the batches
    are the host path's exactly.
    """

    CHUNK_ROWS = 100_000  # rows moved at a time: bounded host memory on a corpus of any size

    def __init__(self, corpus: Bag, n_rows: int, pooling: str, device: torch.device):
        self.corpus = corpus
        self.device = device
        nnz = int(corpus.offsets[n_rows])
        self.ids = torch.empty(nnz, dtype=torch.int32, device=device)  # (nnz,)
        self.weights = torch.empty(nnz, dtype=torch.float32, device=device)  # (nnz,)
        for a in range(0, n_rows, self.CHUNK_ROWS):
            b = min(n_rows, a + self.CHUNK_ROWS)
            lo, hi = int(corpus.offsets[a]), int(corpus.offsets[b])
            bag = corpus.span(a, b)
            weights = bag.mean_weights() if pooling == "mean" else bag.weights
            self.ids[lo:hi].copy_(torch.from_numpy(bag.ids))
            self.weights[lo:hi].copy_(torch.from_numpy(np.ascontiguousarray(weights,
                                                                            np.float32)))

    @staticmethod
    def fits(corpus: Bag, n_rows: int, device: torch.device) -> bool:
        """Whether the rows take at most a quarter of the device's free memory (the rest is
        the table's, SparseAdam's and the batches')."""
        if device.type != "cuda":
            return False
        free, _ = torch.cuda.mem_get_info(device)
        return 8 * int(corpus.offsets[n_rows]) <= free // 4

    def rows(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`bag_tensors` of rows `idx`, on the device, without waiting for it."""
        starts, lengths, offsets = self.corpus.layout(idx)
        shift, lengths_d, offsets_d = (to_device(torch.from_numpy(a), self.device)
                                       for a in (starts - offsets[:-1], lengths, offsets))
        total = int(offsets[-1])
        # Position of every element in the flat arrays: its row's start plus its rank in the row.
        flat = torch.arange(total, device=self.device) + torch.repeat_interleave(
            shift, lengths_d, output_size=total)  # (nnz,)
        return self.ids[flat].long(), offsets_d, self.weights[flat]


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """On CUDA, pinned first, so that the copy runs asynchronously, beside a step."""
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def batch_maker(corpus: Bag, targets: np.ndarray | None, gold: np.ndarray,
                labelled_rows: int, alpha: float, pooling: str, device: torch.device,
                resident: bool | None = None) -> Callable[[np.ndarray], Batch]:
    """rows -> (rows, the step's inputs on `device`): bag tensors, then the teacher's logits
    (KD) or the gold labels (fine-tuning), then, for KD with alpha > 0, the positions of the
    gold-labelled rows and their labels. `resident`: gather the bags on the device from a
    `ResidentCorpus` (None: on CUDA when the rows fit)."""
    n_rows = len(corpus) if targets is not None else labelled_rows
    if resident is None:
        resident = ResidentCorpus.fits(corpus, n_rows, device)
    on_device = ResidentCorpus(corpus, n_rows, pooling, device) if resident else None
    cpu = torch.device("cpu")

    def prepare(idx: np.ndarray) -> Batch:
        host = [] if on_device is not None else [*bag_tensors(corpus.rows(idx), pooling, cpu)]
        if targets is not None:
            host.append(torch.from_numpy(targets[idx]))  # (batch, classes)
            has_gold = np.flatnonzero(idx < labelled_rows)
            if alpha > 0 and len(has_gold):
                host += [torch.from_numpy(has_gold), torch.from_numpy(gold[idx[has_gold]])]
        else:
            host.append(torch.from_numpy(gold[idx]))  # (batch,)
        bags = on_device.rows(idx) if on_device is not None else ()
        return idx, (*bags, *(to_device(t, device) for t in host))

    return prepare
