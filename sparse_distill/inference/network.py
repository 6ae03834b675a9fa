"""The student's network: the sparse n-gram DAN, and its weights on disk.

`SparseDAN` takes EmbeddingBag inputs (ids, offsets, weights: `featurize.Bag`) and returns class
logits; `save_weights` writes a safetensors file without a dense copy of the table. Training
(`sparse_distill.training`) and serving (`student.Student`) both build on this module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..files import write_then_replace
from .artifact import table_width
from .featurize import Bag

# How a table may be stored (`sdistill shrink`): float32 (trained), float16 or bfloat16 (half the
# bytes; pooled in that dtype, then float32), or int8: fbgemm's row-wise layout, each row its d
# bytes then its float32 scale and bias (value = byte * scale + bias), read by torch's quantized
# EmbeddingBag without ever being widened to a float table.
TABLE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
                "int8": torch.uint8}


class SparseDAN(nn.Module):
    """ids/offsets/weights (EmbeddingBag inputs) -> class logits; the table's gradient is sparse.

    wide=True ("wide and deep"): each row carries n_classes more columns, pooled by the same
    gather, that are added to the MLP's logits: a linear model over the same n-grams beside
    the DAN. A long document's few decisive n-grams then reach the logits directly instead of
    through the MLP's view of the mean, at the cost of n_classes more floats a row and no
    second lookup.
    """

    def __init__(self, vocab_size: int, n_classes: int, embedding_dim: int,
                 hidden_dims: list[int], pooling: str = "mean", activation: str = "relu",
                 dropout: float = 0.1, dense_bf16: bool = False, initialise: bool = True,
                 table_dtype: str = "float32", wide: bool = False):
        """initialise=False leaves the table unwritten, for weights about to be loaded: drawing
        1M x 256 random numbers only to replace them took 3.4 s of a 4.4 s load. A table_dtype
        other than float32 is for inference only (a shrunk student)."""
        super().__init__()
        self.dense_bf16 = dense_bf16
        self.pooling = pooling
        self.table_dtype = table_dtype
        self.dim = embedding_dim
        self.width = table_width(embedding_dim, n_classes, wide)
        # mean and sum take per-id weights (EmbeddingBag's own "mean" does not), so both are
        # a weighted sum; max ignores the counts.
        self.mode = "max" if pooling == "max" else "sum"
        if table_dtype == "int8":
            self.embedding = None
            self.register_buffer("packed", torch.empty(vocab_size, self.width + 8,
                                                       dtype=torch.uint8))
        elif initialise:
            self.embedding = nn.Embedding(vocab_size, self.width, sparse=True)
            nn.init.normal_(self.embedding.weight, std=embedding_dim ** -0.5)
            with torch.no_grad():  # the linear part starts at zero, as a linear model does
                self.embedding.weight[:, embedding_dim:] = 0.0
        else:  # an empty tensor: its pages are not even touched before the weights replace it
            self.embedding = nn.Embedding(
                vocab_size, self.width, sparse=True,
                _weight=torch.empty(vocab_size, self.width, dtype=TABLE_DTYPES[table_dtype]))
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
                per_id, None, True)  # (batch, width)
            return self.head(pooled)
        table = self.embedding.weight
        if table.dtype != torch.float32:  # float16 / bfloat16: pooled in its dtype
            pooled = F.embedding_bag(ids, table, offsets, mode=self.mode,
                                     per_sample_weights=None if per_id is None
                                     else per_id.to(table.dtype), include_last_offset=True)
            return self.head(pooled.float())
        if torch.is_grad_enabled() and table.requires_grad:
            # Look each distinct id up once: the sparse gradient then has one row per distinct
            # n-gram of the batch instead of one per occurrence, which halves SparseAdam's work
            # (it must coalesce duplicate rows) on real text.
            unique, inverse = torch.unique(ids, return_inverse=True)  # (u,), (nnz,)
            rows = F.embedding(unique, table, sparse=True)  # (u, width)
            pooled = F.embedding_bag(inverse, rows, offsets, mode=self.mode,
                                     per_sample_weights=per_id, include_last_offset=True)
        else:
            pooled = F.embedding_bag(ids, table, offsets, mode=self.mode,
                                     per_sample_weights=per_id, include_last_offset=True)
        if self.dense_bf16 and pooled.is_cuda:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return self.head(pooled).float()  # (batch, n_classes)
        return self.head(pooled)  # pooled: (batch, width)

    def head(self, pooled: torch.Tensor) -> torch.Tensor:
        """(batch, width) pooled rows -> (batch, n_classes): the MLP on the first d columns,
        plus the linear part's columns when the table is wide."""
        logits = self._mlp(pooled[:, :self.dim])  # (batch, n_classes)
        if self.width > self.dim:
            logits = logits + pooled[:, self.dim:].to(logits.dtype)
        return logits

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


def load_weights_into(module: nn.Module, path: Path) -> None:
    """Read a safetensors file (`save_weights`'s) straight into `module`'s tensors on the CPU.

    `load_file` then `load_state_dict` holds the file's table beside the module's own for the
    copy: when training reloads its best weights at d 1000, 4 GB more at the stage's peak.
    Here each tensor's bytes go from the file into the tensor's memory."""
    state = module.state_dict()
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
        header.pop("__metadata__", None)
        if set(header) != set(state):
            raise ValueError(f"{path}: holds {sorted(header)}, the model has {sorted(state)}")
        start = 8 + size
        for name, info in header.items():
            tensor = state[name]
            if (info["dtype"] != _SAFETENSORS_DTYPES[tensor.dtype]
                    or info["shape"] != list(tensor.shape) or tensor.device.type != "cpu"
                    or not tensor.is_contiguous()):
                raise ValueError(f"{path}: {name} is {info['dtype']} {info['shape']}, the "
                                 f"model's is {tensor.dtype} {list(tensor.shape)}")
            lo, hi = info["data_offsets"]
            f.seek(start + lo)
            with torch.no_grad():
                if f.readinto(memoryview(tensor.view(torch.uint8).numpy()).cast("B")) != hi - lo:
                    raise ValueError(f"{path}: {name} is cut short")


def bag_tensors(bag: Bag, pooling: str, device: torch.device
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    weights = bag.mean_weights() if pooling == "mean" else bag.weights
    return (torch.from_numpy(bag.ids.astype(np.int64, copy=False)).to(device),
            torch.from_numpy(bag.offsets).to(device),
            torch.from_numpy(np.ascontiguousarray(weights, dtype=np.float32)).to(device))
