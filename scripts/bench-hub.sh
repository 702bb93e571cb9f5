#!/usr/bin/env bash
# Benchmark our hub against JupyterHub 6.1.1, in one run, with the same client.
#
# Installs what is missing (JupyterHub 6.1.1 into the Python venv through
# scripts/python-test-env.sh; configurable-http-proxy through scripts/test-deps.sh when
# --proxy chp is asked for), builds hub-bench and chp-proxy in release mode, and runs
# `hub-bench run`. See docs/benchmarks.md (Hub) for what is measured.
#
# Usage: scripts/bench-hub.sh [options] [-- extra hub-bench run options]
#   -d, --duration SECS   seconds of each measured load run (default 10)
#   -w, --warmup SECS     seconds of warm-up before each load run (default 2)
#       --quick           3 s load runs, 1 s warm-ups, 200 users, 20 servers
#       --only LIST       hubs to measure, from jupyterhub,ours (default both)
#       --proxy KIND      the proxy both hubs use: chp-proxy (default) or chp
#       --json FILE       also write the figures as JSON
#       --wait-idle SECS  before each measured step, wait up to SECS for other
#                         processes to leave the CPUs alone (default 0)
#   -h, --help            show this help
#
# Environment: JHRS_CACHE (default ~/.cache/jupyterhub-rs) holds the venv and the
# npm install of CHP; CARGO_TARGET_DIR (default /work/target when /work is
# writable, else ./target) is where cargo builds.
set -euo pipefail

duration=10
warmup=2
proxy=chp-proxy
extra=()

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        -d | --duration) duration="$2"; shift 2 ;;
        --duration=*) duration="${1#*=}"; shift ;;
        -w | --warmup) warmup="$2"; shift 2 ;;
        --warmup=*) warmup="${1#*=}"; shift ;;
        --quick) duration=3; warmup=1; extra+=(--users 200 --servers 20); shift ;;
        --only) extra+=(--only "$2"); shift 2 ;;
        --only=*) extra+=("$1"); shift ;;
        --proxy) proxy="$2"; shift 2 ;;
        --proxy=*) proxy="${1#*=}"; shift ;;
        --json) extra+=(--json "$2"); shift 2 ;;
        --json=*) extra+=("$1"); shift ;;
        --wait-idle) extra+=(--wait-idle "$2"); shift 2 ;;
        --wait-idle=*) extra+=("$1"); shift ;;
        -h | --help) usage; exit 0 ;;
        --) shift; extra+=("$@"); break ;;
        *) echo "bench-hub: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

cd "$(dirname "$0")/.."
if [ -z "${CARGO_TARGET_DIR:-}" ]; then
    if [ -d /work ] && [ -w /work ]; then export CARGO_TARGET_DIR=/work/target; else export CARGO_TARGET_DIR="$PWD/target"; fi
fi
say() { echo "bench-hub: $*" >&2; }

command -v taskset >/dev/null || say "taskset not found: the hub and the load will not be pinned to cores"

say "Python venv with jupyterhub 6.1.1"
venv="$(CI=true scripts/python-test-env.sh bench </dev/null)"

proxy_args=(--proxy "$proxy")
packages=(-p hub-bench)
case "$proxy" in
    chp-proxy)
        packages+=(-p chp-proxy)
        proxy_args+=(--chp-proxy "$CARGO_TARGET_DIR/release/chp-proxy")
        ;;
    chp)
        CI=true scripts/test-deps.sh </dev/null >&2
        ;;
    *) say "--proxy: expected chp-proxy or chp, got $proxy"; exit 2 ;;
esac

say "building ${packages[*]} (release)"
cargo build --release "${packages[@]}"

load="$(cut -d' ' -f1 /proc/loadavg)"
if awk -v l="$load" 'BEGIN { exit !(l > 2) }'; then
    say "load average is $load: other processes are busy, so the figures will be low"
fi

exec "$CARGO_TARGET_DIR/release/hub-bench" run \
    --duration "$duration" \
    --warmup "$warmup" \
    --venv "$venv" \
    "${proxy_args[@]}" \
    "${extra[@]}"
