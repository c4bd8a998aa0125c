#!/usr/bin/env bash
# The main job on a fresh clone: installs Switchyard and runs the demo on the embedded default backend.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/switchyard demo "$@"
