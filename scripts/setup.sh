#!/usr/bin/env bash
# Installs what free-wasm needs on a Debian 12 machine; idempotent, and quick (a few
# seconds) when everything is already there, so the other scripts call it first.
#
#   - the wasm32-unknown-unknown Rust target: `rustup target add` when rustup's server
#     answers, otherwise the Debian fallback (../shared/TOOLCHAIN.md): Debian's rustc/cargo
#     linked into rustup as the toolchain "system" plus a wasm32 std built here once.
#     scripts/env.sh then picks whichever is installed; FREE_WASM_RUST=rustup|system forces one.
#   - wasm-bindgen-cli at exactly the wasm-bindgen version in Cargo.lock, and wasm-pack
#   - a nightly toolchain and cargo-fuzz (scripts/fuzz.sh)
#   - Debian's chromium + chromium-driver (headless browser tests; WebGPU via SwiftShader),
#     mesa-vulkan-drivers + libvulkan1 (lavapipe: native WebGPU/Vulkan without a GPU), lz4
#   - npm dependencies (`npm ci` from the committed lockfiles): the front-end's (www/) and
#     the npm package's build and test tools (js/: typescript, vite, webpack, playwright-core)
#   - the Python training venv (scripts/setup-train.sh, when present)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

WASM_PACK_VERSION=0.15.1
CARGO_FUZZ_VERSION=0.13.2
APT_PACKAGES=(chromium chromium-driver mesa-vulkan-drivers libvulkan1 lz4)
FALLBACK_APT_PACKAGES=(rustc-web cargo-web rust-web-src lld-22)
WASM_TARGET=wasm32-unknown-unknown

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }
trap 'die "unexpected failure at line $LINENO (exit $?); re-run with bash -x scripts/setup.sh to see the step"' ERR

case ":$PATH:" in *":$HOME/.cargo/bin:"*) ;; *) export PATH="$HOME/.cargo/bin:$PATH" ;; esac

# ---------------------------------------------------------------------------- apt
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=(sudo); fi
fi
APT_UPDATED=
apt_missing() { # prints the packages among "$@" that are not installed
  local p
  for p in "$@"; do
    if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
      printf '%s\n' "$p"
    fi
  done
}
apt_ensure() { # installs the missing packages among "$@"
  local missing
  mapfile -t missing < <(apt_missing "$@")
  [ "${#missing[@]}" -eq 0 ] && return 0
  command -v apt-get >/dev/null 2>&1 ||
    die "apt packages missing (${missing[*]}) and no apt-get: this script supports Debian 12; install them by hand"
  if [ "$(id -u)" -ne 0 ] && [ "${#SUDO[@]}" -eq 0 ]; then
    die "apt packages missing (${missing[*]}); run as root or install sudo"
  fi
  say "apt: installing ${missing[*]}"
  if [ -z "$APT_UPDATED" ]; then
    "${SUDO[@]}" apt-get update -qq || die "apt-get update failed; check the network / the apt sources"
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" ||
    die "apt-get install ${missing[*]} failed; see apt's message above"
}

# ------------------------------------------------------------------ wasm32 target
# True when the toolchain selected by the current environment has a wasm32 std.
has_wasm_std() {
  local libdir
  libdir=$(rustc --print target-libdir --target "$WASM_TARGET" 2>/dev/null) || return 1
  compgen -G "$libdir/libstd-*.rlib" >/dev/null
}

# The Debian rustc's sysroot (it is the system prefix, /usr).
system_sysroot() { /usr/bin/rustc --print sysroot; }

# Stamp written beside the wasm32 std we build, so a Debian rustc upgrade triggers a rebuild.
system_stamp() { /usr/bin/rustc -vV | grep -E '^(release|commit-hash|LLVM version):'; }

system_toolchain_ready() {
  [ -x /usr/bin/rustc ] || return 1
  local libdir stamp
  libdir="$(system_sysroot)/lib/rustlib/$WASM_TARGET/lib"
  stamp="$libdir/.free-wasm-std-stamp"
  compgen -G "$libdir/libstd-*.rlib" >/dev/null || return 1
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(system_stamp)" ] || return 1
  if command -v rustup >/dev/null 2>&1; then
    RUSTUP_TOOLCHAIN=system has_wasm_std || return 1
  fi
  [ -z "$(apt_missing "${FALLBACK_APT_PACKAGES[@]}")" ]
}

rustup_reachable() {
  # static.rust-lang.org may be unreachable (or hang: offline machines); probe it quickly.
  command -v curl >/dev/null 2>&1 || return 0 # cannot probe: let `timeout rustup` decide
  timeout 5 curl -sfI -o /dev/null https://static.rust-lang.org/dist/channel-rust-stable.toml.sha256
}

install_debian_fallback() {
  say "wasm32 target: using the Debian fallback (Debian rustc/cargo + a wasm32 std built here)"
  apt_ensure "${FALLBACK_APT_PACKAGES[@]}"
  local sysroot src libdir
  sysroot=$(system_sysroot) || die "Debian's rustc (/usr/bin/rustc from rustc-web) does not run"
  src="$sysroot/lib/rustlib/src/rust/library"
  [ -d "$src/std" ] || die "no Rust std sources at $src; is rust-web-src installed?"
  if command -v rustup >/dev/null 2>&1; then
    local linked
    linked=$(rustup toolchain list -v 2>/dev/null | awk '$1 == "system" {print $NF}')
    if [ "$linked" != "$sysroot" ]; then
      [ -n "$linked" ] && { rustup toolchain uninstall system >/dev/null 2>&1 || true; }
      say "rustup toolchain link system $sysroot"
      rustup toolchain link system "$sysroot" || die "rustup toolchain link system $sysroot failed"
    fi
  fi

  local major linker
  major=$(/usr/bin/rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
  linker="wasm-ld-$major"
  command -v "$linker" >/dev/null 2>&1 ||
    die "no $linker for Debian's rustc (LLVM $major); install the lld-$major package"

  libdir="$sysroot/lib/rustlib/$WASM_TARGET/lib"
  if system_toolchain_ready; then # the std was already built; only the rustup link was missing
    say "wasm32 target: Debian fallback ready (wasm32 std built earlier for $(/usr/bin/rustc -V | cut -d' ' -f2))"
    return
  fi
  say "building the wasm32 std with -Zbuild-std (once, about a minute) into $libdir"
  local tmp
  tmp=$(mktemp -d /tmp/free-wasm-std.XXXXXX)
  mkdir -p "$tmp/src"
  cat >"$tmp/Cargo.toml" <<'EOF'
[package]
name = "free_wasm_std_builder"
version = "0.0.0"
edition = "2021"
[lib]
path = "src/lib.rs"
[workspace]
EOF
  : >"$tmp/src/lib.rs"
  # shellcheck disable=SC2030 # these exports are meant for the subshell only
  (
    cd "$tmp"
    unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_TARGET CARGO_TARGET_DIR
    export RUSTC_BOOTSTRAP=1 CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER="$linker"
    if command -v rustup >/dev/null 2>&1; then export RUSTUP_TOOLCHAIN=system; fi
    /usr/bin/cargo build --release --target "$WASM_TARGET" \
      -Zbuild-std=std,panic_abort,panic_unwind,test
  ) || die "building the wasm32 std failed (log above; temp crate kept in $tmp)"
  local rlibs=()
  mapfile -t rlibs < <(find "$tmp/target/$WASM_TARGET/release/deps" -maxdepth 1 -name 'lib*.rlib' \
    ! -name 'libfree_wasm_std_builder-*')
  # shellcheck disable=SC2015 # die when either test fails
  [ "${#rlibs[@]}" -gt 0 ] && printf '%s\n' "${rlibs[@]}" | grep -q '/libstd-' ||
    die "the wasm32 std build produced no libstd-*.rlib (temp crate kept in $tmp)"
  "${SUDO[@]}" mkdir -p "$libdir"
  "${SUDO[@]}" find "$libdir" -maxdepth 1 -name 'lib*.rlib' -delete
  "${SUDO[@]}" cp "${rlibs[@]}" "$libdir/"
  system_stamp | "${SUDO[@]}" tee "$libdir/.free-wasm-std-stamp" >/dev/null
  rm -rf "$tmp"
  system_toolchain_ready || die "the Debian fallback is installed but rustc still finds no wasm32 std in $libdir"
  say "wasm32 target: Debian fallback ready (${#rlibs[@]} rlibs; scripts/env.sh will export RUSTUP_TOOLCHAIN=system and CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=$linker)"
}

ensure_wasm_target() {
  local force=${FREE_WASM_RUST:-}
  case "$force" in ""|rustup|system) ;; *) die "FREE_WASM_RUST must be rustup or system (got '$force')" ;; esac
  # shellcheck disable=SC2031 # the value from the caller's environment is meant
  if [ "${RUSTUP_TOOLCHAIN:-}" = system ] && [ "$force" != system ]; then
    unset RUSTUP_TOOLCHAIN # left over from sourcing scripts/env.sh: look at rustup's own choice
  fi
  if [ "$force" != system ] && command -v rustup >/dev/null 2>&1 && has_wasm_std; then
    say "wasm32 target: rustup toolchain $(rustc -V | cut -d' ' -f2) already has it"
    return
  fi
  if [ "$force" != rustup ] && system_toolchain_ready; then
    say "wasm32 target: Debian fallback already in place ($(/usr/bin/rustc -V | cut -d' ' -f2), toolchain 'system')"
    return
  fi
  if [ "$force" != system ] && command -v rustup >/dev/null 2>&1; then
    if rustup_reachable; then
      say "wasm32 target: static.rust-lang.org answers; trying 'rustup target add $WASM_TARGET' (60 s limit)"
      if timeout 60 rustup target add "$WASM_TARGET" && has_wasm_std; then
        say "wasm32 target: installed with rustup (PATH TAKEN: rustup)"
        return
      fi
      say "rustup target add failed or timed out"
    else
      say "static.rust-lang.org does not answer within 5 s"
    fi
    [ "$force" = rustup ] && die "FREE_WASM_RUST=rustup but rustup could not install $WASM_TARGET; check the network to static.rust-lang.org or unset FREE_WASM_RUST"
  elif [ "$force" = rustup ]; then
    die "FREE_WASM_RUST=rustup but rustup is not installed; see https://rustup.rs"
  elif ! command -v rustup >/dev/null 2>&1 && ! command -v apt-get >/dev/null 2>&1; then
    die "no rustup and no apt-get: install Rust with the wasm32-unknown-unknown target by hand"
  fi
  install_debian_fallback
  say "wasm32 target: PATH TAKEN: Debian fallback"
}

# ----------------------------------------------------------------------- tools
wasm_bindgen_version() { # the wasm-bindgen version the project locks
  local v=""
  if [ ! -f Cargo.lock ]; then
    say "no Cargo.lock: cargo generate-lockfile"
    cargo generate-lockfile >/dev/null 2>&1 || say "cargo generate-lockfile failed; using Cargo.toml's pin"
  fi
  if [ -f Cargo.lock ]; then
    v=$(awk '/^\[\[package\]\]/ {n=""} /^name = / {n=$3} n == "\"wasm-bindgen\"" && /^version = / {gsub(/"/, "", $3); print $3; exit}' Cargo.lock)
  fi
  if [ -z "$v" ]; then
    v=$(sed -n 's/^wasm-bindgen *= *{\{0,1\}[^"]*"=\{0,1\}\([0-9][0-9.]*\)".*/\1/p' Cargo.toml | head -n1)
  fi
  [ -n "$v" ] || die "cannot find the wasm-bindgen version in Cargo.lock or Cargo.toml"
  printf '%s\n' "$v"
}

ensure_wasm_bindgen() {
  local want have=""
  want=$(wasm_bindgen_version)
  if command -v wasm-bindgen >/dev/null 2>&1; then
    have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')
  fi
  if [ "$have" = "$want" ] && command -v wasm-bindgen-test-runner >/dev/null 2>&1; then
    say "wasm-bindgen-cli $want: present"
    return
  fi
  say "wasm-bindgen-cli: installing $want (have '${have:-none}'; a few minutes)"
  # No --locked: the crate's own lockfile pins a webpki-roots the registry no longer has.
  cargo install wasm-bindgen-cli --version "$want" --force ||
    die "cargo install wasm-bindgen-cli --version $want failed; see cargo's message above"
  have=$(wasm-bindgen --version | awk '{print $2}')
  [ "$have" = "$want" ] ||
    die "wasm-bindgen on PATH is $have, not $want: is another wasm-bindgen ahead of ~/.cargo/bin on PATH ($(command -v wasm-bindgen))?"
}

ensure_wasm_pack() {
  if command -v wasm-pack >/dev/null 2>&1; then
    say "wasm-pack: present ($(wasm-pack --version 2>/dev/null | awk '{print $2}'))"
    return
  fi
  say "wasm-pack: installing $WASM_PACK_VERSION (a few minutes)"
  cargo install wasm-pack --version "$WASM_PACK_VERSION" ||
    die "cargo install wasm-pack --version $WASM_PACK_VERSION failed; see cargo's message above"
}

check_browser() {
  local c d
  c=$(chromium --version 2>/dev/null | grep -oE '[0-9]+' | head -n1) || true
  d=$(chromedriver --version 2>/dev/null | grep -oE '[0-9]+' | head -n1) || true
  [ -n "$c" ] || die "chromium does not run (chromium --version failed); reinstall the chromium package"
  [ -n "$d" ] || die "chromedriver does not run (chromedriver --version failed); reinstall chromium-driver"
  [ "$c" = "$d" ] ||
    die "chromium $c and chromedriver $d differ; run apt-get install --only-upgrade chromium chromium-driver"
  say "chromium + chromedriver $c: present"
}

# npm packages of one folder (www/: the demo page; js/: the npm package's build and test
# tools), from its committed lockfile.
ensure_npm_deps() {
  local dir=$1
  [ -f "$dir/package.json" ] || return 0
  command -v npm >/dev/null 2>&1 || die "$dir/package.json needs npm; install Node.js 20 and npm"
  if [ -f "$dir/package-lock.json" ]; then
    if [ -f "$dir/node_modules/.package-lock.json" ] &&
      ! [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
      say "npm dependencies ($dir/): up to date"
      return
    fi
    say "npm ci ($dir/)"
    (cd "$dir" && npm ci --no-audit --no-fund) || die "npm ci in $dir/ failed; see npm's message above"
  else
    [ -d "$dir/node_modules" ] && { say "npm dependencies ($dir/): present (no package-lock.json: commit one)"; return; }
    say "npm install ($dir/; no package-lock.json yet: commit the one it writes)"
    (cd "$dir" && npm install --no-audit --no-fund) || die "npm install in $dir/ failed; see npm's message above"
  fi
}

# Fuzzing (scripts/fuzz.sh): cargo-fuzz needs a nightly toolchain for libFuzzer's sanitizers.
ensure_fuzz() {
  if ! command -v rustup >/dev/null 2>&1; then
    say "fuzzing: no rustup, so no nightly toolchain; scripts/fuzz.sh will not run (install rustup from https://rustup.rs)"
    return
  fi
  if rustup toolchain list | grep -q '^nightly'; then
    say "nightly toolchain (fuzzing): present"
  else
    say "nightly toolchain (fuzzing): installing"
    timeout 600 rustup toolchain install nightly --profile minimal ||
      die "rustup toolchain install nightly failed; cargo fuzz needs it (check the network to static.rust-lang.org)"
  fi
  if command -v cargo-fuzz >/dev/null 2>&1; then
    say "cargo-fuzz: present"
  else
    say "cargo-fuzz: installing (a few minutes)"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked ||
      die "cargo install cargo-fuzz failed; see cargo's message above"
  fi
}

# ------------------------------------------------------------------------ main
start=$SECONDS
apt_ensure "${APT_PACKAGES[@]}"
check_browser
command -v rustc >/dev/null 2>&1 || command -v rustup >/dev/null 2>&1 || [ -x /usr/bin/rustc ] ||
  say "no Rust found: taking the Debian fallback (install rustup from https://rustup.rs for the usual path)"
ensure_wasm_target

# Everything below uses the toolchain the other scripts will use.
unset FREE_WASM_QUIET
# shellcheck source=scripts/env.sh
source "$ROOT/scripts/env.sh"
[ "$FREE_WASM_RUST" != none ] || die "scripts/env.sh finds no toolchain with the wasm32 target after setup; please report"
say "toolchain for the project: $FREE_WASM_RUST ($(rustc -V))"

ensure_wasm_bindgen
ensure_wasm_pack
ensure_fuzz
ensure_npm_deps www
ensure_npm_deps js
if [ -x scripts/setup-train.sh ]; then
  scripts/setup-train.sh || die "scripts/setup-train.sh failed; see its message above"
fi
trap - ERR
say "done in $((SECONDS - start)) s"
