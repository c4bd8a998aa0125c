#!/usr/bin/env bash
# Benchmarks on a fresh clone: installs Switchyard into .venv (dev extras, real models included), then runs
# `switchyard bench`, which writes BENCHMARKS.md and BENCHMARKS.json here. Arguments are passed on:
#   scripts/bench.sh            full run (about half an hour on 2 cores)
#   scripts/bench.sh --quick    smoke-test sizes
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/switchyard bench "$@"
