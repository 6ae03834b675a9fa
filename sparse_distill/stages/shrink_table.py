"""The "Shrinking and exports" table: a student against its shrunk copies (`sdistill shrink`)
and its exports (`sdistill export`), each measured in a fresh process.

`measure_variants` makes each variant of `VARIANTS` under a work directory, then runs this module
as a child process per variant (`python -m sparse_distill.stages.shrink_table ARGS OUT`), so that
its resident memory after loading and after a first batch, and its load time after the imports,
are that variant's own. `evaluation.results.render_variants` writes the rows as the Markdown
table of benchmarks/RESULTS.md.

This module's top level imports only the standard library and the package's base: the child
runs it, and must load only what its variant's loader needs (the parent's shrink and export
functions import torch, which the numpy and ONNX students must not be charged for).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError, SDistillError
from ..files import resident_gib

# The child's loaders, by the variant's format: (module, class, modules imported before the
# clock starts, so that load time is the loading's own).
LOADERS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "torch": ("sparse_distill.inference.student", "Student", ()),
    "numpy": ("sparse_distill.inference.portable", "NumpyStudent", ()),
    # OnnxStudent imports onnxruntime on construction.
    "onnx": ("sparse_distill.inference.portable", "OnnxStudent", ("onnxruntime",)),
}


@dataclass(frozen=True)
class ShrinkRow:
    """One row: the full student (no shrink, no export), a shrunk copy, or an export of the
    full student."""

    name: str
    # `inference.shrink.shrink`'s keyword arguments, as `sdistill shrink` takes them
    shrink: dict[str, Any] = field(default_factory=dict)
    export: str | None = None  # `sdistill export --format`

    @property
    def loader(self) -> str:
        return self.export or "torch"

    @property
    def slug(self) -> str:
        """Its directory's name under the work directory: "10% + int8" -> "10-int8"."""
        return "-".join(self.name.replace("%", "").replace("+", "").split())


# 33% + int8: the largest share of rows whose int8 table (d + 8 bytes a row, 264 of 1,024 at
# d 256) and vocabulary stay within 10% of the full student's bytes.
VARIANTS: tuple[ShrinkRow, ...] = (
    ShrinkRow("full"),
    ShrinkRow("10% of rows", {"keep_share": 0.1}),
    ShrinkRow("3% of rows", {"keep_share": 0.03}),
    ShrinkRow("int8", {"dtype": "int8"}),
    ShrinkRow("10% + int8", {"keep_share": 0.1, "dtype": "int8"}),
    ShrinkRow("33% + int8", {"keep_share": 0.33, "dtype": "int8"}),
    ShrinkRow("numpy export of full", export="numpy"),
    ShrinkRow("onnx export of full", export="onnx"),
)


def measure_variants(student_dir: Path, texts: list[str], labels: list[str], work: Path,
                     batch_sizes: Sequence[int], repeats: int,
                     on_step: Callable[[str], None] | None = None, *,
                     min_texts: int = 20_000) -> list[dict[str, Any]]:
    """One dict per row of `VARIANTS`, in order: each variant made under `work` (replacing an
    earlier one there) and measured in a fresh process on `texts` (the test split, `labels` its
    gold labels). Figures: `bytes` on disk (weights + vocabulary; an export's whole directory)
    and their share of the full student's, `rss_load_gib` / `rss_first_gib` (resident memory
    after loading and after predicting all of `texts` in one call; None off Linux), `load_s`
    (after the imports), `accuracy` and its share of the full student's, `agreement` with the
    full student's labels, and `texts_per_s` at the fastest of `batch_sizes` (`batch_size`;
    `timing.throughput`, median of `repeats`, on `texts` repeated to at least `min_texts`).
    A variant that cannot be made here (no onnx installed, an already shrunk student) is a row
    with only `name` and `skipped`, the reason."""
    # Imported here, not at the top: the child process runs this module (see the module's doc).
    from ..inference.artifact import read_student
    from ..inference.export import export
    from ..inference.shrink import directory_bytes, shrink

    if len(texts) != len(labels) or not texts:
        raise DataError(f"the shrink table needs test texts with a label each; got "
                        f"{len(texts):,} texts and {len(labels):,} labels")
    say = on_step or (lambda _: None)
    student_dir, work = Path(student_dir), Path(work)
    read_student(student_dir)  # a DataError saying what to give, where it is no student
    work.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    full: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="shrink-table-") as tmp:
        texts_file = Path(tmp) / "texts.json"
        texts_file.write_text(json.dumps(texts), encoding="utf-8")
        for variant in VARIANTS:
            directory = work / variant.slug
            say(f"shrink table: making {variant.name}")
            try:
                if variant.export is not None:
                    _check_installed(variant.export)
                    size = export(student_dir, directory, variant.export, force=True).bytes
                    summary = f"`sdistill export --format {variant.export}` of the full student"
                elif variant.shrink:
                    result = shrink(student_dir, directory, force=True, **variant.shrink)
                    size, summary = result.bytes_after, result.summary
                else:
                    directory, size = student_dir, directory_bytes(student_dir)
                    summary = "the student as trained"
            except DataError as exc:
                rows.append({"name": variant.name, "skipped": str(exc)})
                continue
            say(f"shrink table: measuring {variant.name}")
            measured = _run_child(variant, directory, texts_file, Path(tmp), batch_sizes,
                                  repeats, min_texts)
            predictions = measured.pop("predictions")
            accuracy = _share_equal(predictions, labels)
            # The full student is the first row: the others are held against it.
            full = full or {"bytes": size, "accuracy": accuracy, "predictions": predictions}
            rows.append({
                "name": variant.name, "directory": str(directory), "loader": variant.loader,
                "settings": dict(variant.shrink) or ({"format": variant.export} if variant.export
                                               else {}),
                "summary": summary, "bytes": size, "bytes_share": size / full["bytes"],
                **measured, "accuracy": accuracy,
                "accuracy_share": accuracy / full["accuracy"] if full["accuracy"] else None,
                "agreement": _share_equal(predictions, full["predictions"])})
    return rows


def _check_installed(fmt: str) -> None:
    """A DataError (the row's reason to be skipped) where the export or its loader needs a
    package this environment lacks."""
    missing = [m for m in (("onnx", "onnxruntime") if fmt == "onnx" else ())
               if importlib.util.find_spec(m) is None]
    if missing:
        raise DataError(f"{' and '.join(missing)} not installed (pip install "
                        f"'sparse-distill[onnx]')")


def _share_equal(a: list[str], b: list[str]) -> float:
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)


def _run_child(variant: ShrinkRow, directory: Path, texts_file: Path, tmp: Path,
               batch_sizes: Sequence[int], repeats: int, min_texts: int) -> dict[str, Any]:
    """This module's `_child` on `directory`, in a fresh interpreter; its figures and labels."""
    args, out = tmp / f"{variant.slug}.args.json", tmp / f"{variant.slug}.out.json"
    args.write_text(json.dumps({
        "directory": str(directory), "loader": variant.loader, "texts": str(texts_file),
        "batch_sizes": list(batch_sizes), "repeats": repeats, "min_texts": min_texts}),
        encoding="utf-8")
    # The child imports this very package, wherever the parent found it (a checkout that is
    # not the installed one, say).
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run([sys.executable, "-m", __name__,
                           str(args), str(out)], capture_output=True, text=True, env=env,
                          check=False)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise SDistillError(f"measuring {variant.name} ({directory}) in a fresh process failed "
                            f"(exit {done.returncode}):\n{tail}")
    return json.loads(out.read_text(encoding="utf-8"))


def _child(args_file: Path, out_file: Path) -> None:
    """The measuring child's work: load, memory, one call on all texts, then throughput."""
    args = json.loads(args_file.read_text(encoding="utf-8"))
    module, name, extra = LOADERS[args["loader"]]
    loader = getattr(importlib.import_module(module), name)
    for m in extra:
        importlib.import_module(m)
    start = time.perf_counter()
    student = loader.load(args["directory"])
    load_s = time.perf_counter() - start
    rss_load = resident_gib()
    texts: list[str] = json.loads(Path(args["texts"]).read_text(encoding="utf-8"))
    predictions = student.predict(texts)
    rss_first = resident_gib()
    # Only now: timing imports torch and training code, which the numpy and ONNX students do
    # not need; their memory and load time are taken by then.
    from ..evaluation.timing import throughput

    many = texts * max(1, -(-args["min_texts"] // len(texts)))
    rate, batch_size = throughput(student.predict, many, args["batch_sizes"], args["repeats"])
    out_file.write_text(json.dumps({
        "load_s": load_s, "rss_load_gib": rss_load, "rss_first_gib": rss_first,
        "texts_per_s": rate, "batch_size": batch_size, "predictions": list(predictions)}),
        encoding="utf-8")


if __name__ == "__main__":
    _child(Path(sys.argv[1]), Path(sys.argv[2]))
