#!/usr/bin/env bash
# Creates .venv and installs Switchyard with its dev extras; a no-op when pyproject.toml is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.switchyard-installed
wanted="$(sha256sum pyproject.toml | cut -d' ' -f1) ${SWITCHYARD_EXTRAS:-dev}"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
  echo "bootstrap: installing switchyard[${SWITCHYARD_EXTRAS:-dev}] into .venv" >&2
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[${SWITCHYARD_EXTRAS:-dev}]"
  echo "$wanted" > "$stamp"
fi
