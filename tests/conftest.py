"""Shared fixtures. Tests never touch the network: the hub is switched off before any import."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

from pathlib import Path
from typing import Any

import pytest
import yaml

DATA = Path(__file__).parent / "data"


@pytest.fixture
def data_dir() -> Path:
    return DATA


def base_config(run_dir: Path) -> dict[str, Any]:
    """A small valid config over the committed fixtures."""
    return {
        "run": {"dir": str(run_dir), "seed": 13},
        "data": {
            "train": {"path": str(DATA / "train.jsonl")},
            "dev": {"path": str(DATA / "dev.jsonl")},
            "test": {"path": str(DATA / "test.jsonl")},
            "unlabeled": [{"path": str(DATA / "pool.txt")}],
        },
        "vocab": {"ngram_range": [1, 2], "max_features": 500},
    }


@pytest.fixture
def config_dict(tmp_path: Path) -> dict[str, Any]:
    return base_config(tmp_path / "run")


@pytest.fixture
def write_config(tmp_path: Path):
    """Write a config dict to a YAML file and return its path."""

    def write(data: dict[str, Any], name: str = "config.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        return path

    return write
