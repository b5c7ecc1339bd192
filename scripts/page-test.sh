#!/usr/bin/env bash
# The demo page's tests: its file server against hostile requests (scripts/serve.test.mjs)
# and unit tests of its trace-to-view logic (node's test runner), then
# end to end: builds the npm package (dev profile, as the install test does) and the page
# (tsc + Vite), serves it on 127.0.0.1 with models/free-t5-mini, and drives it in headless
# Chromium (www/test/e2e/run.mjs). Screenshots of every state go to target/demo-e2e/.
# FREE_MODEL=DIR tests with another model folder (the e2e checks expect 8 decoder blocks
# and the shallow exit after 2). The page's 8-bit weights are checked against
# `free generate --dtype q8`: FREE_CLI=path uses that `free` binary (default:
# target/debug/free, built if missing or stale by cargo). Expects www/node_modules (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/env.sh
source scripts/env.sh
[ -x www/node_modules/.bin/vite ] || { echo "page-test: www/node_modules is missing; run scripts/setup.sh" >&2; exit 1; }

echo "page-test: the file server (scripts/serve.test.mjs)"
node --test scripts/serve.test.mjs

echo "page-test: unit tests (www/test/unit)"
(cd www && node test/unit/run.mjs)

echo "page-test: building the package (dev) and the page"
bash scripts/build-pkg.sh --dev >/dev/null
(cd www && npm run --silent build -- --logLevel warn)

echo "page-test: end to end in headless Chromium (www/test/e2e)"
if [ -z "${FREE_CLI:-}" ]; then
  cargo build -q -p free-cli
  FREE_CLI=$PWD/target/debug/free
fi
export FREE_CLI=$(realpath "$FREE_CLI")
(cd www && node test/e2e/run.mjs "${FREE_MODEL:-../models/free-t5-mini}" ../target/demo-e2e)
