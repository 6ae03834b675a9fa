"""Students outside torch: predictors for the directories `sdistill export` writes.

`NumpyStudent` needs numpy and the compiled featuriser only; `OnnxStudent` adds onnxruntime (the
`onnx` extra). Both take the exported directory's `student.json` (labels, architecture, buckets)
and `vocab/` (the featuriser's settings and n-grams), so the text -> ids step is exactly the torch
student's; the table is memory-mapped (numpy) or read by onnxruntime.

This module imports numpy and `featurize` only: no torch, transformers, scikit-learn, training or
config code (a test blocks them and predicts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .artifact import arch_table_width, fitted_temperature, read_student
from .featurize import (
    MIN_TEXTS_PER_THREAD,
    Bag,
    Featurizer,
    Unseen,
    Vocabulary,
    compiled_module,
    thread_pool,
    usable_cpus,
)

# `_ngrams.pool`'s codes for the table's storage (network.TABLE_DTYPES, without importing torch).
TABLE_KINDS = {"float32": 0, "float16": 1, "bfloat16": 2, "int8": 3}


def read_export(directory: Path, fmt: str) -> dict[str, Any]:
    meta = read_student(directory, f"write it with `sdistill export MODEL_DIR {directory} "
                                   f"--format {fmt}`")
    if meta.get("export", {}).get("format") != fmt:
        raise DataError(f"{directory}: not a {fmt} export (its student.json says "
                        f"{meta.get('export', {}).get('format', 'a torch student')})")
    return meta


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """(n, n_classes) probabilities of (n, n_classes) logits divided by `temperature`.

    In numpy: a torch op here, between two calls that set torch to one thread, would wake
    torch's full OpenMP team every batch (it halved predict's throughput)."""
    z = logits / temperature if temperature != 1.0 else logits
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class Predictions:
    """`predict_proba` and `predict` from a class's `logits(texts)`, `labels` and calibration
    `temperature`: shared by the torch student (`student.Student`) and the ones here."""

    labels: list[str]
    temperature: float = 1.0

    def logits(self, texts: list[str], batch_size: int = 1024) -> np.ndarray:
        raise NotImplementedError

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """(n, n_classes) calibrated probabilities (softmax of the logits / temperature)."""
        return softmax(self.logits(texts), self.temperature)

    def predict(self, texts: list[str]) -> list[str]:
        return [self.labels[i] for i in self.logits(texts).argmax(axis=1)]


class _Portable(Predictions):
    """What both predictors here share: the featuriser and chunks on threads."""

    def __init__(self, directory: Path, meta: dict[str, Any], threads: int | None) -> None:
        arch = meta["architecture"]
        self.labels: list[str] = meta["labels"]
        self.temperature = fitted_temperature(meta)
        self.pooling: str = arch["pooling"]
        self.threads = max(1, threads or usable_cpus())
        # threads=1: the chunks are the parallel work
        self.featurizer = Featurizer(Vocabulary.load(directory / "vocab"), threads=1,
                                     unseen=Unseen.from_json(arch.get("unseen")))

    def _chunk_logits(self, bag: Bag) -> np.ndarray:
        raise NotImplementedError

    def _finish(self, parts: list[np.ndarray]) -> np.ndarray:
        """The chunks' outputs -> (n_texts, n_classes) logits."""
        return np.concatenate(parts)

    def logits(self, texts: list[str], batch_size: int = 1024) -> np.ndarray:
        """(n_texts, n_classes) float32."""
        if not texts:
            return np.zeros((0, len(self.labels)), np.float32)
        size = min(batch_size, max(MIN_TEXTS_PER_THREAD, -(-len(texts) // self.threads)))
        chunks = [texts[i:i + size] for i in range(0, len(texts), size)]

        def one(chunk: list[str]) -> np.ndarray:
            return self._chunk_logits(self.featurizer.bag(chunk, mean=self.pooling == "mean"))

        if len(chunks) == 1 or self.threads == 1:
            return self._finish([one(c) for c in chunks])
        return self._finish(list(thread_pool(self.threads, "portable").map(one, chunks)))


class NumpyStudent(_Portable):
    """An exported student in numpy: `NumpyStudent.load(dir).predict(["some text"])`."""

    def __init__(self, directory: Path, meta: dict[str, Any], threads: int | None) -> None:
        super().__init__(directory, meta, threads)
        arch = meta["architecture"]
        self.dim: int = arch["embedding_dim"]
        # the table's columns: d, and for a wide student one more per label, pooled alike
        self.width = arch_table_width(arch, len(self.labels))
        self.table_dtype: str = arch.get("table_dtype", "float32")
        # (rows, d) float32 / float16 / uint16 (bfloat16's bits), or (rows, d + 8) uint8
        self.table = np.load(directory / "table.npy", mmap_mode="r", allow_pickle=False)
        self.layers = [(np.load(directory / f"{name}.weight.npy", allow_pickle=False),
                        np.load(directory / f"{name}.bias.npy", allow_pickle=False))
                       for name in meta["export"]["layers"]]
        self.activation = np.tanh if arch["activation"] == "tanh" else (
            lambda x: np.maximum(x, 0, out=x))

    @classmethod
    def load(cls, directory: str | Path, threads: int | None = None) -> NumpyStudent:
        directory = Path(directory)
        return cls(directory, read_export(directory, "numpy"), threads)

    def _chunk_logits(self, bag: Bag) -> np.ndarray:
        """The chunk's pooled rows (n, d): the threads featurise and pool (compiled, without
        the GIL); the MLP then runs once on all of them in `_finish`, so that numpy's BLAS
        threads do not fight the chunks' threads."""
        # numpy's gather-then-reduce made a (nnz, d) copy and ran 6x slower than torch's fused
        # kernel; the compiled EmbeddingBag reads each row once.
        pooled = np.empty((len(bag), self.width), np.float32)  # (n, width)
        compiled_module().pool(self.table, TABLE_KINDS[self.table_dtype], self.width, bag.ids,
                               bag.offsets, bag.weights, pooled, self.pooling == "max")
        return pooled

    def _finish(self, parts: list[np.ndarray]) -> np.ndarray:
        pooled = np.concatenate(parts) if len(parts) > 1 else parts[0]  # (n, width)
        x = pooled[:, :self.dim]  # (n, d)
        for i, (weight, bias) in enumerate(self.layers):
            x = x @ weight.T + bias  # (n, out)
            if i < len(self.layers) - 1:
                x = self.activation(x)
        if self.width > self.dim:
            x = x + pooled[:, self.dim:]  # the wide part: (n, n_labels)
        return x.astype(np.float32, copy=False)


class OnnxStudent(_Portable):
    """An exported student in ONNX, run by onnxruntime (`pip install sparse-distill[onnx]`).

    The graph takes ids and weights padded to (batch, longest text) and pools with dense
    Gather -> Mul -> ReduceSum, then the MLP: no EmbeddingBag, so any ONNX runtime can run it."""

    def __init__(self, directory: Path, meta: dict[str, Any], threads: int | None) -> None:
        super().__init__(directory, meta, threads)
        try:
            import onnxruntime as ort
        except ImportError:
            raise DataError("onnxruntime is not installed: pip install "
                            "'sparse-distill[onnx]'") from None
        options = ort.SessionOptions()
        # The chunks run on this class's threads; each session call then uses one.
        options.intra_op_num_threads = 1 if self.threads > 1 else 0
        self.session = ort.InferenceSession(str(directory / "model.onnx"), options,
                                            providers=["CPUExecutionProvider"])
        # 64 MiB of gathered float rows per run
        self.pad_cells = max(1, (64 << 20) // (4 * arch_table_width(meta["architecture"],
                                                                       len(self.labels))))

    @classmethod
    def load(cls, directory: str | Path, threads: int | None = None) -> OnnxStudent:
        directory = Path(directory)
        return cls(directory, read_export(directory, "onnx"), threads)

    def _chunk_logits(self, bag: Bag) -> np.ndarray:
        # The graph gathers (batch, width, d) floats: texts go in order of length, in groups
        # whose padded cells stay under PAD_CELLS (a batch of long documents padded together
        # would ask for gigabytes).
        lengths = np.diff(bag.offsets)  # (n,)
        order = np.argsort(lengths, kind="stable")
        out = np.empty((len(bag), len(self.labels)), np.float32)
        start = 0
        while start < len(order):
            end = start + 1
            while end < len(order) and (end + 1 - start) * max(1, lengths[order[end]]) \
                    <= self.pad_cells:
                end += 1
            group = order[start:end]
            out[group] = self._run(bag, group, lengths)
            start = end
        return out

    def _run(self, bag: Bag, group: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        width = max(1, int(lengths[group].max()))
        ids = np.zeros((len(group), width), np.int64)  # padding: id 0 with weight 0
        weights = np.zeros((len(group), width), np.float32)
        n = lengths[group]  # (g,)
        row = np.repeat(np.arange(len(group)), n)  # (cells,) each cell's row and column
        col = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        source = np.repeat(bag.offsets[group], n) + col  # where the cell's id is in the bag
        ids[row, col] = bag.ids[source]
        weights[row, col] = bag.weights[source]
        return self.session.run(["logits"], {"ids": ids, "weights": weights})[0]
