#!/usr/bin/env bash
# Create .venv (if missing) and install the pinned requirements (requirements-nodeps.txt without their declared
# dependencies) plus this package (editable).
# Re-installs only when requirements.txt or pyproject.toml changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.r2c-installed
want=$(cat requirements.txt requirements-nodeps.txt pyproject.toml | sha1sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/python -m pip install -q -r requirements.txt
  .venv/bin/python -m pip install -q --no-deps -r requirements-nodeps.txt
  .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e . 2>/dev/null || .venv/bin/python -m pip install -q --no-deps -e .
  n=$(.venv/bin/python -m pip list 2>/dev/null | grep -ciE '^torch ')
  [ "$n" = 1 ] || { echo "error: expected exactly one torch in .venv, found $n" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
