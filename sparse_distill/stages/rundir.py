"""The run directory: self-describing stage outputs, up-to-date checks, and one writer at a time.

A stage writes into a hidden temporary directory next to its output and renames it into place
only when everything is written (`files.staged_dir`), so an interrupted stage never leaves a
half-written output. Each output carries a `manifest.json`; its *fingerprint* (the config
sections the stage used, the sha256 of its input files and of the upstream manifests) decides
whether the output is up to date, stale (an error without `--force`), or missing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import logging
import os
import shutil
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import StageError
from ..files import atomic_write_json, atomic_write_text, expand_path, sha256_file, sha256_tree
from ..training.config import Config
from ..training.data import resolve_format
from ..training.hf import model_source
from .config import as_config, dump_config

try:
    import fcntl
except ImportError:  # Windows: no advisory locks here; runs are not guarded there
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

# The config sections each stage's output depends on, and the stages it reads.
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {"vocab": ("data", "vocab"),
                                               "teacher": ("data", "teacher"),
                                               "student": ("student",),
                                               "eval": ("eval",)}
STAGE_UPSTREAM: dict[str, tuple[str, ...]] = {"vocab": (), "teacher": (),
                                              "student": ("vocab", "teacher"),
                                              "eval": ("teacher", "student")}
# Stages whose result depends on run.seed (shuffling, initialisation, dropout).
STAGE_SEEDED = {"teacher", "student"}
STAGE_COMMANDS = {"vocab": "vocab", "teacher": "teach", "student": "train-student", "eval": "eval"}


@dataclass
class StageResult:
    """What a stage did: where its output is, whether it was skipped as up to date, its manifest."""

    stage: str
    output: Path
    skipped: bool
    manifest: dict[str, Any]


def input_fingerprints(cfg: Config) -> list[dict[str, Any]]:
    """Identity of every data source: sha256 of local files, or the hub name and split."""
    out = []
    for key, src in cfg.sources():
        path = expand_path(src.path)
        fmt = resolve_format(src, path)
        entry: dict[str, Any] = {"key": key, "path": str(Path(path).resolve())
                                 if fmt != "hub" else path, "format": fmt}
        if fmt == "hub":
            entry["sha256"] = None
            entry["hub"] = {"subset": src.subset, "split": src.split}
        elif Path(path).is_dir():
            entry["sha256"] = sha256_tree(Path(path))
        else:
            entry["sha256"] = sha256_file(path)
            entry["bytes"] = Path(path).stat().st_size
        out.append(entry)
    return out


def prepare_partial(work: Path, fp: dict[str, Any]) -> None:
    """A stage's resumable work directory, kept only if made from the same config and inputs."""
    marker = work / "fingerprint.json"
    if work.exists() and (not marker.is_file()
                          or json.loads(marker.read_text(encoding="utf-8")) != fp):
        logger.warning("discarding %s: it was made from other config or inputs", work)
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    if not marker.is_file():
        atomic_write_json(marker, fp)


def read_manifest(stage_dir: Path) -> dict[str, Any] | None:
    path = stage_dir / "manifest.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def manifest_digest(stage_dir: Path) -> str | None:
    path = stage_dir / "manifest.json"
    return sha256_file(path) if path.is_file() else None


def fingerprint(cfg: Config, stage: str, inputs: list[dict[str, Any]]) -> dict[str, Any]:
    """What decides whether a stage's output is up to date."""
    run_dir = cfg.run_dir()
    hashes = {s: cfg.section_hash(s) for s in STAGE_SECTIONS[stage]}
    if stage in STAGE_SEEDED:
        hashes["run.seed"] = str(cfg.run.seed)
    return {
        "config_hash": hashes,
        "inputs": {i["key"]: i["sha256"] or i["path"] for i in inputs},
        "upstream": {u: manifest_digest(run_dir / u) for u in STAGE_UPSTREAM[stage]},
    }


def stage_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    diffs = []
    for section, digest in new["config_hash"].items():
        if old.get("config_hash", {}).get(section) != digest:
            diffs.append(f"config {'key' if '.' in section else 'section'} '{section}' changed")
    old_inputs = old.get("inputs", {})
    for key, digest in new["inputs"].items():
        if key not in old_inputs:
            diffs.append(f"{key} is new")
        elif old_inputs[key] != digest:
            diffs.append(f"{key} changed")
    diffs += [f"{key} was removed" for key in old_inputs if key not in new["inputs"]]
    for stage, digest in new["upstream"].items():
        if old.get("upstream", {}).get(stage) != digest:
            diffs.append(f"the {stage} stage's output changed")
    return diffs


def command(stage: str, cfg: Config, force: bool = False) -> str:
    """The command line that (re)builds a stage, for messages."""
    path = getattr(cfg, "_path", None) or "CONFIG"
    return f"sdistill {STAGE_COMMANDS[stage]} {path}" + (" --force" if force else "")


def check_output(cfg: Config, stage: str, fp: dict[str, Any], force: bool) -> bool:
    """True if the stage's output exists and is up to date (nothing to do).

    Raises `StageError` if an output exists that was built from other inputs and `force` is off.
    """
    out = cfg.run_dir() / stage
    if not out.exists() or force:
        return False
    manifest = read_manifest(out)
    if manifest is None:
        raise StageError(f"{out} exists but has no readable manifest.json; rerun with --force "
                         f"to overwrite it: {command(stage, cfg, force=True)}")
    diffs = stage_differences(manifest.get("fingerprint", {}), fp)
    if not diffs:
        return True
    raise StageError(f"{out} was built from other inputs ({'; '.join(diffs)}); rerun with --force "
                     f"to overwrite it: {command(stage, cfg, force=True)}")


def stage_state(cfg: Config, stage: str) -> list[str]:
    """Why a stage's output is not up to date ([] when it is)."""
    manifest = read_manifest(cfg.run_dir() / stage)
    if manifest is None:
        return ["no output yet"]
    return stage_differences(manifest.get("fingerprint", {}),
                        fingerprint(cfg, stage, input_fingerprints(cfg)))


def check_upstream(cfg: Config, stage: str) -> None:
    """Refuse to run `stage` unless every stage it reads is present and up to date."""
    if not STAGE_UPSTREAM[stage]:
        return
    inputs = input_fingerprints(cfg)
    for up in STAGE_UPSTREAM[stage]:
        out = cfg.run_dir() / up
        manifest = read_manifest(out)
        if manifest is None:
            raise StageError(f"{stage} needs the {up} stage's output, and {out} has none; "
                             f"run `{command(up, cfg)}` first")
        diffs = stage_differences(manifest.get("fingerprint", {}), fingerprint(cfg, up, inputs))
        if diffs:
            raise StageError(f"{out} is out of date ({'; '.join(diffs)}); "
                             f"run `{command(up, cfg, force=True)}` first")


def begin_stage(cfg: Config, stage: str, force: bool
                ) -> tuple[list[dict[str, Any]], dict[str, Any], StageResult | None]:
    """The prologue every stage shares: refuse a missing or stale upstream, fingerprint the
    inputs, and return the existing result when the output is up to date (else None)."""
    check_upstream(cfg, stage)
    inputs = input_fingerprints(cfg)
    fp = fingerprint(cfg, stage, inputs)
    out = cfg.run_dir() / stage
    if check_output(cfg, stage, fp, force):
        # The work of a run stopped after its output was in place but before it was removed.
        shutil.rmtree(cfg.run_dir() / f"{stage}.partial", ignore_errors=True)
        write_resolved_config(cfg)
        return inputs, fp, StageResult(stage, out, True, read_manifest(out) or {})
    return inputs, fp, None


def make_manifest(cfg: Config, stage: str, fp: dict[str, Any], inputs: list[dict[str, Any]],
                  counts: dict[str, Any], labels: list[str] | None,
                  timings: dict[str, float]) -> dict[str, Any]:
    return {
        "stage": stage,
        "package_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "seed": cfg.student_seed() if stage == "student" else cfg.run.seed,
        "fingerprint": fp,
        "config": {s: cfg.to_dict()[s] for s in STAGE_SECTIONS[stage]},
        "inputs": inputs,
        "counts": counts,
        "labels": labels,
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }


def teacher_source(run_dir: Path) -> str:
    """The teacher the run's teacher stage used, as its manifest records: RUN/teacher/model when
    it was fine-tuned, else the model it loaded (a folder or a hub id)."""
    manifest = read_manifest(run_dir / "teacher")
    if manifest is None:
        raise StageError(f"{run_dir / 'teacher'}: no teacher stage output; run `sdistill teach "
                         "CONFIG` first")
    info = manifest["teacher"]
    return str(run_dir / "teacher" / "model") if info["finetuned"] else \
        model_source(info["source"])


def write_resolved_config(cfg: Config) -> Path:
    """RUN/config.yaml: the resolved config of the last command."""
    path = cfg.run_dir() / "config.yaml"
    atomic_write_text(path, dump_config(cfg))
    return path


# ---------------------------------------------------------------------------------------------
# One writer per run directory

LOCK_FILE = ".sdistill.lock"
_held: dict[Path, list[int]] = {}  # run dir -> [file descriptor, depth], in this process
_held_guard = threading.Lock()


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold RUN/.sdistill.lock (an OS lock, `flock`) while a command writes under `run_dir`.

    A second process that asks is refused at once with the holder's pid and command. The OS
    releases the lock when its process ends, however it ends, so a killed run never blocks the
    next. Re-entrant within a process (`run` holds it around the stages, which take it again).
    Under torchrun, rank 0 holds it for the job: the other ranks write their shards under it."""
    if fcntl is None or os.environ.get("RANK", "0") != "0":
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    key = run_dir.resolve()
    with _held_guard:
        if key in _held:
            _held[key][1] += 1
        else:
            fd = os.open(key / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 4096).decode("utf-8", "replace").strip() or "unknown"
                os.close(fd)
                raise StageError(f"{run_dir} is being written by another sdistill process "
                                 f"({holder}); wait for it to end, or give this command "
                                 "another run.dir") from None
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()}: {' '.join(sys.argv) or 'python'}".encode())
            _held[key] = [fd, 1]
            if os.environ.get("WORLD_SIZE", "1") == "1":
                sweep_temporaries(key)
    try:
        yield
    finally:
        with _held_guard:
            _held[key][1] -= 1
            if _held[key][1] == 0:
                fd = _held.pop(key)[0]
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)


def sweep_temporaries(run_dir: Path) -> list[Path]:
    """Remove the temporary files and directories (".NAME.*.tmp", ".NAME.*.old") a killed
    process left under `run_dir`. Only its lock holder may: no other writer can own them. (Under
    torchrun the other ranks write while rank 0 takes the lock, so a job of several processes
    leaves this to the next command of one.)"""
    stale = [p for p in run_dir.rglob(".*") if p.name.endswith((".tmp", ".old"))]
    for path in sorted(stale, key=lambda p: len(p.parts)):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    if stale:
        logger.info("removed %d temporary files a stopped run left in %s", len(stale), run_dir)
    return stale


def locked(stage: Callable[..., Any]) -> Callable[..., Any]:
    """A stage function (first argument: a Config or its path) that holds its run's lock."""
    @functools.wraps(stage)
    def run(cfg: Any, *args: Any, **kwargs: Any) -> Any:
        cfg = as_config(cfg)
        with run_lock(cfg.run_dir()):
            return stage(cfg, *args, **kwargs)

    return run

