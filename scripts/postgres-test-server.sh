#!/usr/bin/env bash
# A throwaway PostgreSQL server for the hub's database tests.
#
#   scripts/postgres-test-server.sh start    ensure binaries, cluster and database; start; print the URL
#   scripts/postgres-test-server.sh stop     stop the server (data is kept for the next start)
#   scripts/postgres-test-server.sh reset    stop the server and delete its cluster (every test
#                                            database with it), so the next start begins empty
#   scripts/postgres-test-server.sh url      print the URL without starting anything
#   scripts/postgres-test-server.sh status   exit 0 if the server is running
#
# `start` is idempotent and safe to run concurrently (a lock serialises callers); it prints only
# the URL on stdout, e.g. postgresql://postgres@127.0.0.1:55432/jupyterhub_test, so
# `export JHRS_TEST_POSTGRES_URL=$(scripts/postgres-test-server.sh start)` works.
# Authentication is `trust` and the server listens on 127.0.0.1 only: test data, never real data.
#
# PostgreSQL binaries come from /usr/lib/postgresql/<version>/bin; if there are none,
# `apt-get install postgresql` runs once. The server refuses to run as root, so as root the
# cluster belongs to the `postgres` system user (created by the Debian package).
#
# Environment:
#   JHRS_CACHE      cache root (default: $HOME/.cache/jupyterhub-rs); the cluster lives in $JHRS_CACHE/pg
#   JHRS_PG_DIR     cluster directory, overriding the above
#   JHRS_PG_PORT    TCP port (default 55432)
#   JHRS_PG_DB      database created for the tests (default jupyterhub_test)
set -euo pipefail

JHRS_CACHE="${JHRS_CACHE:-${HOME:-/root}/.cache/jupyterhub-rs}"
PG_PORT="${JHRS_PG_PORT:-55432}"
PG_DB="${JHRS_PG_DB:-jupyterhub_test}"
PG_USER=postgres

log() { printf '[postgres-test-server] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

is_root() { [[ "$(id -u)" == 0 ]]; }

# Runs a command as the cluster's owner, from a directory that user can read.
as_owner() {
    if is_root; then
        (cd / && runuser -u "$PG_USER" -- "$@")
    else
        (cd / && "$@")
    fi
}

# The cluster directory. As root it must be reachable by the postgres user; a cache under a
# private home (/root is mode 700) is not, and we do not loosen a home directory's permissions,
# so then the cluster goes to /var/tmp instead.
pg_dir() {
    if [[ -n "${JHRS_PG_DIR:-}" ]]; then
        printf '%s\n' "$JHRS_PG_DIR"
        return
    fi
    local preferred="$JHRS_CACHE/pg"
    if is_root && id -u "$PG_USER" >/dev/null 2>&1; then
        mkdir -p "$JHRS_CACHE"
        if ! runuser -u "$PG_USER" -- test -x "$JHRS_CACHE" 2>/dev/null; then
            printf '%s\n' "/var/tmp/jupyterhub-rs-pg"
            return
        fi
    fi
    printf '%s\n' "$preferred"
}

find_bindir() {
    local dir
    # Newest installed major version first.
    while IFS= read -r dir; do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" && -x "$dir/postgres" ]]; then
            printf '%s\n' "$dir"
            return 0
        fi
    done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r)
    return 1
}

ensure_binaries() {
    if BINDIR="$(find_bindir)"; then
        return
    fi
    is_root || die "no PostgreSQL binaries in /usr/lib/postgresql/*/bin; install the 'postgresql' package"
    log "installing PostgreSQL (apt-get install postgresql)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q </dev/null >&2
    apt-get install -y -q --no-install-recommends postgresql </dev/null >&2
    BINDIR="$(find_bindir)" || die "PostgreSQL binaries still missing after apt-get install"
}

url() {
    printf 'postgresql://%s@127.0.0.1:%s/%s\n' "$PG_USER" "$PG_PORT" "$PG_DB"
}

is_running() {
    [[ -f "$PGDATA/PG_VERSION" ]] && as_owner "$BINDIR/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1
}

start() {
    ensure_binaries
    if is_root; then
        id -u "$PG_USER" >/dev/null 2>&1 || die "user '$PG_USER' does not exist (it comes with the postgresql package)"
    fi
    mkdir -p "$PG_ROOT" "$PG_ROOT/run"
    if is_root; then
        chown "$PG_USER:" "$PG_ROOT" "$PG_ROOT/run"
    fi
    chmod 700 "$PG_ROOT"

    if [[ ! -f "$PGDATA/PG_VERSION" ]]; then
        log "initialising a cluster in $PGDATA"
        rm -rf "$PGDATA"
        as_owner "$BINDIR/initdb" -D "$PGDATA" -A trust -U "$PG_USER" -E UTF8 --locale=C.UTF-8 --no-sync >&2
    elif [[ "$(cat "$PGDATA/PG_VERSION")" != "$(basename "$(dirname "$BINDIR")")" ]]; then
        die "$PGDATA was made by PostgreSQL $(cat "$PGDATA/PG_VERSION"), but the binaries are $BINDIR; remove $PG_ROOT"
    fi

    if ! is_running; then
        if "$BINDIR/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" >/dev/null 2>&1; then
            die "port $PG_PORT is taken by another server; set JHRS_PG_PORT"
        fi
        log "starting PostgreSQL on 127.0.0.1:$PG_PORT (log: $PG_ROOT/postgres.log)"
        # Durability settings are off: this server only ever holds test data. The server must not
        # inherit the lock's descriptor (9>&-), or it would hold the lock for its whole life.
        if ! as_owner "$BINDIR/pg_ctl" -D "$PGDATA" -l "$PG_ROOT/postgres.log" -w -t 60 \
            -o "-p $PG_PORT -k $PG_ROOT/run -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
            start >&2 9>&-; then
            tail -n 20 "$PG_ROOT/postgres.log" >&2 || true
            die "PostgreSQL did not start"
        fi
    fi

    local tries=0
    until "$BINDIR/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" >/dev/null 2>&1; do
        tries=$((tries + 1))
        ((tries < 120)) || die "PostgreSQL is not accepting connections on port $PG_PORT"
        sleep 0.5
    done

    local exists
    exists="$("$BINDIR/psql" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres -tAq \
        -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")"
    if [[ "$exists" != 1 ]]; then
        "$BINDIR/createdb" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" "$PG_DB"
    fi
    url
}

stop() {
    if ! BINDIR="$(find_bindir)"; then
        log "no PostgreSQL binaries; nothing to stop"
        return
    fi
    if is_running; then
        as_owner "$BINDIR/pg_ctl" -D "$PGDATA" -m fast -w -t 60 stop >&2
    else
        log "not running"
    fi
}

reset() {
    stop
    log "removing the cluster in $PG_ROOT"
    rm -rf "$PGDATA" "$PG_ROOT/postgres.log"
}

main() {
    local cmd="${1:-}"
    PG_ROOT="$(pg_dir)"
    PGDATA="$PG_ROOT/data"
    case "$cmd" in
        start | stop | reset)
            mkdir -p "$(dirname "$PG_ROOT")"
            exec 9>"$PG_ROOT.lock"
            flock -w 300 9 || die "timed out waiting for another run of this script"
            "$cmd"
            ;;
        url) url ;;
        status)
            BINDIR="$(find_bindir)" || exit 1
            is_running
            ;;
        *)
            printf 'usage: %s start|stop|reset|url|status\n' "$0" >&2
            exit 2
            ;;
    esac
}

main "$@"
