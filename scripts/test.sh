#!/usr/bin/env bash
# The test command of the README (and of CI): lint, then the fast offline test suite.
# Slow tests (real data from PyPI, real teacher) run with: scripts/test.sh -m slow
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/env.sh"
cd "$root"
ruff check .
python -m pytest "$@"
