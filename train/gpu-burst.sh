#!/usr/bin/env bash
# A GPU burst of the training line (train/README.md, "GPU burst"): python -m free_train.burst
# with this checkout's free_train, unbuffered output, and the log beside the parts.
#
#   bash train/gpu-burst.sh [--budget 420] [--out DIR] [--dry-run] [burst flags...]
#
# Writes to --out (default $OUT/burst when OUT is set, else train/runs/burst): the parts
# burst-STEP-IofN.safetensors, train.log and metrics.jsonl. PYTHON picks the interpreter
# (default python3: the device image's, which has torch; there is no venv there).
#
#   NPROC=8 bash train/gpu-burst.sh [flags...]    # 8 GPUs: torchrun, DistributedDataParallel
#
# NPROC=N (default 1) runs N processes under torchrun (python -m torch.distributed.run
# --standalone), one per GPU, each step taking N batches; rank 0 alone writes. --start DIR is
# passed on as --trunk DIR (torchrun's parser would take --start for its --start-method).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/train${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# many batch shapes in one process: let the allocator grow segments instead of fragmenting
export PYTORCH_CUDA_ALLOC_CONF="${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
NPROC="${NPROC:-1}"
case "$NPROC" in ''|*[!0-9]*|0) echo "gpu-burst.sh: NPROC must be a positive integer, not '$NPROC'" >&2; exit 2 ;; esac
if [ "$NPROC" -eq 1 ]; then
  exec "${PYTHON:-python3}" -m free_train.burst "$@"
fi
args=()
for a in "$@"; do
  case "$a" in
    --start) args+=(--trunk) ;;
    --start=*) args+=("--trunk=${a#--start=}") ;;
    *) args+=("$a") ;;
  esac
done
exec "${PYTHON:-python3}" -m torch.distributed.run --standalone --nproc_per_node "$NPROC" \
  -m free_train.burst ${args[@]+"${args[@]}"}
