#!/usr/bin/env bash
# Creates (once) the Python virtual environments that compatibility tests and benchmarks run real
# JupyterHub tools from, and installs the pinned packages that are missing. Prints the venv's
# path on stdout (the only thing printed there); progress goes to stderr.
#
# Usage: scripts/python-test-env.sh [--check] [SET...]
#   --check     install nothing: fail, naming this script, unless the venv exists with every
#               pinned package of the sets at its pinned version (for tests, which must not
#               install anything while they run)
#   SET   package sets to install, any of:
#           test        what the Rust tests run (default): jupyterhub-idle-culler
#           bench       the reference hub for scripts/bench-hub.sh: jupyterhub 6.1.1
#           singleuser  the real single-user server for the end-to-end tests
#                       (tests/tests/e2e_singleuser.rs, e2e_slurm.rs): jupyterhub 6.1.1,
#                       jupyter-server and batchspawner (for batchspawner-singleuser).
#                       It has a venv of its own that every account can run, because the
#                       servers of those tests run as other system users; ask for it alone.
#           lab         JupyterLab with a Python kernel, for the end-to-end tests of
#                       singleuser-auth-shim (tests/tests/e2e_lab.rs): jupyterhub 6.1.1,
#                       jupyter-server, jupyterlab and ipykernel. A venv of its own that every
#                       account can run, like the singleuser set's; ask for it alone.
#           fuzz        schemathesis, which scripts/api-fuzz.sh runs against the hub's REST API
#                       (docs/reference/hub-openapi.yaml). A venv of its own,
#                       $JHRS_CACHE/venv-fuzz, so that its many dependencies never meet
#                       JupyterHub's; ask for it alone.
#
# Idempotent and non-interactive (CI=true, no stdin): when every pinned package is already
# installed at its pinned version, nothing is fetched. Concurrent runs wait for each other.
#
# Environment:
#   JHRS_CACHE              cache root (default: $HOME/.cache/jupyterhub-rs); the venv of the
#                           test and bench sets is $JHRS_CACHE/venv
#   JHRS_PYTHON             the Python 3.11 interpreter to build that venv from (default:
#                           python3.11, then python3 if it is 3.11)
#   JHRS_SINGLEUSER_VENV    the venv of the singleuser set (default:
#                           /var/tmp/jupyterhub-rs/venv-singleuser). Every directory above it
#                           must be searchable by every account.
#   JHRS_SINGLEUSER_PYTHON  the Python 3.11 interpreter to build it from (default:
#                           /usr/bin/python3.11, then /usr/bin/python3 if it is 3.11): it must be
#                           runnable by every account, so not one under /root (pyenv)
#   JHRS_LAB_VENV           the venv of the lab set (default: /var/tmp/jupyterhub-rs/venv-lab),
#                           with the same rules as JHRS_SINGLEUSER_VENV
#   JHRS_LAB_PYTHON         the Python 3.11 interpreter to build it from (default: as for the
#                           singleuser set)
set -euo pipefail

JHRS_CACHE="${JHRS_CACHE:-${HOME:-/root}/.cache/jupyterhub-rs}"

# Pinned requirements per set. Versions are exact: the tests assert on these tools' behaviour.
TEST_REQUIREMENTS=(
    "jupyterhub-idle-culler==2.0.0"
)
BENCH_REQUIREMENTS=(
    "jupyterhub==6.1.1"
)
SINGLEUSER_REQUIREMENTS=(
    "jupyterhub==6.1.1"
    "jupyter-server==2.21.1"
    # batchspawner-singleuser: reports the port of a server in a batch job (tests/tests/e2e_slurm.rs)
    "batchspawner==1.3.0"
)
FUZZ_REQUIREMENTS=(
    "schemathesis==4.32.5"
)
LAB_REQUIREMENTS=(
    "jupyterhub==6.1.1"
    "jupyter-server==2.21.1"
    "jupyterlab==4.6.6"
    "ipykernel==7.4.0"
)

log() { printf '[python-test-env] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

check_only=0
if [[ "${1:-}" == --check ]]; then
    check_only=1
    shift
fi
sets=("$@")
((${#sets[@]} > 0)) || sets=(test)
requirements=()
shared=0
singleuser=0
lab=0
fuzz=0
for set in "${sets[@]}"; do
    case "$set" in
        test) requirements+=("${TEST_REQUIREMENTS[@]}"); shared=1 ;;
        bench) requirements+=("${BENCH_REQUIREMENTS[@]}"); shared=1 ;;
        singleuser) requirements+=("${SINGLEUSER_REQUIREMENTS[@]}"); singleuser=1 ;;
        lab) requirements+=("${LAB_REQUIREMENTS[@]}"); lab=1 ;;
        fuzz) requirements+=("${FUZZ_REQUIREMENTS[@]}"); fuzz=1 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2; exit 0 ;;
        *) die "unknown package set '$set' (expected: test, bench, singleuser, lab, fuzz)" ;;
    esac
done
((shared + singleuser + lab + fuzz < 2)) || die "the singleuser, lab and fuzz sets have a venv of their own: ask for each alone"

is_py311() { "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null </dev/null; }

if ((singleuser)); then
    VENV="${JHRS_SINGLEUSER_VENV:-/var/tmp/jupyterhub-rs/venv-singleuser}"
    python_candidates=("${JHRS_SINGLEUSER_PYTHON:-}" /usr/bin/python3.11 /usr/bin/python3)
    # Everything in this venv is readable and runnable by every account.
    umask 022
elif ((lab)); then
    VENV="${JHRS_LAB_VENV:-/var/tmp/jupyterhub-rs/venv-lab}"
    python_candidates=("${JHRS_LAB_PYTHON:-${JHRS_SINGLEUSER_PYTHON:-}}" /usr/bin/python3.11 /usr/bin/python3)
    umask 022
elif ((fuzz)); then
    VENV="$JHRS_CACHE/venv-fuzz"
    python_candidates=("${JHRS_PYTHON:-}" python3.11 python3)
else
    VENV="$JHRS_CACHE/venv"
    python_candidates=("${JHRS_PYTHON:-}" python3.11 python3)
fi
[[ "$VENV" == /* ]] || die "the venv path must be absolute: $VENV"
parent="$(dirname "$VENV")"
mkdir -p "$parent"

# A directory that another account could write to must not hold what root will run later.
if ((singleuser || lab)); then
    owner="$(stat -c %u "$parent")"
    mode="$(stat -c %a "$parent")"
    [[ "$owner" == "$(id -u)" || "$owner" == 0 ]] || die "$parent belongs to uid $owner, neither to $(id -u) nor to root: remove it or set JHRS_SINGLEUSER_VENV"
    (( (8#$mode & 8#022) == 0 )) || die "$parent is writable by others (mode $mode): remove it or set JHRS_SINGLEUSER_VENV"
fi

# One run at a time per venv: the tests may call this script from several processes at once.
# (Read-only once it exists, so that other accounts can use a venv root made.)
[[ -e "$VENV.lock" ]] || : >"$VENV.lock"
exec 9<"$VENV.lock"
flock 9

if ((check_only)); then
    [[ -x "$VENV/bin/python" ]] ||
        die "$VENV is missing: run scripts/test-deps.sh (or scripts/python-test-env.sh ${sets[*]})"
fi

# --- the venv --------------------------------------------------------------------------------
if [[ -x "$VENV/bin/python" ]] && is_py311 "$VENV/bin/python" &&
    "$VENV/bin/python" -m pip --version >/dev/null 2>&1 </dev/null; then
    log "venv: $VENV exists ($("$VENV/bin/python" --version 2>&1))"
else
    ((check_only == 0)) ||
        die "$VENV is broken or not Python 3.11: run scripts/test-deps.sh (or scripts/python-test-env.sh ${sets[*]})"
    python=""
    for candidate in "${python_candidates[@]}"; do
        [[ -n "$candidate" ]] || continue
        if command -v "$candidate" >/dev/null 2>&1 && is_py311 "$candidate"; then
            python="$candidate"
            break
        fi
        # An explicit choice that does not work is an error, not a reason to pick another.
        if [[ "$candidate" == "${python_candidates[0]}" ]]; then
            die "$candidate is not a Python 3.11 interpreter"
        fi
    done
    [[ -n "$python" ]] || die "no Python 3.11 interpreter found (tried ${python_candidates[*]})"
    if [[ -e "$VENV" ]]; then
        log "venv: $VENV is broken or not Python 3.11, recreating it"
        rm -rf "$VENV"
    fi
    log "venv: creating $VENV with $("$python" --version 2>&1) ($(command -v "$python"))"
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
    mapfile -t missing < <("$VENV/bin/python" - "${requirements[@]}" <<'PY'
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
PY
)
fi
if ((${#missing[@]} > 0 && check_only)); then
    die "$VENV lacks ${missing[*]}: run scripts/test-deps.sh (or scripts/python-test-env.sh ${sets[*]})"
fi
if ((${#missing[@]} > 0)); then
    log "pip: installing ${missing[*]}"
    CI=true PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
        "$VENV/bin/python" -m pip install --quiet --no-input "${missing[@]}" </dev/null >&2 ||
        die "pip install ${missing[*]} failed"
    still="$("$VENV/bin/python" - "${missing[@]}" <<'PY'
import sys
from importlib import metadata
print(" ".join(r for r in sys.argv[1:]
               if metadata.version(r.partition("==")[0]) != r.partition("==")[2]))
PY
)"
    [[ -z "$still" ]] || die "after pip install, still not at the pinned version: $still"
else
    log "pip: ${requirements[*]} already installed"
fi

# --- usable by every account -----------------------------------------------------------------
if ((singleuser)); then
    [[ -x "$VENV/bin/jupyterhub-singleuser" ]] || die "$VENV/bin/jupyterhub-singleuser is missing"
    if [[ "$(id -u)" == 0 ]] && command -v runuser >/dev/null 2>&1; then
        # The servers run as other accounts: check that one of them can start Python here.
        runuser -u nobody -- "$VENV/bin/python" -c 'import jupyterhub.singleuser, jupyter_server' \
            </dev/null >&2 ||
            die "the account 'nobody' cannot import jupyterhub.singleuser from $VENV (is a directory above it, or its interpreter, private?)"
    fi
fi
if ((lab)); then
    for tool in jupyter jupyter-lab jupyterhub-singleuser; do
        [[ -x "$VENV/bin/$tool" ]] || die "$VENV/bin/$tool is missing"
    done
    if [[ "$(id -u)" == 0 ]] && command -v runuser >/dev/null 2>&1; then
        runuser -u nobody -- "$VENV/bin/python" -c 'import jupyterlab, ipykernel, jupyterhub.singleuser' \
            </dev/null >&2 ||
            die "the account 'nobody' cannot import jupyterlab and ipykernel from $VENV (is a directory above it, or its interpreter, private?)"
    fi
fi

echo "$VENV"
