"""Progress of long stages. Library functions are quiet by default; the CLI passes a reporter that
draws bars."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


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


def _duration(seconds: float) -> str:
    h, rest = divmod(round(seconds), 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class LogLines(Reporter):
    """Plain progress lines, for a log file, CI or `nohup` (where a bar would draw nothing):
    a line when a phase starts, then at most one every `interval` seconds (done/total, rate,
    ETA and the phase's last note, e.g. the loss), and one when it ends.

    `write` takes each line (default: stderr); `clock` is injectable for tests."""

    def __init__(self, interval: float = 30.0, write: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.write = write or (lambda line: print(line, file=sys.stderr, flush=True))
        self.clock = clock
        self.phase: str | None = None

    def start(self, phase: str, total: int | None, done: int = 0, unit: str = "it") -> None:
        self.close()
        self.phase, self.total, self.unit = phase, total, unit
        self.done = self.first = done
        self.started = self.last = self.clock()
        self.text = ""
        of = f" of {total:,} {unit}" if total is not None else ""
        self._line(f"started{of}" + (f", {done:,} already done" if done else ""))

    def update(self, n: int) -> None:
        if self.phase is None:
            return
        self.done += n
        if self.clock() - self.last >= self.interval:
            self._line(self._status())

    def note(self, text: str) -> None:
        self.text = text

    def close(self) -> None:
        if self.phase is not None:
            elapsed = self.clock() - self.started
            self._line(f"done, {self.done - self.first:,} {self.unit} in {_duration(elapsed)}"
                       + (f"; {self.text}" if self.text else ""))
            self.phase = None

    def _status(self) -> str:
        elapsed = max(self.clock() - self.started, 1e-9)
        rate = (self.done - self.first) / elapsed
        parts = [f"{self.done:,}/{self.total:,} {self.unit} ({self.done / max(self.total, 1):.0%})"
                 if self.total is not None else f"{self.done:,} {self.unit}",
                 f"{rate:,.1f} {self.unit}/s" if rate >= 1 or rate == 0
                 else f"{1 / rate:,.1f} s each"]
        if self.total is not None and rate > 0:
            parts.append(f"ETA {_duration((self.total - self.done) / rate)}")
        return ", ".join(parts) + (f"; {self.text}" if self.text else "")

    def _line(self, text: str) -> None:
        self.last = self.clock()
        self.write(f"[{time.strftime('%H:%M:%S')}] {self.phase}: {text}")
