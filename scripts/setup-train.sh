#!/usr/bin/env bash
# Create or refresh the Python venv for train/ (free_train): pinned requirements, then the
# package itself in editable mode. Idempotent: a quick no-op when train/requirements.txt and
# train/pyproject.toml are unchanged since the last successful run.
#
#   scripts/setup-train.sh            # venv at ${FREE_VENV:-$HOME/.cache/free-wasm/venv}
#   FREE_PYTHON=python3.11 scripts/setup-train.sh
#   FREE_PIP_ARGS="--index-url ..." scripts/setup-train.sh   # extra pip arguments (e.g. CPU-only torch index)
#   scripts/setup-train.sh --force    # reinstall even when up to date
#
# Afterwards: source "$FREE_VENV/bin/activate" (or call "$FREE_VENV/bin/python -m free_train.train ...").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FREE_VENV:-$HOME/.cache/free-wasm/venv}"
PY="${FREE_PYTHON:-python3}"
REQ="$ROOT/train/requirements.txt"
STAMP="$VENV/.free-train-setup.sha256"
FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

say() { printf '[setup-train] %s\n' "$*"; }

want_hash() {
    cat "$REQ" "$ROOT/train/pyproject.toml" | sha256sum | cut -d' ' -f1
}

if [[ ! -x "$VENV/bin/python" ]]; then
    command -v "$PY" >/dev/null || { say "no $PY found: install Python >= 3.11 (the pinned torch and transformers need it) or set FREE_PYTHON"; exit 1; }
    "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
        || { say "$PY is older than 3.11 (the pinned torch and transformers need it): set FREE_PYTHON to a newer interpreter"; exit 1; }
    say "creating venv at $VENV"
    mkdir -p "$(dirname "$VENV")"
    "$PY" -m venv "$VENV" || { say "python venv failed (Debian: apt-get install python3-venv)"; exit 1; }
fi

HASH="$(want_hash)"
if [[ $FORCE -eq 0 && -f "$STAMP" && "$(cat "$STAMP")" == "$HASH" ]] \
    && "$VENV/bin/python" -c 'import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in ("free_train", "torch", "transformers", "tokenizers", "safetensors")))' 2>/dev/null; then
    say "up to date ($VENV)"
    exit 0
fi

# shellcheck disable=SC2086
say "installing pinned requirements into $VENV (torch is a large download the first time)"
"$VENV/bin/python" -m pip install --disable-pip-version-check ${FREE_PIP_ARGS:-} -r "$REQ"
say "installing train/ (free_train) in editable mode"
# shellcheck disable=SC2086
"$VENV/bin/python" -m pip install --disable-pip-version-check ${FREE_PIP_ARGS:-} --no-deps -e "$ROOT/train"
"$VENV/bin/python" -c 'import free_train, torch, transformers, tokenizers; print("free_train", free_train.__version__, "torch", torch.__version__, "transformers", transformers.__version__)'
echo "$HASH" > "$STAMP"
say "done ($VENV)"
