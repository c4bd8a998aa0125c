#!/usr/bin/env bash
# The whole test suite on a fresh clone: installs what it needs, starts the servers the tests use, runs pytest.
#   scripts/test.sh            everything: lint, types (mypy --strict), unit, integration, contract, e2e, reliability
#   scripts/test.sh --fast     lint, types and tests/unit only: no server, no child process (well under a minute)
# Other arguments go to pytest (e.g. scripts/test.sh tests/e2e -k demo).
set -euo pipefail
cd "$(dirname "$0")/.."
fast=0
if [ "${1:-}" = "--fast" ]; then
  fast=1
  shift
fi
scripts/bootstrap.sh
.venv/bin/ruff check proxy tests scripts
.venv/bin/ruff format --check proxy tests scripts
.venv/bin/mypy
if [ "$fast" = 1 ]; then
  exec .venv/bin/python -m pytest tests/unit "$@"
fi
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
scripts/ensure-redis.sh
export PGVECTOR_DSN; PGVECTOR_DSN="$(scripts/ensure-pgvector.sh)"  # a plain assignment, so set -e sees a failure
scripts/ensure-helm.sh
exec .venv/bin/python -m pytest "$@"
