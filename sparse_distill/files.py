"""Paths and files, shared by every layer: where a path points, what a file holds, and the one
way outputs are written (under a temporary name beside the target, renamed into place when
complete), so that an interrupted or failed write never leaves a half-written output.

Temporary names are `.NAME.tmp` for a file, `.NAME.<random>.tmp` and `.NAME.<random>.old` for a
directory: the run lock's holder sweeps what a killed process left (`stages.rundir`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from .errors import DataError, SDistillError

# ---------------------------------------------------------------------------------------------
# Paths


def default_cache_dir() -> Path:
    """`$SDISTILL_CACHE`, else `$XDG_CACHE_HOME/sparse-distill`, else `~/.cache/sparse-distill`."""
    if os.environ.get("SDISTILL_CACHE"):
        return Path(os.environ["SDISTILL_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "sparse-distill"


_VAR = re.compile(r"\$(\w+)|\$\{(\w+)\}")


def expand_path(path: str) -> str:
    """Expand `~` and `$VAR` / `${VAR}`; `$SDISTILL_CACHE` defaults to the fetch cache directory.

    Raises KeyError naming the first variable that is not set.
    """
    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name in os.environ:
            return os.environ[name]
        if name == "SDISTILL_CACHE":
            return str(default_cache_dir())
        raise KeyError(name)

    return os.path.expanduser(_VAR.sub(sub, path))


# ---------------------------------------------------------------------------------------------
# Content


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_tree(path: Path) -> str:
    """sha256 over the relative names and contents of every file under a directory."""
    digest = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        digest.update(str(p.relative_to(path)).encode())
        digest.update(bytes.fromhex(sha256_file(p)))
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Writing


def refuse_overwrite(path: str | Path, force: bool) -> None:
    """An existing output is replaced only with --force: the one check every command makes."""
    if Path(path).exists() and not force:
        raise DataError(f"{path} already exists; pass --force to overwrite it")


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary file name beside `path`, renamed to `path` when the block succeeds. On any
    error (a full disk, say) the temporary file is removed and `path` is left as it was.

    The temporary file exists (empty, with the process's default permissions) when the block
    starts; whatever the block writes to it by name replaces it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # One name per target: a writer killed before its rename leaves `.NAME.tmp`, which the next
    # write of NAME truncates and removes (outside a run directory, where no lock holder sweeps,
    # e.g. `predict -o`, nothing else would).
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb"):
            pass
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_then_replace(path: str | Path, write: Callable[[Path], None]) -> None:
    """`write(tmp)` under a temporary name, then renamed into place (`replacing`)."""
    with replacing(path) as tmp:
        write(tmp)


@contextlib.contextmanager
def open_replacing(path: str | Path) -> Iterator[IO[str]]:
    """A UTF-8 text file opened for writing, in place at `path` only once it is complete."""
    with replacing(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        yield f


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    write_then_replace(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def replace_dir(src: Path, final: Path) -> None:
    """Move a complete directory into place, replacing `final` if it exists."""
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
        try:
            os.replace(final, old / final.name)
            try:
                os.replace(src, final)
            except BaseException:
                os.replace(old / final.name, final)  # the previous output goes back
                raise
        finally:
            if final.exists():  # else `old` holds the only copy: left where it can be found
                shutil.rmtree(old)
    else:
        os.replace(src, final)


@contextlib.contextmanager
def staged_dir(final: Path, force: bool) -> Iterator[Path]:
    """Yield an empty temporary directory that replaces `final` only if the block succeeds."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        refuse_overwrite(final, force)
        replace_dir(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def user_path_error(key: str, exc: KeyError) -> SDistillError:
    """An unset `$VAR` in a configured path, as one line naming the key."""
    return SDistillError(f"{key}: environment variable ${exc.args[0]} is not set; set it or "
                         "write the path out")


# ---------------------------------------------------------------------------------------------
# This process


def resident_gib() -> float | None:
    """This process's resident memory (Linux /proc), else None."""
    return _status_gib("VmRSS")


def peak_resident_gib() -> float | None:
    """This process's peak resident memory since it started or since `reset_peak_resident`
    (Linux /proc), else None."""
    return _status_gib("VmHWM")


def reset_peak_resident() -> bool:
    """Start `peak_resident_gib` afresh (Linux >= 4.0), so that a stage reports its own peak
    and not an earlier stage's in the same process; whether it could."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def available_gib() -> float | None:
    """Memory this process can still take: the kernel's MemAvailable, or a cgroup's limit less
    its usage where that is lower; None where neither can be read."""
    found: list[float] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) / 2**20)  # kB -> GiB
    except (OSError, ValueError, IndexError):
        pass
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                          "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            cap = Path(limit).read_text().strip()
            if cap != "max" and int(cap) < 1 << 60:  # cgroup v1 writes "no limit" as ~2^63
                found.append((int(cap) - int(Path(usage).read_text())) / 2**30)
        except (OSError, ValueError):
            continue
    return min(found) if found else None


def _status_gib(key: str) -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            line = next(x for x in f if x.startswith(key + ":"))
    except (OSError, StopIteration):
        return None
    return int(line.split()[1]) / 2**20  # kB -> GiB
