#!/usr/bin/env bash
# The memory checks in full: 100 load/generate/dispose cycles on WebGPU (SwiftShader) in
# headless Chromium, beside the 100 on the CPU that scripts/test.sh runs as well (which does
# 20 on WebGPU: each load there makes a device and compiles every kernel, ~3 s). Passes when
# the wasm memory grows by less than one model's weights over the cycles and every dispose
# leaves no device alive (tests/wasm_api.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/env.sh
source scripts/env.sh
export FREE_REQUIRE_GPU=1 FREE_GPU_CYCLES="${FREE_GPU_CYCLES:-100}" WASM_BINDGEN_TEST_TIMEOUT=1200
wasm-pack test --headless --chrome --test wasm_api -- cycles
