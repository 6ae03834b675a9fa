"""The commands of a run: vocab, teach, train-student, eval, run, and the benchmark."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..errors import SDistillError
from ..stages.config import as_config
from .common import (
    ConfigArg,
    ForceOpt,
    SetOpt,
    app,
    err,
    out,
    progress_bar,
    reporter,
    run_with_bars,
    up_to_date,
    user_errors,
)


@app.command()
def vocab(config: ConfigArg, set_: SetOpt = None, force: ForceOpt = False) -> None:
    """Fit the n-gram vocabulary (CountVectorizer semantics) on train + unlabelled text."""
    from ..stages.vocab import build_vocab

    with user_errors():
        cfg = as_config(config, set_)
        with progress_bar("counting n-grams", " texts") as bar:
            result = build_vocab(cfg, force=force, progress=bar.update)
    m = result.manifest
    if result.skipped:
        up_to_date("vocab", result.output)
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
        tokens = c["tokens"]
        table.add_row("tokens", f"{tokens['rule']} rule: {tokens['mean_token_chars']:.1f} "
                                f"characters a token, {tokens['single_text_share']:.0%} of them "
                                "in one training text only")
        labels = m["labels"]
        table.add_row("labels", f"{len(labels)}: " + ", ".join(labels[:6])
                      + (", ..." if len(labels) > 6 else ""))
        table.add_row("wall time", f"{m['timings']['total_s']:.1f} s")
        out.print(table)
        for source in [*c["splits"].values(), *c["pool"]["sources"]]:
            for example in source["bad_examples"][:3]:
                err.print(f"[yellow]skipped[/] {example}")
        if c["tokens"]["warning"]:
            err.print(f"[yellow]warning:[/] {c['tokens']['warning']}")
    out.print(f"output: {result.output}")
    out.print(f"next:   sdistill teach {config}")


@app.command()
def teach(config: ConfigArg, set_: SetOpt = None, force: ForceOpt = False) -> None:
    """Fine-tune or load the teacher, evaluate it, soft-label train + unlabelled text.

    Resumable: rerun the same command after an interruption. Several processes or GPUs:
    torchrun --standalone --nproc_per_node N --no-python sdistill teach CONFIG
    """
    from ..stages.teach import teach as run_teach

    result = run_with_bars(run_teach, config, set_, force)
    m = result.manifest
    if not m:  # a torchrun worker other than rank 0: rank 0 prints the summary
        return
    if result.skipped:
        up_to_date("teach", result.output)
    else:
        table = Table(title="teacher", show_header=False, title_justify="left")
        table.add_row("model", f"{m['teacher']['source']}"
                      + (" (fine-tuned)" if m["teacher"]["finetuned"] else ""))
        ft = m.get("finetune")
        if ft:
            lr = f"lr {ft['lr']:.3g}, " if "lr" in ft else ""  # a teacher made before: none
            table.add_row("fine-tune", f"{ft['epochs']} epochs, {lr}{ft['steps']} steps, "
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
    from ..stages.train_student import train_student as run_train

    result = run_with_bars(run_train, config, set_, force)
    m = result.manifest
    if result.skipped:
        up_to_date("train-student", result.output)
    else:
        table = Table(title="student", show_header=False, title_justify="left")
        table.add_row("parameters", f"{m['counts']['parameters']:,}")
        for name, res in m["results"].items():
            if name == "calibration":
                table.add_row("probabilities", f"calibrated on dev: T = {res['temperature']:.3g}"
                              f" (NLL {res['dev_nll_before']:.4f} -> {res['dev_nll_after']:.4f})")
                continue
            planned = res.get("planned_steps")
            stopped = (f", stopped early: {planned:,} planned"
                       if planned is not None and res["steps"] < planned else "")
            table.add_row(f"{'KD' if name == 'kd' else 'KD+FT'} dev accuracy",
                          f"{res['dev_accuracy']:.4f} (best at step {res['best_step']} of "
                          f"{res['steps']}{stopped})")
        table.add_row("wall time", f"{m['timings']['total_s']:.1f} s")
        memory = m.get("memory", {})
        if memory.get("peak_gib") is not None:
            table.add_row("peak memory", f"{memory['peak_gib']:.2f} GiB (estimated "
                          f"{memory['estimate_gib']['peak']:.2f} before the table existed)")
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
    from ..stages.evaluate import evaluate

    result = run_with_bars(functools.partial(evaluate, student=student), config, set_, force)
    if result.skipped:
        up_to_date("eval", result.output)
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
        for split, entry in metrics["splits"].items():
            if "calibration" in entry:
                c = entry["calibration"]
                out.print(f"calibration on {split}: expected calibration error "
                          f"{c['student']['ece']:.4f} for the student (T = "
                          f"{c['temperature']:.3g}; {c['student_uncalibrated']['ece']:.4f} at "
                          f"T = 1), {c['teacher']['ece']:.4f} for the teacher")
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
    from ..stages.pipeline import run_all, summary

    def announce(stage: str, reasons: list[str]) -> None:
        if reasons:
            out.print(f"[bold]{stage}[/]: running ({'; '.join(reasons)})")
        else:
            out.print(f"[bold]{stage}[/]: up to date, skipped")

    with user_errors():
        cfg = as_config(config, set_)
        bars = reporter()
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
    if s["student_ece"] is not None:
        table.add_row(f"calibration error (ECE): teacher / student at T = {s['temperature']:.3g}",
                      f"{s['teacher_ece']:.4f} / {s['student_ece']:.4f}")
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
    configs: Annotated[list[Path] | None, typer.Argument(
        help="Configs, one per data set (configs/); none, with --update: render OUTPUT again "
             "from its JSON and the sweeps and GPU checks beside it.", show_default=False)
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="The Markdown report; the "
                                         "same figures go to a .json beside it.")
                      ] = Path("benchmarks/RESULTS.md"),
    set_: SetOpt = None,
    student: Annotated[list[str] | None, typer.Option(
        help="NAME=DIR: also measure this student directory (e.g. one `sdistill shrink` wrote) "
             "as a row named NAME; repeatable; with one config.")] = None,
    seeds: Annotated[int, typer.Option(
        min=1, help="Seeds the student and the DAN from scratch are trained at (the config's "
                    "and the next ones; the students share the run's teacher).")] = 3,
    ablation: Annotated[Path | None, typer.Option(
        help="A YAML file of ablation rows per data set (config file stem): {rt: [{name: ..., "
             "set: [KEY=VALUE, ...]}]}; each row is trained and measured beside the student "
             "\\[default: ablation.yaml beside the output, if any].",
        show_default=False)] = None,
    no_ablation: Annotated[bool, typer.Option(
        "--no-ablation", help="Measure no ablation rows.")] = False,
    shrink: Annotated[bool, typer.Option(
        help="Shrink and export the student and measure each variant.")] = True,
    readme: Annotated[Path | None, typer.Option(
        help="Also rewrite this README's block of benchmark figures (between its markers) "
             "from the new RESULTS.json.", show_default=False)] = None,
    update: Annotated[bool, typer.Option(
        "--update", help="Keep the data sets already in OUTPUT's JSON that these configs do "
                         "not measure (each shown with the command, commit and date that made "
                         "it); by default OUTPUT holds only these configs' data sets.")] = False,
) -> None:
    """Pipeline vs baselines (DAN from scratch, TF-IDF + LR, fastText, model2vec) on each data
    set: accuracy with bootstrap intervals, seeds, thread-fair speed, retention, speedup, where
    the student's time goes, ablation rows and shrunk students: all of RESULTS.md."""
    from ..evaluation.results import targets
    from ..stages.benchmark import benchmark as run_benchmark

    with user_errors():
        extra: dict[str, Path] = {}
        for spec in student or []:
            name, sep, directory = spec.partition("=")
            if not sep or not name or not directory:
                raise SDistillError(f"--student {spec!r}: expected NAME=DIR")
            extra[name] = Path(directory)
        cfgs = [as_config(c, set_) for c in configs or []]
        bars = reporter()
        existed = output.is_file()
        try:
            results = run_benchmark(
                cfgs, output, command=" ".join(["sdistill", "benchmark", *sys.argv[2:]]),
                report=bars, on_step=lambda step: (bars.close(), err.print(f"[dim]{step}[/]")),
                extra_students=extra, seeds=seeds,
                ablation=False if no_ablation else ablation, shrink=shrink, update=update)
        finally:
            bars.close()
    for d in results:
        fair = d.sitting()
        table = Table("model", "test acc (95% interval)", "texts/s, 1 thread",
                      f"texts/s, {fair.cores} cores", "speedup", title=d.name,
                      title_justify="left")
        for m in d.models:
            lo, hi = m.interval or (m.test_accuracy, m.test_accuracy)
            table.add_row(m.name, f"{m.test_accuracy:.4f} ({lo:.3f}-{hi:.3f})",
                          f"{m.texts_per_s_1:,.0f}", f"{m.texts_per_s:,.0f}",
                          f"{fair.ratio(m.name, 'teacher', 'all'):,.1f}x")
        out.print(table)
        for what, ok, margin in targets(d):
            out.print(f"  {'met' if ok else '[bold red]missed[/]'}: {what} ({margin})")
    out.print(f"{'replaced' if existed else 'wrote'} {output} and {output.with_suffix('.json')}"
              + ("" if cfgs else " (rendered again: nothing measured)"))
    if readme is not None:
        import json

        from ..evaluation.results import update_readme

        with user_errors():
            try:
                update_readme(readme, json.loads(output.with_suffix(".json").read_text(
                    encoding="utf-8")))
            except ValueError as exc:
                raise SDistillError(f"--readme: {exc}") from None
        out.print(f"updated the benchmark figures in {readme}")


@app.command()
def sweep(
    config: ConfigArg,
    rows: Annotated[Path, typer.Argument(
        help="A YAML file of rows, as benchmarks/ablation.yaml: {DATASET: [{name: ..., set: "
             "[KEY=VALUE, ...]}]}, DATASET the config file's stem.", show_default=False)],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="The Markdown table; the same figures go to a .json beside it "
                               "\\[default: RUN/sweep.md].", show_default=False)] = None,
    set_: SetOpt = None,
) -> None:
    """The config's student against variants of it, each sharing the run's vocabulary and
    teacher where it can: dev and test accuracy, the most-unseen quarter, texts/s, peak memory
    and time of each, to choose a setting on dev."""
    from ..stages.benchmark import dataset_name
    from ..stages.sweep import sweep as run_sweep
    from ..stages.sweep import write_sweep
    from ..stages.variants import read_variants

    with user_errors():
        cfg = as_config(config, set_)
        variants = read_variants(rows, dataset_name(cfg))
        if not variants:
            raise SDistillError(f"{rows}: no rows for {dataset_name(cfg)!r} (the config file's "
                                "stem); add them under that key")
        bars = reporter()
        try:
            result = run_sweep(cfg, variants, report=bars,
                               on_step=lambda step: (bars.close(), err.print(f"[dim]{step}[/]")))
        finally:
            bars.close()
        path = output or cfg.run_dir() / "sweep.md"
        write_sweep(result, path, " ".join(["sdistill", "sweep", *sys.argv[2:]]))
    table = Table("row", "dev", "test", "texts/s, 1 thread", "peak RSS", "student stage",
                  title=f"sweep of {config}", title_justify="left")
    for r in result.rows:
        table.add_row(r.name, f"{r.dev_accuracy:.4f}",
                      "-" if r.test_accuracy is None else f"{r.test_accuracy:.4f}",
                      f"{r.texts_per_s_1:,.0f}",
                      "-" if r.peak_gib is None else f"{r.peak_gib:.2f} GiB",
                      f"{r.stages[0].seconds / 60:.1f} min")
    out.print(table)
    best = max(result.rows, key=lambda r: r.dev_accuracy)
    out.print(f"best by dev: {best.name} ({best.dev_accuracy:.4f}); wrote {path} and "
              f"{path.with_suffix('.json')}")
