#!/usr/bin/env bash
# Quick start: builds the hub, chp-proxy and singleuser-auth-shim (release), makes a Python venv
# with JupyterLab, writes a configuration (once) and runs the hub in the foreground, with its
# proxy on http://127.0.0.1:8000 and a login anyone can use at once:
#
#   - not as root: the shared-password authenticator with a random password, printed on start.
#     Every server runs as this account (it is the only one the hub can use).
#   - as root: PAM; the system's users log in with their own passwords and each server runs as
#     its user's account. With --shared-password: a shared password instead, and every new
#     username becomes a system account (useradd) the first time it logs in.
#
# Usage: scripts/run-hub.sh [OPTIONS] [-- HUB ARGS...]
#   --ip IP             address the proxy listens on (default 127.0.0.1; 0.0.0.0 for all: plain
#                       HTTP, see docs/howto/behind-tls.md first)
#   --port N            port the proxy listens on (default 8000)
#   --hub-port N        port of the hub itself, on 127.0.0.1 (default 8081)
#   --api-port N        port of the proxy's REST API, on 127.0.0.1 (default: --port + 1)
#   --shared-password   as root: a shared password with accounts created on first login,
#                       instead of PAM (not as root this is always the mode)
#   --admin USER        with PAM: make USER an admin (repeatable)
#   --home DIR          where the binaries, the venv and the hub's files live (default: as root
#                       /opt/jupyterhub-rs, otherwise ~/.local/share/jupyterhub-rs)
#   --no-build          use the binaries from an earlier run (or $JHRS_BIN_DIR) as they are
#   -h, --help          this text
# Arguments after `--` go to the hub (e.g. `-- --debug`).
#
# Idempotent: a second run reuses the build (cargo builds only what changed), the venv (pip runs
# only when a pinned package is missing) and the configuration with its passwords; delete
# <home>/hub/jupyterhub_config.toml to start over with a new one (users and servers are kept in
# <home>/hub/jupyterhub.sqlite).
#
# Environment:
#   JHRS_BIN_DIR      use the hub, chp-proxy and singleuser-auth-shim in this directory instead
#                     of building them (e.g. a debug build, for tests)
#   JHRS_VENV         use this venv (it must have the pinned packages, or pip adds them)
#   JHRS_PYTHON       the Python (3.9 or newer) the venv is made from (default: as root
#                     /usr/bin/python3, which every account can run; otherwise python3)
#   CARGO_TARGET_DIR  where cargo builds (default: target/ in the repository)
set -euo pipefail

# JupyterLab and what it needs, pinned: the versions the end-to-end tests run.
LAB_REQUIREMENTS=(
    "jupyterlab==4.6.6"
    "ipykernel==7.4.0"
    "jupyter-server==2.21.1"
)
BINARIES=(hub chp-proxy singleuser-auth-shim)

log() { printf '[run-hub] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

repo="$(cd "$(dirname "$0")/.." && pwd)"
root=0
[[ "$(id -u)" == 0 ]] && root=1

ip="127.0.0.1"
port=8000
hub_port=8081
api_port=""
shared=$((1 - root))
build=1
admins=()
home=""
hub_args=()
while (($# > 0)); do
    case "$1" in
        --ip) ip="${2:?--ip needs an address}"; shift 2 ;;
        --port) port="${2:?--port needs a number}"; shift 2 ;;
        --hub-port) hub_port="${2:?--hub-port needs a number}"; shift 2 ;;
        --api-port) api_port="${2:?--api-port needs a number}"; shift 2 ;;
        --shared-password) shared=1; shift ;;
        --admin) admins+=("${2:?--admin needs a user name}"); shift 2 ;;
        --home) home="${2:?--home needs a directory}"; shift 2 ;;
        --no-build) build=0; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; exit 0 ;;
        --) shift; hub_args=("$@"); break ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
for n in "$port" "$hub_port" ${api_port:+"$api_port"}; do
    [[ "$n" =~ ^[0-9]+$ ]] && ((n > 0 && n < 65536)) || die "not a port: $n"
done
api_port="${api_port:-$((port + 1))}"
((port + 1 < 65536)) || die "--port $port leaves no room for the API port; give --api-port"

if [[ -z "$home" ]]; then
    if ((root)); then
        home=/opt/jupyterhub-rs
    else
        home="${XDG_DATA_HOME:-${HOME:?HOME is not set}/.local/share}/jupyterhub-rs"
    fi
fi
[[ "$home" == /* ]] || home="$PWD/$home"
work="$home/hub"

# As root, the venv and the binaries are run by other accounts (each user's server) and by
# root: no account but root may be able to change them, and every account must reach them.
umask 022
mkdir -p "$home"
if ((root)); then
    dir="$home"
    while [[ "$dir" != / ]]; do
        owner="$(stat -c %u "$dir")"
        mode="$(stat -c %a "$dir")"
        [[ "$owner" == 0 ]] || die "$dir belongs to uid $owner, not root: choose another --home"
        (((8#$mode & 8#022) == 0)) || [[ -k "$dir" && "$dir" != "$home" ]] ||
            die "$dir is writable by other accounts (mode $mode): choose another --home"
        (((8#$mode & 8#001) != 0)) || die "$dir is not searchable by other accounts (mode $mode): their servers could not start; choose another --home"
        dir="$(dirname "$dir")"
    done
fi

# A command every account can run (root: checked as `nobody`).
runnable_by_all() {
    ((root)) || return 0
    command -v runuser >/dev/null 2>&1 || return 0
    runuser -u nobody -- "$@" </dev/null >/dev/null 2>&1
}

have_deb() { dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed$'; }
apt_install() {
    ((root)) && command -v apt-get >/dev/null 2>&1 || return 1
    log "apt: installing $*"
    DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null >&2 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" </dev/null >&2
}

# --- the binaries ----------------------------------------------------------------------------
if [[ -n "${JHRS_BIN_DIR:-}" ]]; then
    bin="$JHRS_BIN_DIR"
    for b in "${BINARIES[@]}"; do [[ -x "$bin/$b" ]] || die "JHRS_BIN_DIR=$bin has no $b"; done
    log "binaries: $bin (JHRS_BIN_DIR)"
else
    target="${CARGO_TARGET_DIR:-$repo/target}"
    [[ "$target" == /* ]] || target="$repo/$target"
    bin="$target/release"
    if ((build)); then
        command -v cargo >/dev/null 2>&1 ||
            die "cargo not found: install Rust with rustup (https://rustup.rs), then run this again"
        # auth-pam links libpam (libpam0g-dev on Debian and Ubuntu).
        if command -v dpkg >/dev/null 2>&1 && ! have_deb libpam0g-dev; then
            apt_install libpam0g-dev || die "the hub links libpam: install libpam0g-dev (sudo apt-get install libpam0g-dev)"
        fi
        # The hub builds libpq from source with OpenSSL (libssl-dev, found with pkg-config).
        if command -v dpkg >/dev/null 2>&1 && ! { have_deb libssl-dev && have_deb pkg-config; }; then
            apt_install libssl-dev pkg-config ||
                die "the hub builds libpq with OpenSSL: install libssl-dev and pkg-config (sudo apt-get install libssl-dev pkg-config)"
        fi
        log "cargo: building ${BINARIES[*]} (release; the first build takes several minutes)"
        (cd "$repo" && CARGO_TARGET_DIR="$target" cargo build --release --locked \
            -p hub -p chp-proxy -p singleuser-auth-shim) >&2 || die "the build failed"
    fi
    for b in "${BINARIES[@]}"; do [[ -x "$bin/$b" ]] || die "$bin/$b is missing: run without --no-build"; done
    # Each user's server runs the shim as that user: install copies where every account can
    # run them when the build directory is private (a checkout under /root).
    if ((root)) && ! runnable_by_all "$bin/singleuser-auth-shim" --version; then
        mkdir -p "$home/bin"
        for b in "${BINARIES[@]}"; do install -C -m 0755 "$bin/$b" "$home/bin/$b"; done
        bin="$home/bin"
        log "binaries: installed in $bin (the build directory is private)"
    else
        log "binaries: $bin"
    fi
fi
runnable_by_all "$bin/singleuser-auth-shim" --version ||
    die "other accounts cannot run $bin/singleuser-auth-shim (a private directory above it?): their servers could not start"

# --- the venv --------------------------------------------------------------------------------
venv="${JHRS_VENV:-$home/venv}"
[[ "$venv" == /* ]] || venv="$PWD/$venv"
py_ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' </dev/null 2>/dev/null; }
if [[ -x "$venv/bin/python" ]] && py_ok "$venv/bin/python" &&
    "$venv/bin/python" -m pip --version >/dev/null 2>&1 </dev/null; then
    log "venv: $venv ($("$venv/bin/python" --version 2>&1))"
else
    if ((root)); then python="${JHRS_PYTHON:-/usr/bin/python3}"; else python="${JHRS_PYTHON:-python3}"; fi
    command -v "$python" >/dev/null 2>&1 || die "$python not found: install Python 3.9 or newer (or set JHRS_PYTHON)"
    py_ok "$python" || die "$python is older than Python 3.9 (set JHRS_PYTHON)"
    if ! "$python" -c 'import venv, ensurepip' </dev/null 2>/dev/null; then
        pyver="$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
        apt_install "python$pyver-venv" || die "$python cannot make venvs: install python3-venv (sudo apt-get install python$pyver-venv)"
    fi
    runnable_by_all "$python" -c 'pass' ||
        die "other accounts cannot run $python (their servers run Python from the venv); set JHRS_PYTHON to a system Python"
    log "venv: creating $venv with $("$python" --version 2>&1)"
    rm -rf "$venv"
    trap 'rm -rf "$venv"' EXIT
    "$python" -m venv "$venv" </dev/null >&2 || die "python -m venv failed"
    trap - EXIT
fi
missing=()
mapfile -t missing < <("$venv/bin/python" - "${LAB_REQUIREMENTS[@]}" <<'PY'
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
if ((${#missing[@]} > 0)); then
    log "pip: installing ${missing[*]} (once)"
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
        "$venv/bin/python" -m pip install --quiet "${missing[@]}" </dev/null >&2 ||
        die "pip install failed"
else
    log "pip: ${LAB_REQUIREMENTS[*]} installed"
fi
[[ -x "$venv/bin/jupyter-lab" ]] || die "$venv/bin/jupyter-lab is missing"
runnable_by_all "$venv/bin/python" -c 'import jupyterlab, ipykernel' ||
    die "other accounts cannot use $venv (a private directory above it?)"

# --- the configuration -----------------------------------------------------------------------
mkdir -p "$work"
chmod 0700 "$work"
config="$work/jupyterhub_config.toml"
random_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }
mode_name() { if ((shared)); then echo shared-password; else echo pam; fi; }
if [[ -e "$config" ]]; then
    written="$(sed -n 's/^# run-hub.sh mode: //p' "$config" | head -n1)"
    if [[ -n "$written" && "$written" != "$(mode_name)" ]]; then
        die "$config was written for the $written mode, not $(mode_name): remove it to write a new one"
    fi
    log "config: $config (kept)"
else
    {
        echo "# Written by scripts/run-hub.sh; edit freely (docs/reference/hub-config.md lists every key)."
        echo "# run-hub.sh mode: $(mode_name)"
        echo
        echo "[hub]"
        echo "# Where the proxy listens; run-hub.sh passes --ip and --port, which win."
        echo "bind_url = \"http://127.0.0.1:8000\""
        echo
        echo "[authenticator]"
        if ((shared)); then
            echo "class = \"shared-password\""
            echo "admin_users = [\"admin\"]"
            if ((root)); then
                # System accounts (services, daemons) must not be reachable with the shared
                # password: they exist already, so the hub would run servers as them.
                echo "# The system's own accounts (uid below 1000, and nobody) cannot log in."
                printf 'blocked_users = ['
                getent passwd | awk -F: '$3 < 1000 || $3 >= 60000 { printf "%s\"%s\"", sep, $1; sep = ", " }'
                echo "]"
            fi
            echo
            echo "[authenticator.shared_password]"
            echo "global_password = \"$(random_hex 9)\""
            echo "admin_password = \"$(random_hex 20)\""
        else
            echo "class = \"pam\""
            echo "# Every system user with a password may log in."
            echo "allow_all = true"
            printf 'admin_users = ['
            sep=""
            for a in "${admins[@]}"; do printf '%s"%s"' "$sep" "$a"; sep=", "; done
            echo "]"
        fi
        echo
        echo "[spawner]"
        echo "# singleuser-auth-shim (the default command) runs JupyterLab from the venv below."
        echo "default_url = \"/lab\""
        if ((root && shared)); then
            echo "# A username that logs in for the first time becomes a system account (useradd -m)."
            echo "create_system_users = true"
        fi
        echo
        echo "[spawner.environment]"
        echo "PATH = \"$venv/bin:/usr/local/bin:/usr/bin:/bin\""
    } >"$config.tmp"
    chmod 0600 "$config.tmp"
    mv "$config.tmp" "$config"
    log "config: wrote $config"
fi

# --- run -------------------------------------------------------------------------------------
value_of() { sed -n "s/^$1 *= *\"\\(.*\\)\"/\\1/p" "$config" | head -n1; }
if [[ "$ip" == 0.0.0.0 || "$ip" == "::" ]]; then host=localhost; else host="$ip"; fi
[[ "$host" == *:* ]] && host="[$host]"
url="http://$host:$port/"
{
    echo
    echo "  JupyterHub (jupyterhub-rs) at $url"
    class="$(value_of class)"
    if [[ "$class" == shared-password ]]; then
        echo "  Log in with any username and the password:  $(value_of global_password)"
        echo "  (admin: username 'admin', password $(value_of admin_password))"
        if ((root)); then
            echo "  NOTE: each new username becomes a system account on this machine (useradd -m),"
            echo "        and its server runs as that account."
        else
            echo "  Every user's server runs as $(id -un), the account the hub runs as."
        fi
    elif [[ "$class" == pam ]]; then
        echo "  Log in with a system account's username and password; servers run as that account."
    fi
    if [[ "$ip" != 127.* && "$ip" != ::1 ]]; then
        echo "  WARNING: plain HTTP on $ip; put TLS in front first (docs/howto/behind-tls.md)."
    fi
    echo "  Files: $work   Stop: Ctrl-C"
    echo
} >&2
cd "$work"
exec env JUPYTERHUB_HUB_HUB_PORT="$hub_port" \
    JUPYTERHUB_PROXY_API_URL="http://127.0.0.1:$api_port" \
    "$bin/hub" --config "$config" --ip "$ip" --port "$port" "${hub_args[@]}"
