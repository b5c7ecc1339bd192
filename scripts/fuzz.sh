#!/usr/bin/env bash
# Fuzzes the parsers of a model folder with cargo-fuzz (libFuzzer, nightly toolchain):
#   scripts/fuzz.sh [SECONDS per target, default 60] [TARGET ...]
#   FUZZ_SEED=1 scripts/fuzz.sh 15    # a fixed libFuzzer seed (CI's smoke run)
# Targets (fuzz/fuzz_targets): safetensors, config, free_json, tokenizer. Each mutates one
# file of the v1.1 fixture (safetensors: of a tiny checkpoint, fuzz/seeds/tiny, small enough
# for the input cap), loads the model and generates. New inputs
# that reach new code go to fuzz/corpus/TARGET; a crash stops the run, is saved under
# fuzz/artifacts/TARGET, and belongs in fuzz/regressions/TARGET once fixed (tests replay it).
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(safetensors config free_json tokenizer)

rustup toolchain list | grep -q '^nightly' || {
  echo "fuzz.sh: cargo fuzz needs a nightly toolchain; run scripts/setup.sh" >&2
  exit 1
}
command -v cargo-fuzz >/dev/null || {
  echo "fuzz.sh: cargo-fuzz is not installed; run scripts/setup.sh" >&2
  exit 1
}

for t in "${targets[@]}"; do
  # The seeds of tokenizer.json are ~40 KB, the tiny checkpoints of safetensors up to 10 KB.
  case "$t" in tokenizer) max_len=65536 ;; safetensors) max_len=16384 ;; *) max_len=8192 ;; esac
  echo "== fuzz $t for ${secs}s"
  cargo +nightly fuzz run --fuzz-dir fuzz "$t" "fuzz/corpus/$t" -- \
    -max_total_time="$secs" -max_len="$max_len" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    ${FUZZ_SEED:+-seed="$FUZZ_SEED"}
done
