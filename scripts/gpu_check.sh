#!/usr/bin/env bash
# The GPU checks (issue 14), on a machine with an NVIDIA GPU and a torch built for CUDA in the
# active environment, with rt and MiniLM in the data cache (sdistill data fetch rt minilm):
#   1. the CUDA tests (tests/test_gpu.py);
#   2. the student's training loop at |V| = 1M, d = 256 and 1000, batch 2048: samples/s, the
#      share of its time the GPU waits on the host, peak GPU memory;
#   3. teacher labelling texts/s in fp32 and bf16 (MiniLM and RoBERTa-Large's architecture), and
#      student and teacher inference texts/s at batch 1024 and 32 with their ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${SDISTILL_CACHE:-$HOME/.cache/sparse-distill}"
for need in data/rt/train.jsonl models/minilm/config.json; do
  [[ -f "$cache/$need" ]] || { echo "gpu_check: $cache/$need is missing; run: sdistill data fetch rt minilm" >&2; exit 1; }
done
python - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA device visible to torch: this check needs one"
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name()}")
PY
python -m pytest -q -s -m gpu tests/test_gpu.py  # -s: the CPU-vs-CUDA agreement it prints
# The size timed first in a process came out slower than the same size timed again (after 30
# warm-up steps, half the speed; after 100, up to 20% slower): d 1000 is timed last, twice.
sdistill speed train --device cuda --dims 256 --dims 1000 --dims 1000 --batch-size 2048 \
  --steps 300 --warmup 100 --json benchmarks/gpu/train.json
sdistill speed gpu --device cuda --cache-dir "$cache" --json benchmarks/gpu/gpu.json
