"""What every command shares: the app, the consoles, the common options, progress bars and
lines, and the one place a library error becomes an `error:` line and an exit code."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from tqdm.auto import tqdm

from .. import __version__
from ..errors import SDistillError
from ..progress import LogLines, Reporter
from ..stages.config import as_config
from ..stages.rundir import StageResult

app = typer.Typer(
    help="Distil a transformer text classifier into a sparse n-gram DAN that is hundreds of "
         "times faster. Stages: vocab -> teach -> train-student -> eval (or `run` for all).",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


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
def user_errors() -> Iterator[None]:
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


def progress_bar(desc: str, unit: str, total: int | None = None) -> tqdm:
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


class Bars(Reporter):
    """One tqdm bar per phase, with the phase's last note as its postfix."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def start(self, phase: str, total: int | None, done: int = 0, unit: str = "it") -> None:
        self.close()
        self.bar = progress_bar(phase, f" {unit}", total)
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


def reporter() -> Reporter:
    """A bar per phase on a terminal; plain lines where stderr is a file or a pipe (CI, nohup,
    a log), where a bar would draw nothing for the whole of a long stage."""
    return Bars() if sys.stderr.isatty() else LogLines()


def run_with_bars(stage: Callable[..., StageResult], config: Path, overrides: list[str] | None,
                   force: bool) -> StageResult:
    """Run a stage function with progress bars; its errors become `error:` lines."""
    with user_errors():
        cfg = as_config(config, overrides)
        # A bar on a terminal; plain lines where stderr is a file or a pipe (a bar draws nothing).
        bars = reporter()
        try:
            return stage(cfg, force=force, report=bars)
        finally:
            bars.close()


def up_to_date(command: str, output: Path) -> None:
    out.print(f"{command}: {output} is up to date with its inputs and config; nothing to do "
              "(--force redoes it)")
