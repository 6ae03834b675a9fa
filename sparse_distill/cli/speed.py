"""`sdistill speed ...`: measurements of single parts (students side by side, the training loop,
teacher labelling, a GPU's teacher vs student), each a thin command over a function of
`sparse_distill.evaluation.speed` that returns the figures this prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table

from ..errors import SDistillError
from ..files import default_cache_dir
from ..progress import LogLines, Reporter
from .common import out, user_errors

speed_app = typer.Typer(help="Speed of single parts, measured in one process: students side by "
                             "side, the training loop, teacher labelling, teacher vs student on "
                             "a device.", no_args_is_help=True)

RepeatsOpt = Annotated[int, typer.Option(min=1, help="Timings a figure is the median of.")]
CacheOpt = Annotated[Path | None, typer.Option(
    "--cache-dir", help="The fetch cache (`sdistill data fetch`) \\[default: $SDISTILL_CACHE, "
                        "else ~/.cache/sparse-distill].", show_default=False)]


JsonOpt = Annotated[Path | None, typer.Option(
    "--json", help="Also write the figures here as JSON (scripts/gpu_check.sh writes "
                   "benchmarks/gpu/*.json, which `sdistill benchmark` renders).",
    show_default=False)]


def _write_json(path: Path | None, record: dict[str, object]) -> None:
    if path is not None:
        from ..files import atomic_write_json

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, record)
        out.print(f"wrote {path}")


def _command() -> str:
    import sys

    return " ".join(["sdistill", *sys.argv[1:]])


def _reporter() -> Reporter:
    # Plain lines, a few a minute: a timing's progress, not a bar redrawn while it is timed.
    return LogLines(interval=10.0)


@speed_app.command("students")
def students(
    texts: Annotated[Path, typer.Option(help="The texts: a .txt (one a line), .jsonl, .csv or "
                                        ".tsv file.", show_default=False)],
    student: Annotated[list[str], typer.Option(
        metavar="NAME=DIR", help="A student directory, timed as a row named NAME; repeatable. "
                                 "Ratios are to the first.", show_default=False)],
    text_column: Annotated[str, typer.Option(help="The text field of jsonl/csv input.")
                           ] = "text",
    min_texts: Annotated[int, typer.Option(min=1, help="The texts are repeated to at least "
                                           "this many.")] = 20_000,
    batch_size: Annotated[int, typer.Option(min=1)] = 1024,
    repeats: Annotated[int, typer.Option(min=1, help="Interleaved rounds a figure is the "
                                         "median of.")] = 7,
    device: Annotated[str, typer.Option(help="Where the students' models run: cpu, cuda, "
                                        "cuda:N or auto.")] = "cpu",
) -> None:
    """Texts/s of several students on the same texts, as ratios to the first.

    What an option (buckets, sub-words, a shrunk table) costs in speed: end to end, the
    students loaded in one process and timed in interleaved rounds; with their table rows, load
    time and the memory each added."""
    from ..evaluation.speed import code_version, compare_students, read_texts

    with user_errors():
        directories: dict[str, Path] = {}
        for spec in student:
            name, sep, directory = spec.partition("=")
            if not sep or not name or not directory:
                raise SDistillError(f"--student {spec!r}: expected NAME=DIR")
            if name in directories:
                raise SDistillError(f"--student {spec!r}: the name {name!r} is given twice; "
                                    "name each student apart")
            directories[name] = Path(directory)
        report = _reporter()
        try:
            result = compare_students(directories, read_texts(texts, text_column=text_column),
                                      batch_size, repeats, min_texts, device, report)
        finally:
            report.close()
    table = Table("student", "table rows", "load + first batch s", "memory added GiB",
                  "texts/s", "ratio to first", title_justify="left",
                  title=f"{result.n_texts:,} texts from {texts}, batch {result.batch_size}, "
                        f"{result.device}, median of {result.repeats} interleaved rounds")
    for row in result.students:
        memory = "-" if row.memory_added_gib is None else f"{row.memory_added_gib:.2f}"
        table.add_row(row.name, f"{row.table_rows:,}", f"{row.load_s:.2f}", memory,
                      f"{row.texts_per_s:,.0f}", f"{row.ratio:.3f}")
    out.print(table)
    fastest = max(result.students, key=lambda r: r.texts_per_s)
    out.print(f"fastest: {fastest.name}, {fastest.texts_per_s:,.0f} texts/s ({fastest.ratio:.2f}x "
              f"{result.students[0].name}); sparse_distill {code_version()}")


@speed_app.command("train")
def train(
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "auto",
    dims: Annotated[list[int] | None, typer.Option(
        min=1, help="Embedding sizes d to time (one hidden layer of d); repeatable, in this "
                    "order \\[default: 256, 1000].", show_default=False)] = None,
    vocab_size: Annotated[int, typer.Option(min=1, help="|V|, the table's rows.")] = 1_000_000,
    batch_size: Annotated[int, typer.Option(min=1)] = 2048,
    texts: Annotated[int, typer.Option(min=1, help="Texts of the synthetic corpus.")
                     ] = 200_000,
    ngrams: Annotated[int, typer.Option(min=1, help="Ids a text (drawn from a Zipf law).")
                      ] = 40,
    steps: Annotated[int, typer.Option(min=1, help="Steps timed.")] = 50,
    warmup: Annotated[int, typer.Option(min=0, help="Steps run before the timed ones.")] = 10,
    gather: Annotated[Literal["auto", "host", "device"], typer.Option(
        help="Where batches are gathered (auto: the library's choice, on the GPU when the "
             "corpus fits there).")] = "auto",
    prefetch: Annotated[int | None, typer.Option(
        min=0, help="Batches prepared ahead \\[default: the library's, 0 on the CPU].",
        show_default=False)] = None,
    json_out: JsonOpt = None,
) -> None:
    """Samples/s of the student's training loop, and the share of it the device waits.

    The library's own loop at |V| 1M on a synthetic Zipf corpus (no data needed), then the same
    steps on batches made beforehand; on CUDA also the peak GPU memory."""
    from ..evaluation.speed import code_version, speed_record, train_loop_speed

    with user_errors():
        report = _reporter()
        try:
            result = train_loop_speed(dims or [256, 1000], device, vocab_size, batch_size,
                                      texts, ngrams, steps, warmup, gather, prefetch, report)
        finally:
            report.close()
    table = Table("d", "loop samples/s", "steps alone samples/s", "host-wait share",
                  "peak GPU memory", title_justify="left",
                  title=f"{result.device}; |V| {result.vocab_size:,}, batch {result.batch_size}, "
                        f"{result.ngrams} ids a text (Zipf), {result.steps} steps after "
                        f"{result.warmup}, {result.prefetch} batches prepared ahead, gathered "
                        f"on: {result.gather}")
    for row in result.rows:
        peak = "-" if row.peak_gib is None else f"{row.peak_gib:.2f} GiB"
        table.add_row(str(row.dim), f"{row.samples_per_s:,.0f}",
                      f"{row.steps_samples_per_s:,.0f}", f"{row.host_wait_share:.1%}", peak)
    out.print(table)
    worst = max(result.rows, key=lambda r: r.host_wait_share)
    out.print(f"host wait at most {worst.host_wait_share:.1%} (d {worst.dim}); "
              f"sparse_distill {code_version()}")
    _write_json(json_out, speed_record(
        _command(), result.device, {"training loop": result.rows},
        {k: v for k, v in vars(result).items() if k != "rows"}))


@speed_app.command("teacher")
def teacher(
    cache_dir: CacheOpt = None,
    model: Annotated[Path | None, typer.Option(
        help="A teacher classifier folder (e.g. RUN/teacher/model) \\[default: the cache's "
             "MiniLM with a fresh 2-class head: the same speed].", show_default=False)] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    batch_size: Annotated[int, typer.Option(min=1, help="Labelling batch.")] = 128,
    repeats: RepeatsOpt = 3,
    short_texts: Annotated[int, typer.Option(min=1, help="Rotten Tomatoes snippets, at "
                                             "max_length 64.")] = 2000,
    long_texts: Annotated[int, typer.Option(min=1, help="20 Newsgroups posts, at max_length "
                                            "256.")] = 400,
) -> None:
    """Teacher labelling texts/s: fp32 vs bf16, batches sorted by length vs in input order.

    End to end on real texts (`sdistill data fetch rt 20ng minilm`): Rotten Tomatoes snippets
    at max_length 64, 20 Newsgroups posts at 256; and how often bf16 predicts what fp32 does."""
    from ..evaluation.speed import code_version, teacher_speed

    with user_errors():
        report = _reporter()
        try:
            result = teacher_speed(cache_dir or default_cache_dir(), model, device, batch_size,
                                   repeats, short_texts, long_texts, report)
        finally:
            report.close()
    table = Table("texts", "max_length", "n", "precision", "order", "texts/s", "vs first",
                  title_justify="left",
                  title=f"teacher labelling: {result.model} on {result.device}, batch "
                        f"{result.batch_size}, median of {result.repeats}")
    for row in result.rows:
        table.add_row(row.texts, str(row.max_length), f"{row.n:,}", row.precision,
                      "by length" if row.by_length else "input", f"{row.texts_per_s:,.0f}",
                      f"{row.ratio:.2f}x")
    out.print(table)
    same = ", ".join(f"{name} {share:.4f}" for name, share in result.agreement.items())
    out.print(f"bf16 and fp32 predict the same class on: {same}; sparse_distill "
              f"{code_version()}")


@speed_app.command("gpu")
def gpu(
    cache_dir: CacheOpt = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "auto",
    teachers: Annotated[list[str] | None, typer.Option(
        help="Teachers to time, minilm and/or roberta-large (its architecture, random "
             "weights); repeatable \\[default: both].",
        show_default=False)] = None,
    repeats: RepeatsOpt = 3,
    short_texts: Annotated[int, typer.Option(min=1, help="Rotten Tomatoes snippets labelled "
                                             "at max_length 64.")] = 8192,
    long_texts: Annotated[int, typer.Option(min=1, help="Documents labelled and predicted at "
                                            "max_length 256.")] = 1024,
    doc_words: Annotated[int, typer.Option(min=1, help="Words a document has at least "
                                           "(consecutive snippets joined).")] = 200,
    label_batch_size: Annotated[int, typer.Option(min=1, help="Labelling batch "
                                                  "(teacher.label_batch_size's default).")
                                ] = 128,
    batch_sizes: Annotated[list[int] | None, typer.Option(
        min=1, help="Inference batch sizes; repeatable \\[default: 1024, 32].",
        show_default=False)] = None,
    vocab_size: Annotated[int, typer.Option(min=1, help="The student's |V|.")] = 1_000_000,
    dim: Annotated[int, typer.Option(min=1, help="The student's d and hidden width.")] = 1000,
    json_out: JsonOpt = None,
) -> None:
    """Teachers vs a paper-size student on one device (a GPU): labelling and inference.

    Teacher labelling texts/s in fp32 and bf16; teacher and student (|V| 1M, d 1000, random
    weights) inference texts/s at each batch size, end to end and model only, with their
    ratio. Needs `sdistill data fetch rt minilm`."""
    from ..evaluation.speed import TEACHERS, code_version, gpu_speed, speed_record

    with user_errors():
        report = _reporter()
        try:
            result = gpu_speed(cache_dir or default_cache_dir(), device,
                               teachers or list(TEACHERS), repeats, short_texts, long_texts,
                               doc_words, label_batch_size, batch_sizes or [1024, 32],
                               vocab_size, dim, report)
        finally:
            report.close()
    out.print(f"{result.device}; median of {result.repeats}; {result.snippets:,} snippets "
              f"({result.snippet_words:.0f} words), {result.documents:,} documents "
              f"({result.document_words:.0f} words, {result.document_tokens:.0f} tokens at "
              f"max_length 256); student |V| {result.vocab_size:,}, d {result.dim}, hidden "
              f"[{result.dim}], featurising on {result.student_threads} threads")
    labelling = Table("teacher", "texts", "max_length", "precision", "texts/s",
                      title="labelling, sorted by length", title_justify="left")
    for row in result.labelling:
        labelling.add_row(row.teacher, row.texts, str(row.max_length), row.precision,
                          f"{row.texts_per_s:,.0f}")
    out.print(labelling)
    inference = Table("teacher", "precision", "batch", "teacher texts/s", "student texts/s",
                      "student / teacher", title_justify="left",
                      title="inference on the documents at max_length 256: end to end "
                            "(model only)")
    for row in result.inference:
        inference.add_row(row.teacher, row.precision, str(row.batch_size),
                          f"{row.teacher_per_s:,.0f} ({row.teacher_model_only_per_s:,.0f})",
                          f"{row.student_per_s:,.0f} ({row.student_model_only_per_s:,.0f})",
                          f"{row.ratio:,.0f}x ({row.model_only_ratio:,.0f}x)")
    out.print(inference)
    first = result.inference[0].batch_size
    ratios = ", ".join(f"{r.teacher} {r.precision} {r.ratio:,.0f}x" for r in result.inference
                       if r.batch_size == first)
    out.print(f"student / teacher at batch {first}, end to end: {ratios}; sparse_distill "
              f"{code_version()}")
    _write_json(json_out, speed_record(
        _command(), result.device,
        {"teacher labelling, sorted by length (texts/s)": result.labelling,
         "inference on the documents at max_length 256 (texts/s)": [
             {**vars(r), "ratio": r.ratio, "model_only_ratio": r.model_only_ratio}
             for r in result.inference]},
        {k: v for k, v in vars(result).items() if k not in ("labelling", "inference")}))
