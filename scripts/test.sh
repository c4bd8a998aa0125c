#!/usr/bin/env bash
# The whole test suite on a fresh clone: installs what it needs, starts the servers the tests use, runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
scripts/ensure-redis.sh
export PGVECTOR_DSN; PGVECTOR_DSN="$(scripts/ensure-pgvector.sh)"  # a plain assignment, so set -e sees a failure
scripts/ensure-helm.sh
.venv/bin/ruff check proxy tests bench scripts
.venv/bin/ruff format --check proxy tests bench scripts
exec .venv/bin/python -m pytest "$@"
