#!/usr/bin/env bash
# The main job on a fresh clone: installs Switchyard and runs the demo on the embedded default backend.
# `scripts/demo.sh --adopt-pgvector` adopts an application's own pgvector table instead; it starts a local
# PostgreSQL with pgvector (scripts/ensure-pgvector.sh) unless PGVECTOR_DSN names one.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
if [[ " $* " == *" --adopt-pgvector "* && -z "${PGVECTOR_DSN:-}" ]]; then
  PGVECTOR_DSN="$(scripts/ensure-pgvector.sh)"
  export PGVECTOR_DSN
fi
exec .venv/bin/switchyard demo "$@"
