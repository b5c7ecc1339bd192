#!/usr/bin/env bash
# The npm package as a user gets it: builds pkg/ (dev profile), `npm pack`s it, installs
# the tarball into a fresh project in a temp folder (offline: the tarball has no
# dependencies), type-checks a page and a file using the public API with
# `tsc --strict --noEmit`, bundles the page with Vite and again with webpack 5, and runs
# each bundle in headless Chromium (js/test/install/run.mjs): the demo model
# models/free-t5-mini loads from the served files and then from Cache Storage offline, on
# the main thread and in the worker, and generates the tokens `free generate --json` does;
# broken downloads resume and a full quota only warns. Prints "N passed, M failed" per bundle.
#
# FREE_CLI=path uses that `free` binary (default: target/debug/free, built if missing
# or stale by cargo). Expects js/node_modules (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=scripts/env.sh
source scripts/env.sh

if [ -z "${FREE_CLI:-}" ]; then
  cargo build -q -p free-cli
  FREE_CLI=$ROOT/target/debug/free
fi
FREE_CLI=$(realpath "$FREE_CLI")
bash scripts/build-pkg.sh --dev >/dev/null

tmp=$(mktemp -d /tmp/free-wasm-install.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
tarball=$(cd pkg && npm pack --silent --pack-destination "$tmp" 2>/dev/null | tail -n1)
mkdir "$tmp/app"
cd "$tmp/app"
printf '{ "name": "free-wasm-install-test", "private": true, "type": "module" }\n' >package.json
npm install --offline --no-audit --no-fund --silent "$tmp/$tarball"
cp "$ROOT"/js/test/install/{index.html,index.webpack.html,main.ts,types-check.ts,tsconfig.json} .
"$ROOT/js/node_modules/.bin/tsc" -p tsconfig.json
"$ROOT/js/node_modules/.bin/vite" build --logLevel warn --outDir dist
# webpack 5 bundles the same page, from main.ts compiled to JavaScript (no TypeScript loader).
"$ROOT/js/node_modules/.bin/tsc" -p tsconfig.json --noEmit false --outDir .
node "$ROOT/js/test/install/webpack.mjs" .
cd "$ROOT/js"
for bundler in vite webpack; do
  echo "npm-install-test: the page bundled by $bundler"
  dist=$tmp/app/dist
  [ "$bundler" = vite ] || dist=$tmp/app/dist-$bundler
  node test/install/run.mjs "$dist" "$ROOT/models/free-t5-mini" "$FREE_CLI"
done
