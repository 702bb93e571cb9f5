#!/usr/bin/env bash
# Benchmark chp-proxy against configurable-http-proxy 5.3.0 and a direct backend.
#
# Installs what is missing (wrk and nginx from Debian, CHP from npm), builds
# chp-proxy and proxy-bench in release mode, and runs `proxy-bench run`.
# See docs/benchmarks.md for what is measured.
#
# Usage: scripts/bench-proxy.sh [options] [-- extra proxy-bench run options]
#   -d, --duration SECS   seconds per measured run (default 10)
#   -w, --warmup SECS     seconds of warm-up before each measured run (default 2)
#       --quick           3 s runs, 1 s warm-up, no 100,000-route table
#       --no-ours         do not build or measure chp-proxy (direct and CHP only)
#       --only LIST       subjects to measure, from direct,chp,ours (default all)
#       --no-install      do not install anything, fail if a tool is missing
#       --json FILE       also write the figures as JSON
#       --wait-idle SECS  before each measured run, wait up to SECS for other
#                         processes to leave the CPUs alone (default 0)
#   -h, --help            show this help
#
# Environment: JHRS_CACHE (default ~/.cache/jupyterhub-rs) holds the npm
# install of CHP; CARGO_TARGET_DIR (default /work/target when /work is writable,
# else ./target) is where cargo builds.
set -euo pipefail

CHP_VERSION=5.3.0
duration=10
warmup=2
quick=0
only=direct,chp,ours
install=1
extra=()

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        -d | --duration) duration="$2"; shift 2 ;;
        --duration=*) duration="${1#*=}"; shift ;;
        -w | --warmup) warmup="$2"; shift 2 ;;
        --warmup=*) warmup="${1#*=}"; shift ;;
        --quick) quick=1; shift ;;
        --no-ours) only=direct,chp; shift ;;
        --only) only="$2"; shift 2 ;;
        --only=*) only="${1#*=}"; shift ;;
        --no-install) install=0; shift ;;
        --json) extra+=(--json "$2"); shift 2 ;;
        --wait-idle) extra+=(--wait-idle "$2"); shift 2 ;;
        --wait-idle=*) extra+=("$1"); shift ;;
        --json=*) extra+=("$1"); shift ;;
        -h | --help) usage; exit 0 ;;
        --) shift; extra+=("$@"); break ;;
        *) echo "bench-proxy: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

if [ "$quick" = 1 ]; then
    duration=3
    warmup=1
    extra=(--big-routes 0 "${extra[@]}")
fi

cd "$(dirname "$0")/.."
# Build outputs live outside the clone when /work is there, as in .ci/run.
if [ -z "${CARGO_TARGET_DIR:-}" ]; then
    if [ -d /work ] && [ -w /work ]; then export CARGO_TARGET_DIR=/work/target; else export CARGO_TARGET_DIR="$PWD/target"; fi
fi
cache="${JHRS_CACHE:-$HOME/.cache/jupyterhub-rs}"
chp_dir="$cache/node"
chp_bin="$chp_dir/node_modules/.bin/configurable-http-proxy"

say() { echo "bench-proxy: $*" >&2; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

apt_install() {
    local sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    if [ "$install" = 0 ]; then
        say "missing Debian packages: $* (run without --no-install to install them)"
        exit 1
    fi
    say "installing $*"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$@" >/dev/null
}

# The load generator, the backend, taskset and getconf.
missing=()
installed wrk || missing+=(wrk)
if ! installed nginx-light && ! installed nginx && ! installed nginx-core && ! installed nginx-full; then
    if apt-cache show nginx-light >/dev/null 2>&1; then missing+=(nginx-light); else missing+=(nginx); fi
fi
command -v taskset >/dev/null || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi

# CHP needs Node.js 20 or newer.
node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "$node_major" -lt 20 ]; then
    say "CHP $CHP_VERSION needs Node.js >= 20; found $(node --version 2>/dev/null || echo none)"
    exit 1
fi
chp_installed="$(node -p "require('$chp_dir/node_modules/configurable-http-proxy/package.json').version" 2>/dev/null || true)"
if [ "$chp_installed" != "$CHP_VERSION" ]; then
    if [ "$install" = 0 ]; then
        say "configurable-http-proxy $CHP_VERSION is not installed in $chp_dir"
        exit 1
    fi
    say "installing configurable-http-proxy@$CHP_VERSION into $chp_dir"
    mkdir -p "$chp_dir"
    npm install --silent --no-audit --no-fund --prefix "$chp_dir" "configurable-http-proxy@$CHP_VERSION"
fi

packages=(-p proxy-bench)
case ",$only," in *,ours,*) packages+=(-p chp-proxy) ;; esac
say "building ${packages[*]} (release)"
cargo build --release "${packages[@]}"

exec "$CARGO_TARGET_DIR/release/proxy-bench" run \
    --duration "$duration" \
    --warmup "$warmup" \
    --only "$only" \
    --chp "$chp_bin" \
    --chp-proxy "$CARGO_TARGET_DIR/release/chp-proxy" \
    "${extra[@]}"
