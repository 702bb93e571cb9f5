#!/usr/bin/env bash
# Fuzzes the hub's REST API with schemathesis against docs/reference/hub-openapi.yaml: starts a
# real hub (debug build) with its managed chp-proxy on 127.0.0.1, a temporary SQLite database,
# the dummy authenticator, an admin user and an admin service token, then runs schemathesis
# with that token. Fails when any check fails:
#   not_a_server_error          no 5xx (except a failed server start, see api-fuzz.toml)
#   status_code_conformance     every status is one the document lists for the operation
#   content_type_conformance    every Content-Type is one the document lists for that status
#   response_schema_conformance every body matches the document's schema
#
# Not fuzzed: POST /shutdown (it stops the hub under test) and PATCH /proxy (it points the hub
# at whatever proxy URL the fuzzer makes up, so every later proxy call fails).
#
# Usage: scripts/api-fuzz.sh [--no-setup] [-- SCHEMATHESIS RUN ARGS...]
#   --no-setup   never install: use the venv scripts/test-deps.sh made (fail if it is missing)
#                and the binaries as they are (for the tests, which run after the build)
#
# Environment:
#   JHRS_CACHE             cache root; schemathesis lives in $JHRS_CACHE/venv-fuzz (see
#                          scripts/python-test-env.sh, set `fuzz`)
#   JHRS_BIN_DIR           where the hub and chp-proxy binaries are (default: the debug build in
#                          $CARGO_TARGET_DIR, built here unless --no-setup)
#   HUB_BIN, CHP_PROXY_BIN the binaries themselves, overriding JHRS_BIN_DIR (as in the
#                          workspace tests)
#   JHRS_FUZZ_EXAMPLES     test cases per operation and phase (default 50)
#   JHRS_FUZZ_SEED         schemathesis seed (default: a fixed one, so runs repeat)
#   JHRS_FUZZ_REPORT_DIR   keep schemathesis' JUnit report and the hub's log here
#   CARGO_TARGET_DIR       where cargo builds (default: target/ in the repository)
set -euo pipefail

log() { printf '[api-fuzz] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

repo="$(cd "$(dirname "$0")/.." && pwd)"
setup=1
while (($# > 0)); do
    case "$1" in
        --no-setup) setup=0; shift ;;
        --) shift; break ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
extra_args=("$@")

examples="${JHRS_FUZZ_EXAMPLES:-50}"
seed="${JHRS_FUZZ_SEED:-20260101}"

# --- schemathesis ----------------------------------------------------------------------------
if ((setup)); then
    venv="$("$repo/scripts/python-test-env.sh" fuzz)"
else
    venv="$("$repo/scripts/python-test-env.sh" --check fuzz)"
fi
schemathesis="$venv/bin/schemathesis"
[[ -x "$schemathesis" ]] || die "$schemathesis is missing: run scripts/test-deps.sh"
python="$venv/bin/python"

# --- binaries --------------------------------------------------------------------------------
if [[ -n "${JHRS_BIN_DIR:-}" ]]; then
    bin_dir="$JHRS_BIN_DIR"
else
    bin_dir="${CARGO_TARGET_DIR:-$repo/target}/debug"
    if ((setup)); then
        log "building hub and chp-proxy (debug)"
        (cd "$repo" && cargo build --quiet -p hub -p chp-proxy) >&2
    fi
fi
hub_bin="${HUB_BIN:-$bin_dir/hub}"
chp_bin="${CHP_PROXY_BIN:-$bin_dir/chp-proxy}"
for b in "$hub_bin" "$chp_bin"; do
    [[ -x "$b" ]] || die "$b is missing: build it with cargo build -p hub -p chp-proxy"
done

# --- the hub ---------------------------------------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/api-fuzz.XXXXXX")"
hub_pid=""
cleanup() {
    if [[ -n "$hub_pid" ]] && kill -0 "$hub_pid" 2>/dev/null; then
        kill -TERM "$hub_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$hub_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$hub_pid" 2>/dev/null || true
    fi
    if [[ -n "${JHRS_FUZZ_REPORT_DIR:-}" ]]; then
        mkdir -p "$JHRS_FUZZ_REPORT_DIR"
        cp "$work/hub.log" "$JHRS_FUZZ_REPORT_DIR/" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# Three free ports on loopback: the hub, the proxy's public side and its API.
read -r hub_port public_port api_port < <("$python" - <<'PY'
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
PY
)
token="$("$python" -c 'import secrets; print(secrets.token_hex(24))')"

cat >"$work/hub.toml" <<EOF
[hub]
bind_url = "http://127.0.0.1:$public_port/"
hub_bind_url = "http://127.0.0.1:$hub_port"
db_url = "sqlite:///$work/hub.sqlite"
cookie_secret_file = "$work/cookie_secret"
pid_file = "$work/hub.pid"
allow_named_servers = true
# Spawn attempts fail fast (see api-fuzz.toml); no limit should get in their way.
concurrent_spawn_limit = 0
trust_user_provided_tokens = true

[proxy]
command = ["$chp_bin"]
api_url = "http://127.0.0.1:$api_port/"
pid_file = "$work/proxy.pid"

[authenticator]
class = "dummy"
admin_users = ["fuzz-admin"]

[spawner]
# Nothing real is started: as root the users the fuzzer makes up have no system account, and
# otherwise this command exits at once. Either way the start fails within a second.
cmd = ["/bin/false"]
start_timeout = 5
http_timeout = 5

# The fuzzer's credential: a service with the admin role, which no API call can delete.
[[services]]
name = "fuzzer"
api_token = "$token"
admin = true
EOF

log "starting the hub on 127.0.0.1:$hub_port (log: $work/hub.log)"
(cd "$work" && exec "$hub_bin" --config "$work/hub.toml" </dev/null >"$work/hub.log" 2>&1) &
hub_pid=$!
base="http://127.0.0.1:$hub_port/hub/api"
ready=0
for _ in $(seq 300); do
    kill -0 "$hub_pid" 2>/dev/null || { tail -n 30 "$work/hub.log" >&2; die "the hub exited while starting"; }
    if "$python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
        "$base/health" 2>/dev/null; then
        ready=1
        break
    fi
    sleep 0.1
done
((ready)) || { tail -n 30 "$work/hub.log" >&2; die "the hub did not answer within 30 seconds"; }

# --- data to find -----------------------------------------------------------------------------
# Resources whose names api-fuzz.toml offers the fuzzer (beside made-up ones), so that
# operations on existing users, groups, servers, shares and tokens get past their 404.
"$python" - "$base" "$token" <<'PY' || die "could not create the fuzzer's test data"
import json, sys, urllib.request

base, token = sys.argv[1], sys.argv[2]

def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Authorization", f"token {token}")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=20) as resp:
        text = resp.read()
        return json.loads(text) if text.strip() else None

call("POST", "/users", {"usernames": ["fuzz-alice", "fuzz-bob"]})
call("POST", "/groups/fuzz-group", {"users": ["fuzz-alice", "fuzz-bob"]})
call("PUT", "/users/fuzz-alice/servers/lab", {})
call("PUT", "/users/fuzz-bob/servers/lab", {})
call("POST", "/shares/fuzz-alice/lab", {"user": "fuzz-bob"})
call("POST", "/shares/fuzz-alice/lab", {"group": "fuzz-group"})
call("POST", "/share-codes/fuzz-alice/lab", {})
for user in ("fuzz-alice", "fuzz-bob"):
    call("POST", f"/users/{user}/tokens", {"note": "fuzz"})
call("POST", "/services/fuzz-runtime", {"url": "http://127.0.0.1:9"})
PY

# --- schemathesis ----------------------------------------------------------------------------
report_args=()
if [[ -n "${JHRS_FUZZ_REPORT_DIR:-}" ]]; then
    report_args=(--report junit --report-dir "$JHRS_FUZZ_REPORT_DIR")
fi
log "schemathesis $("$schemathesis" --version 2>/dev/null | awk '{print $NF}'), $examples examples per operation, seed $seed"
started=$SECONDS
status=0
# One worker: schemathesis' generation in several threads at once occasionally trips over
# CPython 3.11 ("AST constructor recursion depth mismatch"), a failure of the tool, not the hub.
(
    cd "$work"
    CI=true SCHEMATHESIS_HOOKS="" "$schemathesis" --no-color \
        --config-file "$repo/scripts/api-fuzz.toml" \
        run "$repo/docs/reference/hub-openapi.yaml" \
        --url "$base" \
        --header "Authorization: token $token" \
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
        --phases examples,coverage,fuzzing \
        --max-examples "$examples" \
        --seed "$seed" \
        --workers 1 \
        --generation-database none \
        --request-timeout 20 \
        --exclude-name "POST /shutdown" \
        --exclude-name "PATCH /proxy" \
        "${report_args[@]}" \
        "${extra_args[@]}" </dev/null
) || status=$?
log "schemathesis finished in $((SECONDS - started)) s with status $status"
if ((status != 0)); then
    log "the hub's log, last lines:"
    tail -n 40 "$work/hub.log" >&2
fi
kill -0 "$hub_pid" 2>/dev/null || die "the hub is no longer running"
exit "$status"
