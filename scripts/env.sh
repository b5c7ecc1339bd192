# shellcheck shell=bash
# Environment for building free-wasm; sourced by scripts/*.sh (and by hand:
# `source scripts/env.sh`). No network, a few rustc calls: well under a second.
#
# It picks the Rust toolchain that can build for wasm32-unknown-unknown (see
# scripts/setup.sh and ../shared/TOOLCHAIN.md):
#   rustup  - the active rustup toolchain has the wasm32 target (`rustup target add`);
#             nothing else to set, rustc links wasm with its bundled rust-lld.
#   system  - the Debian fallback: Debian's rustc/cargo (rustc-web, cargo-web) linked into
#             rustup as the toolchain "system", with a wasm32 std built by setup.sh.
#             Exports RUSTUP_TOOLCHAIN=system for EVERY cargo command (native too, so the
#             target/ cache is shared) and the wasm linker wasm-ld-<LLVM major>.
# Set FREE_WASM_RUST=rustup or FREE_WASM_RUST=system beforehand to force one of them.
# After sourcing, FREE_WASM_RUST says which one is in use ("none" when neither has the
# wasm32 target yet: run scripts/setup.sh).

case ":$PATH:" in
  *":$HOME/.cargo/bin:"*) ;;
  *) export PATH="$HOME/.cargo/bin:$PATH" ;;
esac

# True when the toolchain selected by the current environment has a wasm32 std.
_fw_has_wasm_std() {
  local libdir
  libdir=$(rustc --print target-libdir --target wasm32-unknown-unknown 2>/dev/null) || return 1
  compgen -G "$libdir/libstd-*.rlib" >/dev/null
}

# True when the toolchain selected by the current environment brings its own wasm linker.
_fw_has_rust_lld() {
  local sysroot
  sysroot=$(rustc --print sysroot 2>/dev/null) || return 1
  compgen -G "$sysroot/lib/rustlib/*/bin/rust-lld" >/dev/null
}

# Export the wasm linker for a toolchain without rust-lld: wasm-ld of rustc's LLVM version.
_fw_set_wasm_linker() {
  local major
  _fw_has_rust_lld && return 0
  major=$(rustc -vV 2>/dev/null | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
  if [ -n "$major" ] && command -v "wasm-ld-$major" >/dev/null 2>&1; then
    export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER="wasm-ld-$major"
  elif command -v wasm-ld >/dev/null 2>&1; then
    export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld
  else
    echo "scripts/env.sh: no wasm-ld-${major:-NN} for the system toolchain; run scripts/setup.sh" >&2
  fi
}

_fw_use_system() {
  if command -v rustup >/dev/null 2>&1; then export RUSTUP_TOOLCHAIN=system; fi
  _fw_set_wasm_linker
  FREE_WASM_RUST=system
}

_fw_pick() {
  case "${FREE_WASM_RUST:-}" in
    system) _fw_use_system; return ;;
    rustup)
      # Undo what an earlier sourcing in system mode may have exported.
      if [ "${RUSTUP_TOOLCHAIN:-}" = system ]; then unset RUSTUP_TOOLCHAIN; fi
      unset CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER
      return ;;
  esac
  if [ "${RUSTUP_TOOLCHAIN:-}" != system ] && _fw_has_wasm_std; then
    if _fw_has_rust_lld || ! command -v rustup >/dev/null 2>&1; then
      # A rustup toolchain with the target, or (no rustup) a rustc on PATH that has it.
      if command -v rustup >/dev/null 2>&1; then FREE_WASM_RUST=rustup; else _fw_use_system; fi
      return
    fi
  fi
  if command -v rustup >/dev/null 2>&1 && RUSTUP_TOOLCHAIN=system _fw_has_wasm_std; then
    _fw_use_system
    return
  fi
  FREE_WASM_RUST=none
}

_fw_pick
export FREE_WASM_RUST
if [ "$FREE_WASM_RUST" = none ] && [ -z "${FREE_WASM_QUIET:-}" ]; then
  echo "scripts/env.sh: no Rust toolchain with the wasm32-unknown-unknown target; run scripts/setup.sh" >&2
fi

# Browser tests: model tests in headless Chromium take longer than wasm-bindgen-test-runner's
# 20 s per-test default.
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-300}"

unset -f _fw_has_wasm_std _fw_has_rust_lld _fw_set_wasm_linker _fw_use_system _fw_pick
