"""The commands on a student directory: predict, shrink, export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import ForceOpt, app, err, out, user_errors


@app.command()
def predict(
    model_dir: Annotated[Path, typer.Argument(help="A trained student directory.")],
    input_: Annotated[str, typer.Option("--input", "-i", help="Texts: a .txt (one a line), "
                                        ".jsonl or .csv file, or - for stdin.")] = "-",
    output: Annotated[str | None, typer.Option("--output", "-o", help="jsonl output "
                                               "[default: stdout].")] = None,
    top_k: Annotated[int | None, typer.Option("--top-k", min=1, help="Only the K most probable "
                                              "labels.")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="txt, jsonl, csv or tsv "
                                            "[default: from the name; stdin: txt].")] = None,
    text_column: Annotated[str, typer.Option(help="The text field of jsonl/csv input.")] = "text",
    batch_size: Annotated[int, typer.Option(min=1)] = 1024,
    device: Annotated[str, typer.Option(help="Where the model runs: cpu, cuda, cuda:N or auto "
                                        "(the featuriser always runs on the CPU).")] = "cpu",
    min_confidence: Annotated[float | None, typer.Option(
        "--min-confidence", min=0.0, max=1.0,
        help="Mark rows whose top probability is below P \"abstained\": true (the student's "
             "probabilities are calibrated on dev; eval's report shows coverage and accuracy "
             "at several P).")] = None,
    force: ForceOpt = False,
) -> None:
    """Raw text (file or stdin) -> label + probabilities, as jsonl, streamed in batches."""
    from ..inference.artifact import read_student
    from ..inference.predict import predict_file
    from ..inference.student import Student

    with user_errors():
        read_student(model_dir, "give RUN/student after `sdistill train-student CONFIG`")
        stats = predict_file(Student.load(model_dir, device=device), input_, output, fmt=fmt,
                             text_column=text_column, top_k=top_k, batch_size=batch_size,
                             force=force, on_skip=lambda m: err.print(f"[yellow]{m}[/]"),
                             min_confidence=min_confidence)
    abstained = "" if min_confidence is None else \
        f"; abstained on {stats.abstained:,} (top probability < {min_confidence:g})"
    err.print(f"predicted {stats.predicted:,} texts{abstained}; skipped {stats.skipped:,} bad "
              "lines" + (f" -> {output}" if output else ""))


@app.command()
def shrink(
    model_dir: Annotated[Path, typer.Argument(help="A trained student directory.")],
    out_dir: Annotated[Path, typer.Argument(help="Where the smaller student goes (a new "
                                            "directory).")],
    keep: Annotated[int | None, typer.Option(help="Keep the N most frequent n-grams.")] = None,
    keep_share: Annotated[float | None, typer.Option(
        help="Keep this share of the n-grams, most frequent first (e.g. 0.1).")] = None,
    min_df: Annotated[int | None, typer.Option(
        help="Keep only n-grams found in at least K training texts.")] = None,
    max_order: Annotated[int | None, typer.Option(
        help="Keep only n-grams of at most this many words (the featuriser stops there).")
    ] = None,
    dtype: Annotated[str, typer.Option(
        help="The table's storage: float32, float16, bfloat16, or int8 (a scale and offset "
             "per row).")] = "float32",
    force: ForceOpt = False,
) -> None:
    """A smaller student: fewer n-grams (most frequent first) and/or a table in int8 or 16 bits.
    The result works like any student (predict, export, Student.load)."""
    from ..inference.shrink import shrink as run_shrink

    with user_errors():
        result = run_shrink(model_dir, out_dir, keep=keep, keep_share=keep_share, min_df=min_df,
                            max_order=max_order, dtype=dtype, force=force)
    out.print(f"shrink: {result.summary}")
    out.print(f"table rows {result.of:,} -> {result.rows:,}; weights + vocabulary "
              f"{result.bytes_before / 2**20:,.1f} MiB -> {result.bytes_after / 2**20:,.1f} MiB "
              f"({result.bytes_after / result.bytes_before:.1%})")
    out.print(f"output: {result.output}")
    out.print(f"next:   sdistill predict {result.output} -i TEXTS.txt")


@app.command("export")
def export_(
    model_dir: Annotated[Path, typer.Argument(help="A student directory (trained or shrunk).")],
    out_dir: Annotated[Path, typer.Argument(help="Where the export goes (a new directory).")],
    fmt: Annotated[str, typer.Option("--format", help="numpy (needs only numpy and this "
                                     "package's featuriser) or onnx (any ONNX runtime).")
                   ] = "numpy",
    force: ForceOpt = False,
) -> None:
    """A student that runs without torch: numpy arrays or an ONNX graph, beside its
    vocabulary and featuriser settings."""
    from ..inference.export import export

    with user_errors():
        result = export(model_dir, out_dir, fmt, force=force)
    out.print(f"export: {result.fmt}, {result.bytes / 2**20:,.1f} MiB in {result.output}")
    loader = "NumpyStudent" if result.fmt == "numpy" else "OnnxStudent"
    out.print(f"use:    from sparse_distill import {loader}; "
              f"{loader}.load('{result.output}').predict(texts)")
