#!/usr/bin/env bash
# The README's first command: set up .venv (first time only), create the demo study database on first start
# (var/study.db with demo codes demo-reader / demo-researcher / demo-admin), then start the app headless on
# http://localhost:8501 (PORT to change it), on 127.0.0.1 only (ADDRESS=0.0.0.0 to show the demo to other machines:
# its demo codes are public, so never for a real study; that is scripts/run_study.sh). Extra arguments go to
# `streamlit run`.
# Environment: R2C_DATA (X-ray folder, default ../shared/data/cxr), R2C_DB_URL (another database: no demo
# contents are created there), R2C_ASSETS, R2C_WEIGHTS, R2C_DEVICE (cpu / cuda / auto), R2C_PUBLIC_DEMO (default:
# the demo page is public on the demo database only), R2C_TRUSTED_PROXIES (reverse proxies whose X-Forwarded-For
# is believed; default none). FORWARDED_ALLOW_IPS is set empty: Streamlit's web server (uvicorn) then never takes a
# client address from X-Forwarded-For itself (its default believes it from 127.0.0.1); the app decides (docs/APP.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}  # idle model threads sleep, not spin (docs/APP.md)
export FORWARDED_ALLOW_IPS=  # the client address (sign-in rate limit) comes from the app alone, see above
.venv/bin/python -m app.demo_db
echo "r2c app: http://localhost:${PORT:-8501}  (stop with Ctrl+C)"
exec .venv/bin/python -m streamlit run app/streamlit_app.py \
  --server.headless true --server.address "${ADDRESS:-127.0.0.1}" --server.port "${PORT:-8501}" --server.fileWatcherType none \
  --browser.gatherUsageStats false --client.toolbarMode minimal --runner.postScriptGC false "$@"
