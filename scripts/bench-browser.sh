#!/usr/bin/env bash
# The browser rows of the README's backend table: the npm package (release build) in
# headless Chromium, on the wasm CPU backend and on WebGPU (SwiftShader), every contender
# over the same test inputs, interleaved (www/bench/run.mjs):
#   scripts/bench-browser.sh [N per task, default 10] [extra run.mjs options, e.g. --only free-adaptive]
# Prints a table per device and task and writes target/bench-browser.json. The demo model
# unless FREE_MODEL is set. Expects www/node_modules (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/env.sh
source scripts/env.sh
[ -x www/node_modules/.bin/vite ] || { echo "bench-browser: www/node_modules is missing; run scripts/setup.sh" >&2; exit 1; }

n="${1:-10}"
shift || true
bash scripts/build-pkg.sh >/dev/null
www/node_modules/.bin/vite build --config www/bench/vite.config.mjs --logLevel warn
model=$(realpath "${FREE_MODEL:-models/free-t5-mini}")
(cd www && node bench/run.mjs ../target/bench-page "$model" ../data/test.jsonl \
  --limit "$n" --json ../target/bench-browser.json "$@")
