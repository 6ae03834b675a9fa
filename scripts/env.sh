#!/usr/bin/env bash
# Create .venv and install sparse-distill into it (sourced by demo.sh and test.sh).
# torch goes in first, pinned: that takes the local CPU wheel; an unpinned torch, asked for by
# any other package, would pull several GB of CUDA packages.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
# Reinstalled when the dependencies or the compiled featuriser change (an editable install
# builds sparse_distill/inference/_ngrams.c once, at install).
stamp="$venv/.installed-$(cat "$root/pyproject.toml" "$root/setup.py" "$root/sparse_distill/inference/_ngrams.c" \
  | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check torch==2.13.0
  "$venv/bin/pip" install --quiet --disable-pip-version-check -e "$root[dev]"
  rm -f "$venv"/.installed-*
  touch "$stamp"
fi
export PATH="$venv/bin:$PATH"
