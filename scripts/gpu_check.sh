#!/usr/bin/env bash
# Many streams per GPU: the PyTorch batched flow step at 1, 8, 64, 256 streams (docs/gpu.md).
# Needs only python3 with torch and numpy (no voxflip install): run from anywhere in a checkout.
#   bash scripts/gpu_check.sh                      # CUDA, JSON to $OUT/gpu_check.json (or ./gpu_check.json)
#   bash scripts/gpu_check.sh --device cpu --streams 1,4 --chunks 20 --warmup 2
# Extra arguments go to python -m trt_build.gpu_check. It stops starting new stream counts after
# --budget-s (240 s by default), so the whole run stays under 5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$(command -v python3 || command -v python)}"
OUT_DIR="${OUT:-.}"
mkdir -p "$OUT_DIR"
exec timeout 290 "$PYTHON" -m trt_build.gpu_check --out "$OUT_DIR/gpu_check.json" "$@"
