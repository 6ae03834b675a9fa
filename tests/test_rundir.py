"""One writer per run directory: the run lock."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from sparse_distill.config import config_from_dict
from sparse_distill.errors import StageError
from sparse_distill.rundir import LOCK_FILE, run_lock
from sparse_distill.vocab import build_vocab

HOLD = """
import sys, time
from pathlib import Path
from sparse_distill.rundir import run_lock
with run_lock(Path(sys.argv[1])):
    print("holding", flush=True)
    time.sleep(600)
"""


def test_a_second_writer_is_refused_and_a_killed_holder_never_blocks(config_dict):
    cfg = config_from_dict(config_dict)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(cfg.run_dir())],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(StageError, match=re.escape(
                f"is being written by another sdistill process (pid {holder.pid}: -c ")):
            build_vocab(cfg)
        assert not (cfg.run_dir() / "vocab").exists()  # refused before any work
    finally:
        holder.send_signal(signal.SIGKILL)  # kill -9: the OS drops the lock
        holder.wait()
    assert not build_vocab(cfg).skipped
    assert (cfg.run_dir() / LOCK_FILE).read_text() == ""  # released, holder cleared


def test_the_lock_is_reentrant_in_one_process_and_released_after(tmp_path):
    with run_lock(tmp_path / "run"), run_lock(tmp_path / "run"):
        content = (tmp_path / "run" / LOCK_FILE).read_text()
        assert content.startswith(f"pid {os.getpid()}: ")
    probe = subprocess.run([sys.executable, "-c", HOLD.replace("time.sleep(600)", "pass"),
                            str(tmp_path / "run")], capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0 and "holding" in probe.stdout


def test_torchrun_ranks_other_than_0_take_no_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    with run_lock(tmp_path / "run"):
        assert not (tmp_path / "run" / LOCK_FILE).exists()
