#!/usr/bin/env bash
# The browser tables of docs/benchmarks.md and docs/webgpu.md: the npm package (release build) in
# headless Chromium, on the wasm CPU backend and on WebGPU (SwiftShader), every contender
# over the same test inputs, interleaved (www/bench/run.mjs):
#   scripts/bench-browser.sh [N per task, default 10] [extra run.mjs options, e.g. --only free-adaptive]
# Prints a table per device and task and writes target/bench-browser.json. The demo model
# unless FREE_MODEL is set. Expects www/node_modules (scripts/setup.sh).
#
# Both free-wasm's formats run (--dtypes stored,q8: as stored, and 8-bit weights; those
# quantized as the model loads, or downloaded in 8 bits from FREE_Q8_MODEL, else
# target/q8/<model folder's name>, when it is there, made by
#   python -m free_train.export models/free-t5-mini target/q8/free-t5-mini --dtype q8
# with PYTHONPATH=train and the training venv). transformers.js runs beside them on the same weights, at fp32, fp16 and q8
# (--tjs-dtypes), when the model's ONNX export is there: FREE_ONNX, else
# target/onnx/<model folder's name>, made by
#   python tools/export_onnx.py models/free-t5-mini target/onnx/free-t5-mini
#
#   scripts/bench-browser.sh --smoke
# checks instead that transformers.js (fp32) and free-wasm's full strategy give identical outputs on
# 5 inputs per task, on both devices, with the tiny fixture checkpoint tests/fixtures/t5-v10
# and its committed export tests/fixtures/t5-v10-onnx (made by the same script), and exits
# non-zero otherwise (scripts/test.sh runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/env.sh
source scripts/env.sh
[ -x www/node_modules/.bin/vite ] || { echo "bench-browser: www/node_modules is missing; run scripts/setup.sh" >&2; exit 1; }

if [ "${1:-}" = --smoke ]; then
  shift
  model=tests/fixtures/t5-v10
  onnx=tests/fixtures/t5-v10-onnx
  json=target/bench-browser-smoke.json
  # Outputs, not speed: the dev build the other browser tests already made will do.
  pkg_profile=(--dev)
  set -- 5 --only transformers.js --dtypes stored --tjs-dtypes fp32 --max-new-tokens 16 --assert-agree "$@"
else
  pkg_profile=()
  json=target/bench-browser.json
  model=${FREE_MODEL:-models/free-t5-mini}
  onnx=${FREE_ONNX:-target/onnx/$(basename "$model")}
fi
n="${1:-10}"
shift || true
q8_args=()
q8=${FREE_Q8_MODEL:-target/q8/$(basename "$model")}
if [ -f "$q8/model.safetensors" ]; then
  q8_args=(--q8-model "$(realpath "$q8")")
fi
onnx_args=()
if [ -f "$onnx/onnx/decoder_model_merged.onnx" ]; then
  onnx_args=(--onnx "$(realpath "$onnx")")
else
  echo "bench-browser: no ONNX export at $onnx, so no transformers.js (see tools/export_onnx.py)" >&2
fi

bash scripts/build-pkg.sh "${pkg_profile[@]}" >/dev/null
www/node_modules/.bin/tsc -p www/bench/tsconfig.json
www/node_modules/.bin/vite build --config www/bench/vite.config.mjs --logLevel warn
model=$(realpath "$model")
(cd www && node bench/run.mjs ../target/bench-page "$model" ../data/test.jsonl \
  --limit "$n" --json "../$json" "${q8_args[@]}" "${onnx_args[@]}" "$@")
