"""Typed errors. Library code raises these; only the CLI turns them into a message and an exit code.

Every message is written for the user: it names the key, file or line at fault and says how to
fix it.
"""

from __future__ import annotations


class SDistillError(Exception):
    """Base class of every error the user can fix."""


class ConfigError(SDistillError):
    """One or more problems with the config, one line each (all found before any work starts)."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class DataError(SDistillError):
    """A data file that cannot be read as configured."""


class FetchError(SDistillError):
    """A download or an archive that is not what was pinned."""


class StageError(SDistillError):
    """A run directory whose contents conflict with what a stage is asked to do."""
