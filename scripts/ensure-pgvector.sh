#!/usr/bin/env bash
# Makes sure a PostgreSQL with the pgvector extension answers, and prints its DSN on stdout (logs go to stderr).
#
#   export PGVECTOR_DSN; PGVECTOR_DSN="$(scripts/ensure-pgvector.sh)"
#
# 1. PGVECTOR_DSN set, and that server has (or can create) the `vector` extension: prints it, done.
# 2. Otherwise: a test server from the `pgserver` wheel (PostgreSQL 16 with pgvector's vector.so; Debian has no
#    pgvector package) on 127.0.0.1:$PGVECTOR_PORT (default 5433), data in $PGVECTOR_DATA_DIR (default
#    /tmp/switchyard-pgvector-$PGVECTOR_PORT), trust auth for local test use only. Started when not running,
#    initialized when the data dir is empty. PostgreSQL refuses to run as root, so as root the server runs as
#    the system user $PGVECTOR_OS_USER (default switchyard-pg), created when missing.
# Idempotent: safe to run before every test run. Needs .venv with the dev extras (scripts/bootstrap.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

PORT="${PGVECTOR_PORT:-5433}"
DATA_DIR="${PGVECTOR_DATA_DIR:-/tmp/switchyard-pgvector-$PORT}"
OS_USER="${PGVECTOR_OS_USER:-switchyard-pg}"
LOCAL_DSN="postgresql://postgres@127.0.0.1:$PORT/postgres"
# HNSW indexes arrived in pgvector 0.5.0.
MIN_VECTOR_VERSION="0.5.0"

log() { echo "ensure-pgvector: $*" >&2; }

# Prints the pgserver package version and the wheel's PostgreSQL install folder.
pgserver_install() {
    .venv/bin/python -c 'import importlib.metadata as m, pathlib, pgserver
print(m.version("pgserver"), pathlib.Path(pgserver.__file__).parent / "pginstall")' 2>/dev/null || {
        log "the pgserver package is not installed in .venv; run scripts/bootstrap.sh first."
        exit 1
    }
}

# As root the server runs as an unprivileged user, who may not be able to reach .venv (a clone under /root,
# say), so it runs from a world-readable copy made once per pgserver version. The copy keeps the wheel's
# layout: the programs find their bundled libpq at $ORIGIN/../../../pgserver.libs.
server_install() {
    local source="$1" version="$2"
    if [[ "$(id -u)" != 0 ]]; then
        echo "$source"
        return
    fi
    local copy="/tmp/switchyard-pgserver-$version"
    if [[ ! -f "$copy/.complete" ]]; then
        rm -rf "$copy" "$copy.partial"
        mkdir -p "$copy.partial/pgserver"
        cp -a "$source" "$copy.partial/pgserver/pginstall"
        cp -a "$source/../../pgserver.libs" "$copy.partial/pgserver.libs"
        chmod -R a+rX "$copy.partial"
        touch "$copy.partial/.complete"
        mv "$copy.partial" "$copy"
    fi
    echo "$copy/pgserver/pginstall"
}

# Prints the extension's version when `dsn` answers and has, or could create, the `vector` extension.
vector_version() {
    local dsn="$1"
    PGCONNECT_TIMEOUT=3 "$BIN/psql" "$dsn" -X -q -A -t -v ON_ERROR_STOP=1 \
        -c "CREATE EXTENSION IF NOT EXISTS vector" \
        -c "SELECT extversion FROM pg_extension WHERE extname = 'vector'" 2>/dev/null
}

new_enough() {
    [[ "$(printf '%s\n%s\n' "$MIN_VECTOR_VERSION" "$1" | sort -V | head -n 1)" == "$MIN_VECTOR_VERSION" ]]
}

# Runs a PostgreSQL program as the server's OS user (as root, a dedicated unprivileged user).
as_server_user() {
    if [[ "$(id -u)" == 0 ]]; then
        runuser -u "$OS_USER" -- "$@"
    else
        "$@"
    fi
}

ensure_os_user() {
    [[ "$(id -u)" == 0 ]] || return 0
    if ! id -u "$OS_USER" >/dev/null 2>&1; then
        log "creating system user $OS_USER to run PostgreSQL (it refuses to run as root)"
        useradd --system --no-create-home --shell /usr/sbin/nologin "$OS_USER"
    fi
    mkdir -p "$DATA_DIR"
    chown "$OS_USER:" "$DATA_DIR"
}

init_data_dir() {
    [[ -f "$DATA_DIR/PG_VERSION" ]] && return 0
    log "initializing a PostgreSQL data dir in $DATA_DIR"
    mkdir -p "$DATA_DIR"
    ensure_os_user
    chmod 700 "$DATA_DIR"
    as_server_user "$SERVER_BIN/initdb" -D "$DATA_DIR" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 \
        >"$DATA_DIR.initdb.log" 2>&1 || {
        log "initdb failed; its output:"
        cat "$DATA_DIR.initdb.log" >&2
        exit 1
    }
}

start_server() {
    ensure_os_user
    log "starting PostgreSQL on 127.0.0.1:$PORT (data $DATA_DIR, log $DATA_DIR/server.log)"
    local attempt
    for attempt in 1 2 3; do
        # Loopback only; the unix socket lives in the data dir, so no system-wide socket folder is needed.
        as_server_user "$SERVER_BIN/pg_ctl" -D "$DATA_DIR" -l "$DATA_DIR/server.log" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -p $PORT -c unix_socket_directories='$DATA_DIR'" start >&2 && return 0
        # A server killed a moment ago can linger as an unreaped process that still owns postmaster.pid.
        sleep 2
    done
    log "PostgreSQL did not start; last lines of $DATA_DIR/server.log:"
    tail -n 20 "$DATA_DIR/server.log" >&2 || true
    exit 1
}

# Prints `dsn` when it is usable; fails with the reason otherwise.
use_when_ready() {
    local dsn="$1" version
    version="$(vector_version "$dsn")" || return 1
    if ! new_enough "$version"; then
        log "pgvector $version at that server is older than $MIN_VECTOR_VERSION, which HNSW indexes need."
        return 1
    fi
    log "PostgreSQL with pgvector $version answers"
    echo "$dsn"
}

installed="$(pgserver_install)"
read -r PGSERVER_VERSION INSTALL <<<"$installed"
BIN="$INSTALL/bin"

if [[ -n "${PGVECTOR_DSN:-}" ]]; then
    use_when_ready "$PGVECTOR_DSN" && exit 0
    [[ "$PGVECTOR_DSN" == "$LOCAL_DSN" ]] ||
        log "PGVECTOR_DSN does not answer with a usable pgvector; using a local test server instead."
fi
use_when_ready "$LOCAL_DSN" && exit 0
if "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
    log "something answers on 127.0.0.1:$PORT but the vector extension cannot be created there."
    log "free the port, or set PGVECTOR_PORT to another one."
    exit 1
fi
SERVER_BIN="$(server_install "$INSTALL" "$PGSERVER_VERSION")/bin"
init_data_dir
start_server
use_when_ready "$LOCAL_DSN" || {
    log "the server started but CREATE EXTENSION vector failed; see $DATA_DIR/server.log"
    exit 1
}
