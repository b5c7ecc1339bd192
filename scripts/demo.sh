#!/usr/bin/env bash
# The demo: builds the npm package free-wasm in release mode (scripts/build-pkg.sh) and the
# demo page on it (www/: tsc + Vite into www/dist), links the model folder in as
# www/dist/model, and serves the page on 127.0.0.1, printing its URL.
# PORT=8080 by default; FREE_MODEL=DIR picks the model folder (default models/free-t5-mini).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh

model=${FREE_MODEL:-models/free-t5-mini}
[ -f "$model/config.json" ] || { echo "demo: $model has no config.json; set FREE_MODEL to a model folder" >&2; exit 1; }

bash scripts/build-pkg.sh
(cd www && npm run --silent build -- --logLevel warn)
ln -sfn "$(realpath "$model")" www/dist/model
echo "demo: model $model"
echo "demo: open http://127.0.0.1:${PORT:-8080}/"
exec node scripts/serve.mjs www/dist
