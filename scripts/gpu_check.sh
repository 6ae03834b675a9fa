#!/usr/bin/env bash
# The GPU checks (issue 14), on a machine with an NVIDIA GPU and a torch built for CUDA in the
# active environment: the CUDA tests, then the training loop's samples/s and the share of its
# time the GPU waits on the host, at |V| = 1M, d = 256 and 1000, batch 2048.
set -euo pipefail
cd "$(dirname "$0")/.."
python - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA device visible to torch: this check needs one"
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name()}")
PY
python -m pytest -q -m gpu tests/test_gpu.py
python scripts/bench_train_loop.py --device cuda --dims 256 1000 --batch-size 2048
