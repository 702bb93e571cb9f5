#!/usr/bin/env bash
# Installs what the workspace tests need beyond the Rust toolchain:
#   - the reference configurable-http-proxy (npm), used by tests/tests/chp_differential.rs;
#   - the real jupyterhub-singleuser (PyPI, in a venv every account can run), used by
#     tests/tests/e2e_singleuser.rs: see scripts/python-test-env.sh (set `singleuser`);
#   - JupyterLab with ipykernel and jupyterhub-singleuser (PyPI, in another venv every account
#     can run), used by tests/tests/e2e_lab.rs: set `lab`;
#   - jupyterhub-idle-culler (PyPI, in the cache's venv), used by the idle-culler tests: set
#     `test`;
#   - schemathesis (PyPI, in a venv of its own under the cache), used by scripts/api-fuzz.sh
#     and tests/tests/api_fuzz.rs: set `fuzz`;
#   - headless Chromium and chromedriver (Debian), used by hub/tests/browser_*.rs.
#
# Idempotent and non-interactive (CI=true, no stdin): safe to run before every test run.
# Runs as root on Debian 12; installs only what is missing.
#
# Environment:
#   JHRS_CACHE   cache root (default: $HOME/.cache/jupyterhub-rs); CHP goes to $JHRS_CACHE/node
#   JHRS_SINGLEUSER_VENV, JHRS_SINGLEUSER_PYTHON, JHRS_LAB_VENV, JHRS_LAB_PYTHON
#                see scripts/python-test-env.sh
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
export npm_config_yes=true
export npm_config_fund=false
export npm_config_audit=false
export npm_config_update_notifier=false

CHP_VERSION="5.3.0"
JHRS_CACHE="${JHRS_CACHE:-${HOME:-/root}/.cache/jupyterhub-rs}"
NODE_PREFIX="$JHRS_CACHE/node"

log() { printf '[test-deps] %s\n' "$*"; }

# --- Debian packages -------------------------------------------------------------------------
# Names of Debian packages the tests need (node and npm are expected on the machine, checked
# below). Add names here when a test needs a system tool.
#   libpam0g-dev     the libpam.so link symlink, needed to link auth-pam (and so the hub)
#   libssl-dev pkg-config
#                    OpenSSL's headers, found with pkg-config, for the libpq that the hub
#                    builds from source (TLS to PostgreSQL)
#   g++              the C++ compiler that builds libFuzzer for scripts/fuzz.sh (CI runs it
#                    after the tests)
#   python3.11-venv  the system Python 3.11 with venv and ensurepip, for the single-user venv
#                    (a system interpreter, so that the test users' servers can run it)
#   chromium chromium-driver
#                    headless Chromium and its WebDriver, for the hub's browser tests
#                    (hub/tests/browser_*.rs)
APT_PACKAGES=(libpam0g-dev libssl-dev pkg-config g++ python3.11-venv chromium chromium-driver)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    # Installed means "install ok installed": a removed package whose configuration files are
    # left also answers `dpkg -s` successfully.
    if dpkg -s "$pkg" 2>/dev/null | grep '^Status: install ok installed$' >/dev/null; then
        log "apt: $pkg already installed"
    else
        missing+=("$pkg")
    fi
done
if ((${#missing[@]} > 0)); then
    log "apt: installing ${missing[*]}"
    apt-get update -q </dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
else
    log "apt: nothing to install"
fi

# --- node / npm ------------------------------------------------------------------------------
for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        log "error: '$tool' not found on PATH; install Node.js 20 or newer" >&2
        exit 1
    fi
done
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if ((node_major < 20)); then
    log "error: configurable-http-proxy $CHP_VERSION needs Node.js >= 20, found $(node --version)" >&2
    exit 1
fi
log "node $(node --version), npm $(npm --version)"

# --- configurable-http-proxy -----------------------------------------------------------------
chp_pkg_json="$NODE_PREFIX/node_modules/configurable-http-proxy/package.json"
chp_bin="$NODE_PREFIX/node_modules/.bin/configurable-http-proxy"
installed=""
if [[ -f "$chp_pkg_json" ]]; then
    installed="$(node -p "require(process.argv[1]).version" "$chp_pkg_json" 2>/dev/null || true)"
fi
if [[ "$installed" == "$CHP_VERSION" && -x "$chp_bin" ]]; then
    log "npm: configurable-http-proxy@$CHP_VERSION already installed in $NODE_PREFIX"
else
    if [[ -n "$installed" ]]; then
        log "npm: configurable-http-proxy $installed found, replacing with $CHP_VERSION"
    else
        log "npm: installing configurable-http-proxy@$CHP_VERSION into $NODE_PREFIX"
    fi
    mkdir -p "$NODE_PREFIX"
    npm install --prefix "$NODE_PREFIX" --no-fund --no-audit \
        "configurable-http-proxy@$CHP_VERSION" </dev/null
    installed="$(node -p "require(process.argv[1]).version" "$chp_pkg_json")"
    if [[ "$installed" != "$CHP_VERSION" ]]; then
        log "error: expected configurable-http-proxy $CHP_VERSION, got $installed" >&2
        exit 1
    fi
fi
log "configurable-http-proxy: $chp_bin ($("$chp_bin" --version </dev/null))"

# --- jupyterhub-singleuser -------------------------------------------------------------------
singleuser_venv="$("$(dirname "$0")/python-test-env.sh" singleuser)"
log "jupyterhub-singleuser: $singleuser_venv/bin/jupyterhub-singleuser ($("$singleuser_venv/bin/jupyterhub-singleuser" --version </dev/null 2>/dev/null))"

# --- JupyterLab ------------------------------------------------------------------------------
lab_venv="$("$(dirname "$0")/python-test-env.sh" lab)"
log "jupyterlab: $lab_venv/bin/jupyter-lab ($("$lab_venv/bin/jupyter-lab" --version </dev/null 2>/dev/null))"

# --- jupyterhub-idle-culler ------------------------------------------------------------------
test_venv="$("$(dirname "$0")/python-test-env.sh" test)"
log "jupyterhub-idle-culler: $test_venv/bin/jupyterhub-idle-culler"

# --- schemathesis ----------------------------------------------------------------------------
fuzz_venv="$("$(dirname "$0")/python-test-env.sh" fuzz)"
log "schemathesis: $fuzz_venv/bin/schemathesis ($("$fuzz_venv/bin/schemathesis" --version </dev/null 2>/dev/null))"
