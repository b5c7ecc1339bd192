#!/usr/bin/env bash
# Continue the demo model's training line: one command on any machine with the repository.
#
#   scripts/train-line.sh                       # until stopped (Ctrl-C or SIGTERM saves a checkpoint)
#   scripts/train-line.sh --time-budget 9000    # any trainer flag overrides the line's settings
#
# Resumes train/runs/trunk/checkpoint when it is ahead of the committed trunk (models/trunk),
# else the trunk itself: its weights, settings and data position, with a fresh optimizer
# re-warmed over a hundred steps when the trunk carries none (see train/free_models/trunk.py).
# Before committing, write the trunk back: python -m free_train.trunk save train/runs/trunk
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-train.sh
VENV="${FREE_VENV:-$HOME/.cache/free-wasm/venv}"
exec "$VENV/bin/python" -m free_train.train --run-dir train/runs/trunk --resume --from-trunk models/trunk "$@"
