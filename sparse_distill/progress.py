"""Progress of long stages. Library functions are quiet by default; the CLI passes a reporter that
draws bars."""

from __future__ import annotations


class Reporter:
    """Receives a stage's progress; this base class ignores it."""

    def start(self, phase: str, total: int | None, done: int = 0, unit: str = "it") -> None:
        """A new phase (e.g. "fine-tune") of `total` units (e.g. "steps"), `done` already."""

    def update(self, n: int) -> None:
        """`n` more units of the current phase are done."""

    def note(self, text: str) -> None:
        """A short status of the current phase (e.g. the loss)."""

    def close(self) -> None:
        """The stage is over."""
