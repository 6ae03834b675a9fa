"""The inference path's model: the sparse n-gram DAN, its weights on disk, and a trained
student directory loaded to predict (`Student.load(dir).predict(texts)`).

Text -> ids is `featurize.py`; ids -> logits is here. This module and `featurize.py` sit at the
bottom of the import graph: no training, teacher, transformers or scikit-learn code, so that a
service that only predicts imports torch, numpy and safetensors and nothing else of the
pipeline. Training (`student.py`), labelling and evaluation are built on top of them.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from .errors import DataError
from .featurize import (
    MIN_TEXTS_PER_THREAD,
    NO_BUCKETS,
    Bag,
    Featurizer,
    Unseen,
    Vocabulary,
    thread_pool,
    usable_cpus,
)
from .portable import Predictions

# ---------------------------------------------------------------------------------------------
# The model


# How a table may be stored (`sdistill shrink`): float32 (trained), float16 or bfloat16 (half the
# bytes; pooled in that dtype, then float32), or int8: fbgemm's row-wise layout, each row its d
# bytes then its float32 scale and bias (value = byte * scale + bias), read by torch's quantized
# EmbeddingBag without ever being widened to a float table.
TABLE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
                "int8": torch.uint8}


class SparseDAN(nn.Module):
    """ids/offsets/weights (EmbeddingBag inputs) -> class logits; the table's gradient is sparse."""

    def __init__(self, vocab_size: int, n_classes: int, embedding_dim: int,
                 hidden_dims: list[int], pooling: str = "mean", activation: str = "relu",
                 dropout: float = 0.1, dense_bf16: bool = False, initialise: bool = True,
                 table_dtype: str = "float32"):
        """initialise=False leaves the table unwritten, for weights about to be loaded: drawing
        1M x 256 random numbers only to replace them took 3.4 s of a 4.4 s load. A table_dtype
        other than float32 is for inference only (a shrunk student)."""
        super().__init__()
        self.dense_bf16 = dense_bf16
        self.pooling = pooling
        self.table_dtype = table_dtype
        # mean and sum take per-id weights (EmbeddingBag's own "mean" does not), so both are
        # a weighted sum; max ignores the counts.
        self.mode = "max" if pooling == "max" else "sum"
        if table_dtype == "int8":
            self.embedding = None
            self.register_buffer("packed", torch.empty(vocab_size, embedding_dim + 8,
                                                       dtype=torch.uint8))
        elif initialise:
            self.embedding = nn.Embedding(vocab_size, embedding_dim, sparse=True)
            nn.init.normal_(self.embedding.weight, std=embedding_dim ** -0.5)
        else:  # an empty tensor: its pages are not even touched before the weights replace it
            self.embedding = nn.Embedding(
                vocab_size, embedding_dim, sparse=True,
                _weight=torch.empty(vocab_size, embedding_dim, dtype=TABLE_DTYPES[table_dtype]))
        act = nn.ReLU if activation == "relu" else nn.Tanh
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        width = embedding_dim
        for hidden in hidden_dims:
            layers += [nn.Linear(width, hidden), act(), nn.Dropout(dropout)]
            width = hidden
        layers.append(nn.Linear(width, n_classes))
        self.mlp = nn.Sequential(*layers)

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor
                ) -> torch.Tensor:
        # ids: (nnz,) offsets: (batch + 1,) weights: (nnz,) -> (batch, n_classes)
        per_id = None if self.mode == "max" else weights
        if self.embedding is None:  # int8 rows, dequantised inside the kernel
            pooled = torch.ops.quantized.embedding_bag_byte_rowwise_offsets(
                self.packed, ids, offsets, False, 2 if self.mode == "max" else 0, False,
                per_id, None, True)  # (batch, d)
            return self._mlp(pooled)
        table = self.embedding.weight
        if table.dtype != torch.float32:  # float16 / bfloat16: pooled in its dtype
            pooled = F.embedding_bag(ids, table, offsets, mode=self.mode,
                                     per_sample_weights=None if per_id is None
                                     else per_id.to(table.dtype), include_last_offset=True)
            return self._mlp(pooled.float())
        if torch.is_grad_enabled() and table.requires_grad:
            # Look each distinct id up once: the sparse gradient then has one row per distinct
            # n-gram of the batch instead of one per occurrence, which halves SparseAdam's work
            # (it must coalesce duplicate rows) on real text.
            unique, inverse = torch.unique(ids, return_inverse=True)  # (u,), (nnz,)
            rows = F.embedding(unique, table, sparse=True)  # (u, d)
            pooled = F.embedding_bag(inverse, rows, offsets, mode=self.mode,
                                     per_sample_weights=per_id, include_last_offset=True)
        else:
            pooled = F.embedding_bag(ids, table, offsets, mode=self.mode,
                                     per_sample_weights=per_id, include_last_offset=True)
        if self.dense_bf16 and pooled.is_cuda:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return self._mlp(pooled).float()  # (batch, n_classes)
        return self._mlp(pooled)  # pooled: (batch, d)

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return self.mlp(x)
        # At inference the dropouts are identities: the layers run as plain functions, without
        # nn.Module's per-call overhead (most of a one-text prediction's time otherwise).
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                x = F.linear(x, layer.weight, layer.bias)
            elif isinstance(layer, nn.ReLU):
                x = torch.relu(x)
            elif isinstance(layer, nn.Tanh):
                x = torch.tanh(x)
        return x

    def dense_parameters(self) -> list[nn.Parameter]:
        return list(self.mlp.parameters())


_SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                       torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8"}


def save_weights(state: dict[str, torch.Tensor], path: Path) -> None:
    """Write a safetensors file straight from the tensors' memory, atomically.

    `safetensors.torch.save_file` first copies every tensor into a bytes object: for a 1B-row
    table that is a second 4 GB table. This writes the same format (8-byte header length, JSON
    header, raw little-endian data) from views, so no dense copy of the table is ever made.
    """
    header: dict[str, Any] = {}
    tensors = []
    offset = 0
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        size = tensor.numel() * tensor.element_size()
        header[name] = {"dtype": _SAFETENSORS_DTYPES[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + size]}
        tensors.append(tensor)
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the data starts 8-byte aligned

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(len(blob).to_bytes(8, "little"))
            f.write(blob)
            for tensor in tensors:
                f.write(memoryview(tensor.view(torch.uint8).numpy()))

    write_then_replace(path, write)


def write_then_replace(path: Path, write: Callable[[Path], None]) -> None:
    """`write(tmp)` under a temporary name beside `path`, then renamed into place. On any error
    (a full disk, say) the temporary file is removed and `path` is left as it was."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def bag_tensors(bag: Bag, pooling: str, device: torch.device
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    weights = bag.mean_weights() if pooling == "mean" else bag.weights
    return (torch.from_numpy(bag.ids.astype(np.int64, copy=False)).to(device),
            torch.from_numpy(bag.offsets).to(device),
            torch.from_numpy(np.ascontiguousarray(weights, dtype=np.float32)).to(device))



# ---------------------------------------------------------------------------------------------
# A trained student: load and predict


_torch_threads_lock = threading.Lock()
_torch_threads_users = 0
_torch_threads_saved = 1


@contextlib.contextmanager
def torch_single_threaded() -> Iterator[None]:
    """torch on one intra-op thread while this package's own threads each run a model call.

    Each thread's call would otherwise start an OpenMP team as wide as the machine, and two
    teams on two cores fight over them. Re-entrant and thread-safe: torch's setting comes back
    when the last user leaves (changing it costs ~0.5 ms, so only calls that split their work
    across threads take this)."""
    global _torch_threads_users, _torch_threads_saved
    with _torch_threads_lock:
        if _torch_threads_users == 0:
            _torch_threads_saved = torch.get_num_threads()
            torch.set_num_threads(1)
        _torch_threads_users += 1
    try:
        yield
    finally:
        with _torch_threads_lock:
            _torch_threads_users -= 1
            if _torch_threads_users == 0:
                torch.set_num_threads(_torch_threads_saved)


def inference_device(device: str | torch.device) -> torch.device:
    """`device` as torch's, "auto" resolved; a CUDA device this machine lacks is a clear error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except RuntimeError:
        raise DataError(f"device {device!r}: expected cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (
            device.index is not None and device.index >= torch.cuda.device_count())):
        raise DataError(f"device {device}: this machine has {torch.cuda.device_count()} CUDA "
                        "device(s); use cpu or auto")
    return device


class Student(Predictions):
    """A trained student directory: `Student.load(dir).predict(["some text", ...])`.

    A call of many texts is cut into chunks that `threads` threads (default: every usable CPU)
    each featurise and classify whole, torch running on one thread meanwhile: the featuriser
    and the model both wait on memory, and side by side they keep both cores busy where one
    after the other, each split across the cores, did not (measured in scripts/
    bench_inference.py). A call of fewer than 2 x 256 texts runs in the calling thread.
    """

    def __init__(self, model: SparseDAN, vocab: Vocabulary, labels: list[str], pooling: str,
                 threads: int | None = None, unseen: Unseen = NO_BUCKETS):
        self.model = model.eval()
        self.device = model.mlp[-1].weight.device
        self.labels = labels
        self.pooling = pooling
        self.threads = max(1, threads or usable_cpus())
        # On the CPU the chunks are the parallel work (threads=1 here). On a GPU the featuriser's
        # threads split each batch and the model runs once a batch: threads each featurising a
        # chunk, sending it to the GPU and waiting for it (4 chunks a batch of 1,024) made
        # 42,000 documents/s where the model alone ran 245,000 (scripts/bench_gpu.py, H100).
        self.featurizer = Featurizer(vocab, threads=1 if self.device.type == "cpu" else
                                     self.threads, unseen=unseen)

    @classmethod
    def load(cls, directory: str | Path, weights: str = "model.safetensors",
             threads: int | None = None, device: str | torch.device = "cpu") -> Student:
        """The student of `directory` on `device` ("cpu", "cuda", "cuda:1", "auto": CUDA where
        there is one): its model runs there, its featuriser on the CPU."""
        directory = Path(directory)
        device = inference_device(device)
        meta = json.loads((directory / "student.json").read_text(encoding="utf-8"))
        arch = meta["architecture"]
        table_dtype = arch.get("table_dtype", "float32")
        if table_dtype == "int8" and device.type != "cpu":
            raise DataError(f"{directory}: its int8 table runs on the CPU only (torch's "
                            "quantized EmbeddingBag); load it with device='cpu'")
        model = SparseDAN(arch["vocab_size"], len(meta["labels"]), arch["embedding_dim"],
                          arch["hidden_dims"], arch["pooling"], arch["activation"], 0.0,
                          initialise=False, table_dtype=table_dtype)
        model.load_state_dict(load_file(str(directory / weights), device=str(device)),
                              assign=True)
        return cls(model, Vocabulary.load(directory / "vocab"), meta["labels"], arch["pooling"],
                   threads, Unseen.from_json(arch.get("unseen")))

    def tensors(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The model's inputs for `texts`: ids (nnz,) int32, offsets (n + 1,) int64 and weights
        (nnz,) float32, straight from the featuriser's buffers (no copy, no per-text Python)."""
        bag = self.featurizer.bag(texts, mean=self.pooling == "mean")
        return (torch.from_numpy(bag.ids), torch.from_numpy(bag.offsets),
                torch.from_numpy(bag.weights))

    @torch.inference_mode()
    def forward(self, inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> np.ndarray:
        """(n_texts, n_classes) logits of inputs made by `tensors`, on the model's device."""
        if self.device.type == "cpu":
            return self.model(*inputs).numpy()
        return self.model(*(x.to(self.device) for x in inputs)).cpu().numpy()

    def map(self, fn: Callable[[Any], np.ndarray], items: list[Any]) -> list[np.ndarray]:
        """`fn` over `items` on the student's threads (torch single-threaded meanwhile), in
        order; one item, one thread, or a model on a GPU, runs in the calling thread."""
        if len(items) <= 1 or self.threads == 1 or self.device.type != "cpu":
            return [fn(item) for item in items]
        with torch_single_threaded():
            return list(thread_pool(self.threads, "student").map(fn, items))

    def chunks(self, texts: list[str], batch_size: int = 1024) -> list[list[str]]:
        """`texts` cut as `logits` cuts them: at most batch_size texts a chunk, and on the CPU
        at least MIN_TEXTS_PER_THREAD (a chunk costs a thread handover)."""
        size = batch_size if self.device.type != "cpu" else \
            min(batch_size, max(MIN_TEXTS_PER_THREAD, -(-len(texts) // self.threads)))
        return [texts[i:i + size] for i in range(0, len(texts), size)]

    def logits(self, texts: list[str], batch_size: int = 1024) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(self.labels)), np.float32)
        # each (chunk, n_classes)
        return np.concatenate(self.map(lambda chunk: self.forward(self.tensors(chunk)),
                                       self.chunks(texts, batch_size)))
