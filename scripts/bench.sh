#!/usr/bin/env bash
# Every decoding strategy on the same test inputs, interleaved in one process
# (docs/method.md#how-results-are-measured):
#   scripts/bench.sh [N per task, default 100] [extra `free bench` options, e.g. --threshold 0.4]
# Prints the table and writes target/bench.json. The demo model unless FREE_MODEL is set.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/env.sh
source scripts/env.sh

n="${1:-100}"
shift || true
cargo build --release -p free-cli
# One thread: batch-1 decoding streams weights, and the ratios compare single-core runs.
RAYON_NUM_THREADS=1 target/release/free bench --model "${FREE_MODEL:-models/free-t5-mini}" \
  --data data/test.jsonl --limit "$n" --max-new-tokens 64 --json target/bench.json "$@"
