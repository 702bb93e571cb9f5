#!/usr/bin/env bash
# Creates (once) the Python virtual environment that compatibility tests and benchmarks run real
# JupyterHub tools from, and installs the pinned packages that are missing. Prints the venv's
# path on stdout (the only thing printed there); progress goes to stderr.
#
# Usage: scripts/python-test-env.sh [SET...]
#   SET   package sets to install, any of:
#           test   what the Rust tests run (default): jupyterhub-idle-culler
#           bench  the reference hub for scripts/bench-hub.sh: jupyterhub 6.1.1
#
# Idempotent and non-interactive (CI=true, no stdin): when every pinned package is already
# installed at its pinned version, nothing is fetched.
#
# Environment:
#   JHRS_CACHE    cache root (default: $HOME/.cache/jupyterhub-rs); the venv is $JHRS_CACHE/venv
#   JHRS_PYTHON   the Python 3.11 interpreter to build the venv from (default: python3.11, then
#                 python3 if it is 3.11)
set -euo pipefail

JHRS_CACHE="${JHRS_CACHE:-${HOME:-/root}/.cache/jupyterhub-rs}"
VENV="$JHRS_CACHE/venv"

# Pinned requirements per set. Versions are exact: the tests assert on these tools' behaviour.
TEST_REQUIREMENTS=(
    "jupyterhub-idle-culler==2.0.0"
)
BENCH_REQUIREMENTS=(
    "jupyterhub==6.1.1"
)

log() { printf '[python-test-env] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

sets=("$@")
((${#sets[@]} > 0)) || sets=(test)
requirements=()
for set in "${sets[@]}"; do
    case "$set" in
        test) requirements+=("${TEST_REQUIREMENTS[@]}") ;;
        bench) requirements+=("${BENCH_REQUIREMENTS[@]}") ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2; exit 0 ;;
        *) die "unknown package set '$set' (expected: test, bench)" ;;
    esac
done

is_py311() { "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; }

# --- the venv --------------------------------------------------------------------------------
if [[ -x "$VENV/bin/python" ]] && is_py311 "$VENV/bin/python" &&
    "$VENV/bin/python" -m pip --version >/dev/null 2>&1 </dev/null; then
    log "venv: $VENV exists ($("$VENV/bin/python" --version 2>&1))"
else
    python="${JHRS_PYTHON:-}"
    if [[ -z "$python" ]]; then
        for candidate in python3.11 python3; do
            if command -v "$candidate" >/dev/null 2>&1 && is_py311 "$candidate"; then
                python="$candidate"
                break
            fi
        done
    fi
    [[ -n "$python" ]] || die "no Python 3.11 interpreter found (tried python3.11, python3; set JHRS_PYTHON)"
    is_py311 "$python" || die "$python is not Python 3.11"
    if [[ -e "$VENV" ]]; then
        log "venv: $VENV is broken or not Python 3.11, recreating it"
        rm -rf "$VENV"
    fi
    log "venv: creating $VENV with $("$python" --version 2>&1)"
    mkdir -p "$JHRS_CACHE"
    # An interrupted run must not leave a venv that later runs would take as complete.
    trap 'rm -rf "$VENV"' EXIT
    "$python" -m venv "$VENV" </dev/null >&2 || die "python -m venv failed"
    "$VENV/bin/python" -m pip --version >/dev/null </dev/null || die "the new venv has no pip"
    trap - EXIT
fi

# --- the packages ----------------------------------------------------------------------------
# Which of the pinned requirements are missing or at another version.
missing=()
if ((${#requirements[@]} > 0)); then
    mapfile -t missing < <("$VENV/bin/python" - "${requirements[@]}" <<'EOF'
import sys
from importlib import metadata
for req in sys.argv[1:]:
    name, _, version = req.partition("==")
    try:
        if metadata.version(name) == version:
            continue
    except metadata.PackageNotFoundError:
        pass
    print(req)
EOF
)
fi
if ((${#missing[@]} > 0)); then
    log "pip: installing ${missing[*]}"
    CI=true PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
        "$VENV/bin/python" -m pip install --quiet --no-input "${missing[@]}" </dev/null >&2 ||
        die "pip install ${missing[*]} failed"
    still="$("$VENV/bin/python" - "${missing[@]}" <<'EOF'
import sys
from importlib import metadata
print(" ".join(r for r in sys.argv[1:]
               if metadata.version(r.partition("==")[0]) != r.partition("==")[2]))
EOF
)"
    [[ -z "$still" ]] || die "after pip install, still not at the pinned version: $still"
else
    log "pip: ${requirements[*]} already installed"
fi

echo "$VENV"
