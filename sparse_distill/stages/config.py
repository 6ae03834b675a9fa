"""Loading the config: the YAML file (`safe_load`), `--set KEY=VALUE` overrides, the typed schema
(`sparse_distill.training.config`) and the checks of every input file and column, with *all*
problems reported at once in a `ConfigError`, one line each, naming the dotted key and the fix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from ..training.config import Config, build_config, data_section_only
from ..training.data import check_sources


def config_from_dict(data: dict[str, Any], check_inputs: bool = True) -> Config:
    """Build and validate a `Config` from plain data; raises `ConfigError` listing every problem."""
    problems: list[str] = []
    cfg = build_config(data, problems)
    if check_inputs:
        checked = cfg if cfg is not None else data_section_only(data)
        if checked is not None:
            problems.extend(check_sources(checked))
    if problems or cfg is None:
        raise ConfigError(problems)
    return cfg


def parse_overrides(overrides: list[str]) -> list[tuple[list[str], Any]]:
    """`KEY=VALUE` strings -> (dotted key parts, YAML-parsed value)."""
    parsed, problems = [], []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            problems.append(f"--set {item!r}: expected KEY=VALUE with a dotted key, "
                            "e.g. --set student.distill.steps=2000")
            continue
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            problems.append(f"--set {key}: value {raw!r} is not valid YAML ({exc.problem})")
            continue
        parsed.append((key.strip().split("."), value))
    if problems:
        raise ConfigError(problems)
    return parsed


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set dotted keys in (a deep copy of) `data`; list items are addressed by index."""
    data = json.loads(json.dumps(data))
    problems = []
    for parts, value in parse_overrides(overrides):
        node: Any = data
        dotted = ".".join(parts)
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    problems.append(f"--set {dotted}: {'.'.join(parts[:i]) or 'config'} is a list "
                                    f"of {len(node)}; use an index from 0 to {len(node) - 1}")
                    break
                part_key: Any = int(part)
            elif isinstance(node, dict):
                part_key = part
            else:
                problems.append(f"--set {dotted}: {'.'.join(parts[:i])} is not a mapping")
                break
            if last:
                node[part_key] = value
            else:
                if isinstance(node, dict) and node.get(part_key) is None:
                    node[part_key] = {}
                node = node[part_key]
    if problems:
        raise ConfigError(problems)
    return data


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError([f"{path}: config file not found; pass the path of a YAML config "
                           "(see configs/ for examples)"])
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "?"
        raise ConfigError([f"{path}: {where}: not valid YAML "
                           f"({getattr(exc, 'problem', exc)})"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text; save the config as UTF-8"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: expected a mapping of sections (run, data, vocab, ...), "
                           f"got {type(data).__name__}"])
    return data


def load_config(path: str | Path, overrides: list[str] | None = None,
                check_inputs: bool = True) -> Config:
    """Read, override and validate a config; raises `ConfigError` listing every problem."""
    data = apply_overrides(read_yaml(path), overrides or [])
    return config_from_dict(data, check_inputs=check_inputs)


def as_config(cfg: Config | str | Path, overrides: list[str] | None = None) -> Config:
    """A `Config` as it is, or loaded from the path of a YAML file (library entry points)."""
    if isinstance(cfg, Config):
        return cfg
    loaded = load_config(cfg, overrides)
    loaded._path = str(cfg)  # type: ignore[attr-defined]  # shown in the commands we suggest
    return loaded


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True)
