#!/usr/bin/env bash
# The test command: set up .venv if needed, then run the whole suite (pytest) on CPU.
# Extra arguments go to pytest, e.g.  bash scripts/test.sh tests/test_layers.py -x
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_system.sh
bash scripts/setup_venv.sh
export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-}
exec .venv/bin/python -m pytest "$@"
