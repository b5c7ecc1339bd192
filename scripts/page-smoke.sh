#!/usr/bin/env bash
# The demo page end to end: builds the wasm package (dev profile, reusing the browser tests'
# build), serves the repository on 127.0.0.1, opens the page in headless Chromium with a
# fixture model and autorun, and checks the DOM: the model loaded, tokens were generated
# with their exit classes, and the statistics line was written. Expects scripts/env.sh
# sourced. Prints "N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."

wasm-pack build --dev --target web --out-dir pkg >/dev/null 2>&1 || { echo "wasm-pack build failed"; exit 1; }

port=$((20000 + RANDOM % 20000))
PORT=$port node scripts/serve.mjs . >/dev/null 2>&1 &
server=$!
profile=$(mktemp -d)
trap 'kill $server 2>/dev/null; rm -rf "$profile"' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/index.html" >/dev/null && break; sleep 0.1; done

dom=$(timeout 120 chromium --headless=new --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync --user-data-dir="$profile" \
  --virtual-time-budget=60000 --dump-dom \
  "http://127.0.0.1:$port/?model=tests/fixtures/t5-v11&autorun=1" 2>/dev/null)

passed=0 failed=0
# check NAME PATTERN [absent]: the DOM must (or, with "absent", must not) match PATTERN.
check() {
  local found=no
  grep -qE "$2" <<<"$dom" && found=yes
  if [ "$found" = "$([ "${3:-}" = absent ] && echo no || echo yes)" ]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1)); echo "page-smoke: FAILED: $1"
  fi
}
check "the model loaded" 'id="status"[^>]*>Model tests/fixtures/t5-v11: 5 decoder blocks, shallow exit after 2\.'
check "tokens carry exit classes" '<span class="(shallow|deep)" title="exit [0-9]+, confidence'
check "statistics were written" 'id="stats">[0-9]+ tokens in [0-9]+ ms; early exits [0-9]+; deep passes [0-9]+'
check "no error was shown" 'class="error"' absent
echo "page-smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
