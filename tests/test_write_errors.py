"""A disk that fills up, or a place that is read-only, at any write of any command (issue 16):
one line naming the path, exit 1, the previous outputs byte for byte as they were, and no
temporary files. Every output is written under a temporary name and renamed into place, so
failing the renames one at a time reaches every writer: the n-th rename of a command fails, for
every n the command makes."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import base_config, comparable, differences, student_section, teacher_config
from typer.testing import CliRunner

from sparse_distill.cli import app
from sparse_distill.stages.rundir import LOCK_FILE

MAX_POINTS = 12  # renames failed per command: all of them, or this many spread over them


@pytest.fixture(scope="module")
def done_run(tiny_classifier: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of every command on the fixtures; each test works on a copy."""
    import yaml

    root = tmp_path_factory.mktemp("written")
    data = teacher_config(base_config(root / "run"), tiny_classifier, finetune=True, epochs=1)
    data["student"] = student_section()
    data["eval"] = {"speed_texts": 20, "repeats": 1}
    (root / "config.yaml").write_text(yaml.safe_dump(data))
    (root / "texts.txt").write_text("a fine film\nso dull\n" * 50)
    for args in COMMANDS.values():
        result = CliRunner().invoke(app, [a.format(root=root) for a in args])
        assert result.exit_code == 0, result.output
    return root


COMMANDS: dict[str, list[str]] = {
    "vocab": ["vocab", "{root}/config.yaml", "--force"],
    "teach": ["teach", "{root}/config.yaml", "--force"],
    "train-student": ["train-student", "{root}/config.yaml", "--force"],
    "eval": ["eval", "{root}/config.yaml", "--force"],
    "predict": ["predict", "{root}/run/student", "-i", "{root}/texts.txt", "-o",
                "{root}/predictions.jsonl", "--force"],
    "shrink": ["shrink", "{root}/run/student", "{root}/small", "--keep-share", "0.5",
               "--dtype", "int8", "--force"],
    "export": ["export", "{root}/run/student", "{root}/exported", "--format", "numpy",
               "--force"],
}


def _files(root: Path) -> dict[str, Any]:
    """Every file's content; a file the failing command rewrote in full before the failure may
    differ in its timings only (the same inputs give the same output)."""
    return {str(p.relative_to(root)): comparable(p) for p in root.rglob("*")
            if p.is_file() and p.name != LOCK_FILE}


def _resumable(name: str) -> bool:
    """Work a stage keeps to resume from, or a cache: it may hold what a failed run finished."""
    return any(part.endswith(".partial") or part == "features" for part in Path(name).parts)


class Renames:
    """os.replace and os.rename under `root` fail with `code` at call number `fail_at`."""

    def __init__(self, root: Path, fail_at: int | None, code: int):
        self.root, self.fail_at, self.code, self.calls = str(root), fail_at, code, 0
        self.real = {"replace": os.replace, "rename": os.rename}

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name, real in self.real.items():
            monkeypatch.setattr(os, name, self._wrap(real))

    def _wrap(self, real: Any) -> Any:
        def move(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
            if str(dst).startswith(self.root):
                self.calls += 1
                if self.calls == self.fail_at:
                    raise OSError(self.code, os.strerror(self.code), str(dst))
            real(src, dst, *args, **kwargs)

        return move


def _points(n: int) -> list[int]:
    if n <= MAX_POINTS:
        return list(range(1, n + 1))
    return sorted({1 + round(i * (n - 1) / (MAX_POINTS - 1)) for i in range(MAX_POINTS)})


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_write_that_fails_anywhere_leaves_every_output_as_it_was(command, done_run,
                                                                   monkeypatch):
    import shutil

    root, pristine = done_run, done_run.with_name(done_run.name + "-pristine")
    if not pristine.exists():
        shutil.copytree(root, pristine)

    def restore() -> None:  # the finished run, in the same place (files hold their paths)
        shutil.rmtree(root)
        shutil.copytree(pristine, root)

    args = [a.format(root=root) for a in COMMANDS[command]]
    restore()
    counter = Renames(root, None, errno.ENOSPC)
    with monkeypatch.context() as m:
        counter.install(m)
        assert CliRunner().invoke(app, args).exit_code == 0
    assert counter.calls > 0, f"{command} wrote nothing under {root}"
    success = _files(root)  # what the command writes when nothing fails

    points = _points(counter.calls)
    for fail_at in points:
        restore()
        before = _files(root)
        code = errno.EACCES if fail_at == points[-1] else errno.ENOSPC
        failing = Renames(root, fail_at, code)
        with monkeypatch.context() as m:
            failing.install(m)
            result = CliRunner().invoke(app, args)
        said = f"{command}, rename {fail_at} of {counter.calls}: {result.output!r}"
        assert result.exit_code == 1, said
        lines = [x for x in result.output.splitlines() if x.strip()]
        errors = [x for x in lines if x.startswith("error: ")]  # after the progress lines
        assert errors == lines[-1:], said
        assert f"({errno.errorcode[code]})" in errors[0] and str(root) in errors[0], said
        after = _files(root)
        # Each file as it was, or (an output the command finished before the failing write)
        # as the command writes it; never removed, cut short or mixed.
        broken = sorted(k for k in {*before, *after} if not _resumable(k)
                        and after.get(k) not in (before.get(k), success.get(k)))
        assert not broken, f"{said}: changed or removed {broken}: " + "; ".join(
            d for k in broken for d in differences(before.get(k), after.get(k), k)[:5])
        litter = [k for k in after if k.endswith((".tmp", ".old")) or ".old/" in k]
        assert not litter, f"{said}: temporary files left {litter}"
    restore()
    print(f"\n{command}: {len(points)} of {counter.calls} renames failed in turn, each "
          "left every output as it was")
