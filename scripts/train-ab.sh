#!/usr/bin/env bash
# One arm of a recipe A/B: the line's settings from a common start, one change, a fixed token
# budget, validated at the end (train/README.md keeps the table).
#
#   scripts/train-ab.sh START_DIR NAME [trainer flags that make the change...]
#   scripts/train-ab.sh models/trunk embed10 --embed-lr-scale 10
#
# The baseline arm is the same command with no change (or the line itself, validated at the same
# token mark with --eval-every-tokens). AB_TOKENS (default 2.5e6) and AB_THREADS (default 1, so
# an arm can run beside the line) adjust the budget and the threads.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: scripts/train-ab.sh START_DIR NAME [flags...]" >&2; exit 2; }
start=$1 name=$2; shift 2
[ -f "$start/model.safetensors" ] || { echo "train-ab: $start has no model.safetensors (give a trunk or model folder)" >&2; exit 2; }
VENV="${FREE_VENV:-$HOME/.cache/free-wasm/venv}"
tokens=${AB_TOKENS:-2.5e6}
exec "$VENV/bin/python" -m free_train.train --run-dir "train/runs/ab-$name" --init "$start" --optimizer adamw \
  --lr 1.3e-4 --warmup 200 --schedule constant --batch-tokens 4096 --max-source-len 256 --max-target-len 256 \
  --dropout 0 --alpha 0.5 --shallow-exit-layer 2 --eval-every 100000 --eval-every-tokens "$tokens" \
  --max-tokens "$tokens" --ckpt-every 600 --threads "${AB_THREADS:-1}" --seed 12 --precision f32 "$@"
