#!/usr/bin/env bash
# A GPU burst of the training line (train/README.md, "GPU burst"): python -m free_train.burst
# with this checkout's free_train, unbuffered output, and the log beside the parts.
#
#   bash train/gpu-burst.sh [--budget 420] [--out DIR] [--dry-run] [burst flags...]
#
# Writes to --out (default $OUT/burst when OUT is set, else train/runs/burst): the parts
# burst-STEP-IofN.safetensors, train.log and metrics.jsonl. PYTHON picks the interpreter
# (default python3: the device image's, which has torch; there is no venv there).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/train${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# many batch shapes in one process: let the allocator grow segments instead of fragmenting
export PYTORCH_CUDA_ALLOC_CONF="${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec "${PYTHON:-python3}" -m free_train.burst "$@"
