"""`sdistill export MODEL_DIR OUT --format numpy|onnx`: a student that runs without torch.

Both formats are a directory: `student.json` (labels, architecture, buckets, the export's
layout) and `vocab/` (the featuriser's settings and n-grams, as in the student), plus
- numpy: `table.npy` (memory-mapped by `portable.NumpyStudent`; float32, float16, bfloat16 as
  its uint16 bits, or int8 rows with their float32 scale and offset) and each linear layer's
  `mlp.N.weight.npy` / `mlp.N.bias.npy`;
- onnx: `model.onnx` with its weights in `model.onnx.data`. Inputs `ids` (batch, length) int64
  and `weights` (batch, length) float32, padded with id 0 and weight 0; output `logits`. The
  pooling is dense (Gather -> Mul -> ReduceSum): torch's exporter would emit EmbeddingBag as a
  loop over bags, slow in onnxruntime. A bfloat16 table is widened to float32 (exactly);
  max pooling is not exported (a padded row would take part in the max).
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
from .artifact import arch_table_width, read_student, write_student

FORMATS = ("numpy", "onnx")
OPSET = 17
# The ONNX IR version written: onnxruntime reads up to its own (1.31 reads 13), and opset 17
# needs only 8, so the oldest that carries it keeps the file readable by older runtimes too.
IR_VERSION = 8


@dataclass
class ExportResult:
    output: Path
    fmt: str
    bytes: int  # the directory's files


def _linear_names(state: dict[str, torch.Tensor]) -> list[str]:
    """The MLP's linear layers in order ("mlp.1", "mlp.4", ...)."""
    return sorted({k.rsplit(".", 1)[0] for k in state if k.startswith("mlp.")},
                  key=lambda name: int(name.split(".")[1]))


def _table(state: dict[str, torch.Tensor], dtype: str) -> np.ndarray:
    if dtype == "int8":
        return state["packed"].numpy()  # (rows, d + 8) uint8
    table = state["embedding.weight"]
    if dtype == "bfloat16":
        return table.view(torch.int16).numpy().view(np.uint16)  # the bits, as numpy lacks bf16
    return table.numpy()


def _write_numpy(tmp: Path, state: dict[str, torch.Tensor], dtype: str, layers: list[str]
                 ) -> None:
    np.save(tmp / "table.npy", _table(state, dtype), allow_pickle=False)
    for name in layers:
        for part in ("weight", "bias"):
            np.save(tmp / f"{name}.{part}.npy", state[f"{name}.{part}"].numpy(),
                    allow_pickle=False)


def _write_onnx(tmp: Path, state: dict[str, torch.Tensor], arch: dict[str, Any], n_labels: int,
                layers: list[str]) -> None:
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise DataError("the onnx package is not installed: pip install "
                        "'sparse-distill[onnx]'") from None
    dtype, d = arch.get("table_dtype", "float32"), arch["embedding_dim"]
    width = arch_table_width(arch, n_labels)  # d, and n_labels more for a wide student
    inits: list[Any] = []
    nodes: list[Any] = []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], **attrs))
        return output

    axis2 = const("axis2", np.array([2], np.int64))
    if dtype == "int8":
        packed = state["packed"].numpy()  # (rows, width + 8)
        scale_offset = np.ascontiguousarray(packed[:, width:]).view(np.float32)  # (rows, 2)
        codes = node("Gather", [const("codes", packed[:, :width]), "ids"],
                     "g_codes")  # (b, L, width)
        values = node("Cast", [codes], "g_values", to=TensorProto.FLOAT)
        scale = node("Unsqueeze", [node("Gather", [const("scale", scale_offset[:, 0]), "ids"],
                                        "g_scale"), axis2], "g_scale3")  # (b, L, 1)
        offset = node("Unsqueeze", [node("Gather", [const("offset", scale_offset[:, 1]),
                                                    "ids"], "g_offset"), axis2], "g_offset3")
        rows = node("Add", [node("Mul", [values, scale], "g_scaled"), offset], "rows")
    else:
        table = state["embedding.weight"]
        table = table.float() if dtype == "bfloat16" else table  # exact widening
        rows = node("Gather", [const("table", table.numpy()), "ids"], "rows")  # (b, L, width)
        if dtype == "float16":
            rows = node("Cast", [rows], "rows_f32", to=TensorProto.FLOAT)
    weighted = node("Mul", [rows, node("Unsqueeze", ["weights", axis2], "weights3")],
                    "weighted")  # (b, L, width)
    x = node("ReduceSum", [weighted, const("axis1", np.array([1], np.int64))], "pooled",
             keepdims=0)  # (b, width)
    linear = None
    if width > d:  # the wide part's columns go straight to the logits
        axis1 = const("slice_axis", np.array([1], np.int64))
        at_d = const("slice_d", np.array([d], np.int64))
        linear = node("Slice", [x, at_d, const("slice_end", np.array([width], np.int64)), axis1],
                      "linear")  # (b, n_labels)
        x = node("Slice", [x, const("slice_0", np.array([0], np.int64)), at_d, axis1],
                 "deep")  # (b, d)
    for i, name in enumerate(layers):
        last = i == len(layers) - 1
        weight = state[f"{name}.weight"].numpy().T  # (in, out)
        x = node("Add", [node("MatMul", [x, const(f"{name}.wt", weight)], f"{name}.mm"),
                         const(f"{name}.b", state[f"{name}.bias"].numpy())],
                 "logits" if last and linear is None else f"{name}.out")
        if not last:
            x = node("Tanh" if arch["activation"] == "tanh" else "Relu", [x], f"{name}.act")
    if linear is not None:
        node("Add", [x, linear], "logits")
    graph = helper.make_graph(
        nodes, "sparse_distill_student",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "length"]),
         helper.make_tensor_value_info("weights", TensorProto.FLOAT, ["batch", "length"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n_labels])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="sparse-distill", ir_version=IR_VERSION)
    onnx.checker.check_model(model)
    onnx.save_model(model, str(tmp / "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="model.onnx.data",
                    size_threshold=1024)


def export(model_dir: str | Path, out: str | Path, fmt: str, force: bool = False
           ) -> ExportResult:
    """Write the student of `model_dir` to `out` in `fmt` (see the module's doc)."""
    model_dir, out = Path(model_dir), Path(out)
    if fmt not in FORMATS:
        raise DataError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    meta = read_student(model_dir)
    refuse_overwrite(out, force)
    arch = meta["architecture"]
    if fmt == "onnx" and arch["pooling"] == "max":
        raise DataError(f"{model_dir}: max pooling is not exported to ONNX (a padded row would "
                        "take part); use --format numpy")
    state = load_file(str(model_dir / "model.safetensors"))
    layers = _linear_names(state)
    with staged_dir(out, force=force) as tmp:  # renamed into place only when complete
        if fmt == "numpy":
            _write_numpy(tmp, state, arch.get("table_dtype", "float32"), layers)
        else:
            _write_onnx(tmp, state, arch, len(meta["labels"]), layers)
        shutil.copytree(model_dir / "vocab", tmp / "vocab")
        write_student(tmp, {**meta, "export": {"format": fmt, "from": str(model_dir),
                                               "layers": layers}})
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return ExportResult(out, fmt, size)
