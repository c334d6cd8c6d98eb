#!/usr/bin/env bash
# The test command: set up .venv if needed, then run the whole suite (pytest) on CPU.
# Extra arguments go to pytest, e.g.  bash scripts/test.sh tests/test_layers.py -x
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_system.sh
bash scripts/setup_venv.sh
# OpenMP threads that spin while waiting make torch 10x slower on a busy 2-core machine
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
exec .venv/bin/python -m pytest "$@"
