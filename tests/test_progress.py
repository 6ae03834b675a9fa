"""Plain progress lines for logs (`LogLines`), driven by a fake clock."""

from __future__ import annotations

import re

from sparse_distill.progress import LogLines


def test_lines_at_start_every_interval_and_at_the_end():
    now = [0.0]
    lines: list[str] = []
    log = LogLines(interval=30.0, write=lines.append, clock=lambda: now[0])
    log.start("distill", 1000, done=100, unit="steps")
    # 9 x 10 steps, 10 s apart: a line at 30, 60 and 90 s, with the note made before it
    for _ in range(9):
        now[0] += 10.0
        log.update(10)
        log.note(f"loss {now[0] / 1000:.3f}")
    log.close()
    log.close()  # a second close writes nothing
    text = [re.sub(r"^\[\d\d:\d\d:\d\d\] ", "", line) for line in lines]
    assert text == [
        "distill: started of 1,000 steps, 100 already done",
        "distill: 130/1,000 steps (13%), 1.0 steps/s, ETA 14m30s; loss 0.020",
        "distill: 160/1,000 steps (16%), 1.0 steps/s, ETA 14m00s; loss 0.050",
        "distill: 190/1,000 steps (19%), 1.0 steps/s, ETA 13m30s; loss 0.080",
        "distill: done, 90 steps in 1m30s; loss 0.090",
    ]


def test_a_phase_without_a_total_and_a_new_phase_closing_the_last():
    now = [0.0]
    lines: list[str] = []
    log = LogLines(interval=5.0, write=lines.append, clock=lambda: now[0])
    log.start("read", None, unit="texts")
    now[0] = 7200.0
    log.update(5)
    log.start("write", 2)
    log.update(1)  # no line before the interval
    text = [re.sub(r"^\[\d\d:\d\d:\d\d\] ", "", line) for line in lines]
    assert text == ["read: started", "read: 5 texts, 1,440.0 s each",
                    "read: done, 5 texts in 2h00m00s", "write: started of 2 it"]
