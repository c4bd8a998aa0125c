#!/usr/bin/env bash
# Makes sure a Redis answers at $REDIS_URL (default redis://127.0.0.1:6379/0).
# Already answering: exits 0 at once. Otherwise, for a local address only, installs redis-server when it is
# missing and starts a daemonized, non-persistent instance on that port, then waits until it answers.
# Idempotent: safe to run before every test run.
set -euo pipefail

REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
WAIT_SECONDS="${REDIS_WAIT_SECONDS:-15}"

# redis[s]://[user:password@]host[:port][/db] -> host and port (IPv4 or a name)
address="${REDIS_URL#*://}"
address="${address##*@}"
address="${address%%/*}"
host="${address%%:*}"
port="${address##*:}"
[[ "$port" == "$address" || -z "$port" ]] && port=6379
[[ -z "$host" ]] && host=127.0.0.1

answers() {
    if command -v redis-cli >/dev/null 2>&1; then
        [[ "$(redis-cli -u "$REDIS_URL" ping 2>/dev/null)" == "PONG" ]]
        return
    fi
    # No redis-cli yet (fresh machine): speak the protocol over bash's /dev/tcp instead.
    local reply
    { exec 3<>"/dev/tcp/$host/$port"; } 2>/dev/null || return 1
    printf 'PING\r\n' >&3
    read -r -t 2 reply <&3 || reply=""
    exec 3<&- 3>&-
    [[ "$reply" == "+PONG"* ]]
}

is_local() {
    [[ "$host" == "127.0.0.1" || "$host" == "localhost" ]]
}

install_redis() {
    echo "ensure-redis: redis-server not found, installing it with apt-get" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
}

start_redis() {
    local bind_host="$host"
    [[ "$bind_host" == "localhost" ]] && bind_host=127.0.0.1
    echo "ensure-redis: starting redis-server on $bind_host:$port (no persistence, log $LOG_FILE)" >&2
    # Test and dev state only: nothing is written to disk, a restart starts empty.
    redis-server --daemonize yes --bind "$bind_host" --port "$port" --save '' --appendonly no \
        --dir /tmp --logfile "$LOG_FILE" --pidfile "/tmp/switchyard-redis-$port.pid"
}

wait_until_answering() {
    local attempt
    for ((attempt = 0; attempt < WAIT_SECONDS * 5; attempt++)); do
        answers && return 0
        sleep 0.2
    done
    echo "ensure-redis: Redis at $host:$port did not answer PING within ${WAIT_SECONDS}s." >&2
    echo "ensure-redis: last lines of $LOG_FILE:" >&2
    tail -n 20 "$LOG_FILE" >&2 2>/dev/null || true
    exit 1
}

LOG_FILE="/tmp/switchyard-redis-$port.log"

if answers; then
    exit 0
fi
if ! is_local; then
    echo "ensure-redis: Redis at $REDIS_URL does not answer, and $host is not local, so it is not started here." >&2
    echo "ensure-redis: check that the server is up and reachable, or point REDIS_URL at a local address." >&2
    exit 1
fi
if ! command -v redis-server >/dev/null 2>&1; then
    install_redis
    # The package's own service may already be listening on this port.
    answers && exit 0
fi
start_redis
wait_until_answering
echo "ensure-redis: Redis answers at $REDIS_URL" >&2
