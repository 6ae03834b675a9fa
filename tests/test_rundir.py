"""The run directory's guards: one writer at a time (the run lock), and writers that fail (a full
disk) leaving the previous output and no temporary files."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sparse_distill.errors import StageError
from sparse_distill.stages.config import config_from_dict
from sparse_distill.stages.rundir import LOCK_FILE, run_lock
from sparse_distill.stages.vocab import build_vocab

HOLD = """
import sys, time
from pathlib import Path
from sparse_distill.stages.rundir import run_lock
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


def test_a_full_disk_is_one_line_and_leaves_the_previous_output_and_no_litter(config_dict,
                                                                               write_config,
                                                                               monkeypatch):
    import errno

    from typer.testing import CliRunner

    from sparse_distill.cli import app

    path = write_config(config_dict)
    assert CliRunner().invoke(app, ["vocab", str(path)]).exit_code == 0
    run_dir = config_from_dict(config_dict).run_dir()
    before = (run_dir / "vocab" / "vocab.json").read_bytes()

    def full(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))

    monkeypatch.setattr(os, "replace", full)
    result = CliRunner().invoke(app, ["vocab", str(path), "--force", "--set",
                                      "vocab.min_df=2"])
    monkeypatch.undo()
    assert result.exit_code == 1
    lines = [x for x in result.output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "No space left on device (ENOSPC); free some space" in lines[0]
    assert (run_dir / "vocab" / "vocab.json").read_bytes() == before
    assert sorted(p.name for p in run_dir.iterdir() if p.name.startswith(".")) == [LOCK_FILE]


def test_weights_and_checkpoints_that_fail_to_write_leave_no_temporary_file(tmp_path,
                                                                             monkeypatch):
    import errno

    import torch

    from sparse_distill.inference import network as model

    target = tmp_path / "w.safetensors"
    model.save_weights({"a": torch.ones(4)}, target)
    before = target.read_bytes()

    class Full:
        def __init__(self, path, *args, **kwargs):
            self.path = path

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, data):
            partial = Path(self.path)
            partial.touch()  # what a write cut short leaves
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(partial))

    monkeypatch.setattr(model, "open", Full, raising=False)
    with pytest.raises(OSError, match="No space left"):
        model.save_weights({"a": torch.zeros(4)}, target)
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]


def test_a_checkpoint_that_hits_a_full_disk_raises_enospc_naming_it(tmp_path, monkeypatch):
    """torch.save given a path reports a full disk as a RuntimeError the CLI cannot explain
    (seen on a 3 GB checkpoint); the trainer's write must surface ENOSPC with the file's name."""
    import builtins
    import errno

    import torch

    from sparse_distill.inference.network import SparseDAN
    from sparse_distill.training import trainer as trainer_module
    from sparse_distill.training.config import StudentConfig

    trainer = trainer_module.PhaseTrainer(SparseDAN(50, 3, 8, [4]), StudentConfig(), 1e-3, 10, 0,
                                          "constant", torch.device("cpu"), tmp_path, "distill")

    def full_disk(path, mode):
        return builtins.open("/dev/full", mode)

    monkeypatch.setattr(trainer_module, "open", full_disk, raising=False)
    with pytest.raises(OSError) as caught:
        trainer.save()
    monkeypatch.undo()
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.filename == str(tmp_path / "distill.ckpt")
    assert list(tmp_path.iterdir()) == []


def test_the_next_writer_removes_what_a_killed_one_left(config_dict, monkeypatch):
    """kill -9 leaves temporary names that no `finally` removed; the next holder of the lock,
    the only writer there can be, removes them, and nothing else."""
    cfg = config_from_dict(config_dict)
    run_dir = cfg.run_dir()
    (run_dir / "teacher.partial" / "targets").mkdir(parents=True)
    litter = [run_dir / ".vocab.k2j4.tmp", run_dir / "teacher.partial/targets/.index.json.x1.tmp",
              run_dir / ".student.a8.old"]
    litter[0].mkdir()
    (litter[0] / "vocab.json").write_text("{")
    litter[1].write_text("{")
    (litter[2] / "student").mkdir(parents=True)
    kept = [run_dir / "teacher.partial/targets/shard-00000.npy", run_dir / "notes.tmp"]
    for path in kept:
        path.write_text("kept")
    monkeypatch.setenv("WORLD_SIZE", "2")  # a torchrun job's other ranks may be writing
    with run_lock(run_dir):
        assert all(path.exists() for path in litter)
    monkeypatch.delenv("WORLD_SIZE")
    build_vocab(cfg)
    assert not any(path.exists() for path in litter)
    assert all(path.read_text() == "kept" for path in kept)


def test_the_checkpoint_interval_comes_from_the_environment(monkeypatch):
    from sparse_distill.errors import ConfigError
    from sparse_distill.training.trainer import CHECKPOINT_SECONDS, checkpoint_seconds

    monkeypatch.delenv("SDISTILL_CHECKPOINT_SECONDS", raising=False)
    assert checkpoint_seconds() == CHECKPOINT_SECONDS == 300.0
    monkeypatch.setenv("SDISTILL_CHECKPOINT_SECONDS", "2.5")
    assert checkpoint_seconds() == 2.5
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv("SDISTILL_CHECKPOINT_SECONDS", bad)
        with pytest.raises(ConfigError, match="SDISTILL_CHECKPOINT_SECONDS: expected seconds"):
            checkpoint_seconds()


def test_an_up_to_date_stage_removes_the_work_a_stopped_run_left_behind(config_dict):
    """Killed after its output was renamed into place but before its work directory was
    removed: the next run finds the output up to date and removes the work."""
    cfg = config_from_dict(config_dict)
    build_vocab(cfg)
    work = cfg.run_dir() / "vocab.partial"
    (work / "final").mkdir(parents=True)
    assert build_vocab(cfg).skipped
    assert not work.exists()
