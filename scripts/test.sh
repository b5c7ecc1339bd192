#!/usr/bin/env bash
# Every test of the project: native (unit, HF parity, CLI), the same tests in headless
# Chromium through wasm-pack, the demo page (its file server, unit tests and end to end), the npm package installed from its
# tarball into a fresh project, the browser bench's smoke test against transformers.js, a short fuzzing run of the model-file
# parsers, and the training package's pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh

step() { printf '\n== %s\n' "$*"; }

# The WebGPU tests (tests/gpu.rs) skip without an adapter on a developer's machine; here a
# missing adapter (lavapipe natively, SwiftShader in Chromium) is a failure.
export FREE_REQUIRE_GPU=1
# Vulkan's loader complains on every device creation without it.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"

step "native tests (cargo test)"
cargo test --workspace

step "browser tests (wasm-pack test --headless --chrome)"
wasm-pack test --headless --chrome

step "demo page: its file server and unit tests, then end to end in headless Chromium"
bash scripts/page-test.sh

step "npm package: pack, install into a fresh project, tsc --strict, Vite and webpack bundles, headless Chromium"
bash scripts/npm-install-test.sh

step "transformers.js and free-wasm side by side: identical outputs on a tiny checkpoint (bench-browser.sh --smoke)"
bash scripts/bench-browser.sh --smoke

step "fuzz smoke (scripts/fuzz.sh, 15 s per target)"
FUZZ_SEED=1 bash scripts/fuzz.sh 15

if [ -d train/tests ]; then
  step "training package tests (pytest)"
  "${FREE_VENV:-$HOME/.cache/free-wasm/venv}/bin/python" -m pytest -q train/tests
fi
