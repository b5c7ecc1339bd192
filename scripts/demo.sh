#!/usr/bin/env bash
# Builds the wasm package in release mode and serves the demo page on 127.0.0.1.
# PORT=8080 by default; FREE_MODEL picks the model folder (relative to the repo root).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh

wasm-pack build --release --target web --out-dir pkg
model=${FREE_MODEL:-}
if [ -z "$model" ]; then
  if [ -f models/free-t5-mini/model.safetensors ]; then model=models/free-t5-mini; else model=tests/fixtures/t5-v10; fi
fi
echo "model: $model"
echo "open: http://127.0.0.1:${PORT:-8080}/?model=$model"
exec node scripts/serve.mjs .
