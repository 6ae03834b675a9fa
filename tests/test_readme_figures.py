"""README's benchmark figures are RESULTS.json's, rendered by the code (no figure typed there)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparse_distill.evaluation.results import (
    README_BEGIN,
    README_END,
    readme_figures,
    update_readme,
)

ROOT = Path(__file__).parents[1]


def test_readme_figures_are_the_committed_results():
    results = json.loads((ROOT / "benchmarks" / "RESULTS.json").read_text(encoding="utf-8"))
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start, end = text.index(README_BEGIN), text.index(README_END) + len(README_END)
    assert text[start:end] == readme_figures(results)
    assert f"at commit `{results['commit']}`" in text[start:end]


def test_update_readme_rewrites_only_the_block(tmp_path):
    results = json.loads((ROOT / "benchmarks" / "RESULTS.json").read_text(encoding="utf-8"))
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{README_BEGIN}\nold figures\n{README_END}\nafter\n")
    update_readme(readme, results)
    assert readme.read_text() == f"# x\n\nbefore\n{readme_figures(results)}\nafter\n"
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="no block between"):
        update_readme(readme, results)
    assert readme.read_text() == "no markers\n"  # nothing written
