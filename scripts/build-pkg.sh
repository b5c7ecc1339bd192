#!/usr/bin/env bash
# Builds the npm package free-wasm into pkg/: the wasm module (wasm-pack), the typed
# JavaScript API compiled from js/src (tsc), and the package.json that points at it.
#
#   scripts/build-pkg.sh          release build (what `npm publish pkg` would ship)
#   scripts/build-pkg.sh --dev    dev profile (faster to build; what the tests use)
#
# --target web, not bundler: the web target's module fetches free_wasm_bg.wasm from
# `new URL(..., import.meta.url)`, which works unbundled in a page or a module worker and
# which Vite, webpack 5, Rollup and esbuild-based tools all understand as an asset; the
# bundler target imports the .wasm as an ES module, which needs a wasm plugin in most
# bundlers (Vite included) and does not run in a browser without one.
# Expects js/node_modules (scripts/setup.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/env.sh
source scripts/env.sh

profile=()
case "${1:-}" in
  "") ;;
  --dev) profile=(--dev) ;;
  *) echo "usage: scripts/build-pkg.sh [--dev]" >&2; exit 2 ;;
esac
[ -x js/node_modules/.bin/tsc ] || { echo "build-pkg: js/node_modules is missing; run scripts/setup.sh" >&2; exit 1; }

wasm-pack build "${profile[@]}" --target web --out-dir pkg
js/node_modules/.bin/tsc -p js/tsconfig.json
node js/scripts/write-package-json.mjs pkg
echo "build-pkg: pkg/ is the npm package free-wasm $(node -p 'require("./pkg/package.json").version')"
