#!/usr/bin/env bash
# A real study deployment (docs/APP.md, "Running a real study"): a database of its own, no demo codes, no public
# demo page, listening on 127.0.0.1 only (put a TLS reverse proxy in front for readers on other machines).
#
#   bash scripts/run_study.sh init ADMIN_NAME    # create the study database and its first admin (code printed ONCE)
#   bash scripts/run_study.sh serve              # start the app on http://127.0.0.1:${PORT:-8501}
#
# Then, as that admin in the app (or with python -m study ...): add readers (each code shown once), build the study
# from a folder of images or a manifest, open it, export the votes.
# Environment: R2C_DB_URL (default sqlite:///<repo>/var/deploy/study.db; PostgreSQL: postgresql+psycopg://...),
# R2C_ASSETS (default var/deploy/assets), ADDRESS (default 127.0.0.1), PORT (default 8501),
# R2C_PUBLIC_DEMO (default 0: the demo page needs a researcher or admin sign-in), R2C_SESSION_IDLE_MIN (default 60),
# R2C_TRUSTED_PROXIES (default none; 127.0.0.1 for nginx on this machine that sets X-Forwarded-For $remote_addr).
# FORWARDED_ALLOW_IPS is always set empty here: Streamlit's web server (uvicorn) would otherwise believe any
# X-Forwarded-For from 127.0.0.1, i.e. what a client wrote, through a proxy that passes the header on.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
export R2C_DB_URL=${R2C_DB_URL:-sqlite:///$PWD/var/deploy/study.db}
export R2C_ASSETS=${R2C_ASSETS:-$PWD/var/deploy/assets}
export R2C_DEMO_DB=0 R2C_PUBLIC_DEMO=${R2C_PUBLIC_DEMO:-0}
# the client address comes from the app alone (app/auth.py client_address, R2C_TRUSTED_PROXIES), never from uvicorn
export FORWARDED_ALLOW_IPS=
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
umask 077  # the database (the study's secret key, the slot-to-method map) and the renditions: this user only
PY=.venv/bin/python
refuse_demo() {
  "$PY" - <<'PYEOF'
import sys
from study import audit
from study.db import connect
with connect(None, migrate=False).begin() as s:
    if audit.is_demo_database(s):
        sys.exit("error: R2C_DB_URL names the demo database (its demo codes are public): use a database of its own")
PYEOF
}
case "${1:-}" in
  init)
    [ -n "${2:-}" ] || { echo "usage: $0 init ADMIN_NAME" >&2; exit 2; }
    "$PY" -m study init
    refuse_demo
    "$PY" -m study add-reader "$2" --role admin
    echo "next: bash $0 serve, sign in with that code, add readers and build the study"
    ;;
  serve)
    refuse_demo
    echo "r2c study: http://${ADDRESS:-127.0.0.1}:${PORT:-8501} (database ${R2C_DB_URL%%\?*}); stop with Ctrl+C"
    exec "$PY" -m streamlit run app/streamlit_app.py \
      --server.headless true --server.address "${ADDRESS:-127.0.0.1}" --server.port "${PORT:-8501}" \
      --server.fileWatcherType none --browser.gatherUsageStats false --client.toolbarMode minimal \
      --runner.postScriptGC false "${@:2}"
    ;;
  *) sed -n 2,16p "$0"; exit 2 ;;
esac
