#!/usr/bin/env bash
# The CPU training campaign in the background (issue 13; docs/TRAINING.md, "CPU campaign").
#
#   bash scripts/campaign.sh start [PLAN]    start the queue under nice (default plan configs/campaign-cpu.json)
#   bash scripts/campaign.sh status [PLAN]   one line per recipe, and the last progress line
#   bash scripts/campaign.sh stop [PLAN]     SIGTERM: the running trainer saves its state, then everything exits
#   bash scripts/campaign.sh log             follow runs/campaign/progress.log
#
# Each recipe resumes where it stopped: from runs/campaign/<name>/state on this machine, else from the compact
# state committed under campaign/<name>/ (a fresh machine), else from its config.
set -euo pipefail
cd "$(dirname "$0")/.."
action=${1:-status}
plan=${2:-configs/campaign-cpu.json}
[ -x .venv/bin/python ] || bash scripts/setup_venv.sh
PY=.venv/bin/python
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE} PYTHONUNBUFFERED=1
out=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1])).get("out", "runs/campaign"))' "$plan")
case "$action" in
  start)
    mkdir -p "$out"
    nohup nice -n "${NICE:-5}" "$PY" -m r2c_core --log-level INFO campaign run --plan "$plan" >> "$out/runner.log" 2>&1 &
    sleep 2
    echo "campaign started (pid $!); progress: $out/progress.log"
    ;;
  status|stop) exec "$PY" -m r2c_core campaign "$action" --plan "$plan" ;;
  log) exec tail -F "$out/progress.log" ;;
  *) echo "usage: $0 start|status|stop|log [PLAN]" >&2; exit 2 ;;
esac
