#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ (libFuzzer), each for SECONDS (default 30):
#   proxy_path       the proxy's path check and prefix cutting (http_forward::path)
#   proxy_routes     route keys as the proxy's API normalises them, longest-prefix matching
#   hub_cookie       the hub's signed cookies and Cookie header parsing
#   hub_xsrf         XSRF token creation, decoding and verification
#   hub_auth_header  Authorization header parsing, token prefixes, stored token hashes
# Fails when a target finds a crash; the input is then under fuzz/artifacts/<target>/.
#
# Works on the stable toolchain: cargo-fuzz needs unstable compiler flags, which
# RUSTC_BOOTSTRAP=1 allows, and runs without a sanitizer (-s none; the code under test has no
# unsafe code, and AddressSanitizer would only slow it down). Installs cargo-fuzz with
# `cargo install` when it is missing.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Environment:
#   FUZZ_TARGET_DIR   where the fuzz build goes (default /work/target-fuzz when /work exists,
#                     else fuzz/target-fuzz); kept apart from the workspace's target dir,
#                     because its flags differ
#   FUZZ_JOBS         parallel libFuzzer workers per target (default 1)
#   FUZZ_KEEP_CORPUS  keep fuzz/corpus/ between runs when set to 1 (default: start each run
#                     from an empty corpus and delete it afterwards)
set -euo pipefail

seconds="${1:-30}"
shift || true
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
all_targets=(proxy_path proxy_routes hub_cookie hub_xsrf hub_auth_header)
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=("${all_targets[@]}")
fi

if [ -d /work ]; then
    default_dir=/work/target-fuzz
else
    default_dir="$root/fuzz/target-fuzz"
fi
target_dir="${FUZZ_TARGET_DIR:-$default_dir}"
jobs="${FUZZ_JOBS:-1}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
cd "$root/fuzz"
echo "== building the fuzz targets in $target_dir"
build_started=$SECONDS
cargo fuzz build -s none --target-dir "$target_dir"
echo "== built in $((SECONDS - build_started)) s"

status=0
for t in "${targets[@]}"; do
    corpus="$root/fuzz/corpus/$t"
    if [ "${FUZZ_KEEP_CORPUS:-0}" != 1 ]; then
        rm -rf "$corpus"
    fi
    mkdir -p "$corpus"
    echo "== $t for ${seconds} s"
    log="$(mktemp)"
    parallel=()
    if [ "$jobs" -gt 1 ]; then
        # libFuzzer then writes each worker's log to fuzz-<n>.log in the working directory.
        parallel=(-jobs="$jobs" -workers="$jobs")
    fi
    if cargo fuzz run -s none --target-dir "$target_dir" "$t" "$corpus" -- \
        -max_total_time="$seconds" "${parallel[@]}" -max_len=4096 -timeout=10 \
        -print_final_stats=1 >"$log" 2>&1; then
        runs="$(grep -E '^stat::number_of_executed_units' "$log" | awk '{s += $2} END {print s + 0}')"
        echo "   ok: $runs executions"
    else
        status=1
        echo "   FAILED: see the end of the log below and fuzz/artifacts/$t/"
        tail -40 "$log"
    fi
    rm -f "$log"
    if [ "${FUZZ_KEEP_CORPUS:-0}" != 1 ]; then
        rm -rf "$corpus"
    fi
done
exit "$status"
