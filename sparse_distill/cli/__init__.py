"""`sdistill`: a thin command line over the library functions.

The commands parse options, call the library, show progress and a summary. Only here does an
error become a message and an exit code: one line a problem, no traceback. `common` holds what
they share; each other module registers its commands on the app.
"""

from __future__ import annotations

import os

from . import pipeline, students  # noqa: F401  (registers their commands on the app)
from .common import app
from .data import data_app
from .speed import speed_app

app.add_typer(data_app, name="data")
app.add_typer(speed_app, name="speed")


def main() -> None:
    # The hub libraries' own load reports, warnings and per-file bars are noise on a command
    # line that draws its own progress; errors still show.
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    app()
