#!/usr/bin/env bash
# Run every issue-7 recipe end to end: train -> classify the test split -> evaluate -> one JSON per model.
#
#   R2C-GAN (configs/r2c-<name>-gpu.json):  op-q1 op-q3 op-q5 cnn cnn-compact op-q3-noclass (lambda_class = 0)
#   baselines (configs/baseline-<name>.json): efficientnet_b4 efficientnet_b5 resnet50 inception_v3
#
# Output per recipe in <out>/<name>/ (default runs/recipes, ignored): the run folder (state/, train_log.csv,
# val_log.jsonl, summary.json, generator/ or classifier/), test_preds.csv and test_metrics.json (the input of
# scripts/report_results.py). A recipe whose test_metrics.json exists is skipped, so the script can be run again
# and again: each call trains (or resumes) until --minutes of wall time are used, then stops cleanly with the
# state saved; the next call resumes it (see docs/BASELINES.md, "GPU runs in 10-minute chunks").
#
# Usage: bash scripts/run_recipes.sh [--minutes M] [--out DIR] [--collect DIR] [--set KEY=VALUE ...] [recipe ...]
#   --minutes M     wall-clock budget of this call (0 = none); training gets what is left minus a reserve
#   --set KEY=VALUE config override passed to every training call (repeatable; a field both trainers know,
#                   e.g. --set epochs=100 --set epoch_decay=50 to fit a session's device time)
#   --collect DIR   at the end, pack every recipe's small results and exported generators into
#                   DIR/recipes.tgz (split into 15 MiB parts when larger), e.g. --collect "$OUT" on a GPU machine
# Data: R2C_DATA, else ../shared/data/cxr, else the training pack .pack/cxr256.npz unpacked to /tmp/r2c-cxr.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi

R2C_RECIPES=(op-q1 op-q3 op-q5 cnn cnn-compact op-q3-noclass)
BASELINE_RECIPES=(efficientnet_b4 efficientnet_b5 resnet50 inception_v3)
MINUTES=0
OUTROOT=runs/recipes
COLLECT=""
SETS=()
RESERVE_MIN=1.5   # kept back from training for classify + evaluate
RECIPES=()
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) MINUTES=$2; shift 2 ;;
    --out) OUTROOT=$2; shift 2 ;;
    --collect) COLLECT=$2; shift 2 ;;
    --set) SETS+=(--set "$2"); shift 2 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    -*) echo "error: unknown option $1" >&2; exit 2 ;;
    *) RECIPES+=("$1"); shift ;;
  esac
done
[ ${#RECIPES[@]} -gt 0 ] || RECIPES=("${R2C_RECIPES[@]}" "${BASELINE_RECIPES[@]}")

log() { echo "== $(date -u +%FT%TZ) $*"; }

# ------------------------------------------------------------------------------------------------ data
if [ -z "${R2C_DATA:-}" ] && [ ! -f ../shared/data/cxr/MANIFEST.csv ]; then
  if [ -f .pack/cxr256.npz ]; then
    export R2C_DATA=/tmp/r2c-cxr
    [ -f "$R2C_DATA/MANIFEST.csv" ] || "$PY" scripts/make_pack.py --unpack .pack/cxr256.npz --to "$R2C_DATA"
  else
    echo "error: no data: set R2C_DATA, or build the pack (python scripts/make_pack.py) and carry .pack" >&2
    exit 2
  fi
fi
MANIFEST=${R2C_DATA:-../shared/data/cxr}/MANIFEST.csv
log "data: $MANIFEST; python: $PY; recipes: ${RECIPES[*]}; budget: ${MINUTES} min"

# --------------------------------------------------------------------------------------------- helpers
kind_of() {  # r2c | baseline
  local r
  for r in "${BASELINE_RECIPES[@]}"; do [ "$1" = "$r" ] && { echo baseline; return; }; done
  echo r2c
}
config_of() {
  if [ "$(kind_of "$1")" = baseline ]; then echo "configs/baseline-$1.json"; else echo "configs/r2c-$1-gpu.json"; fi
}
minutes_left() {  # training budget left (0 = unlimited), never below 0.5
  if [ "$MINUTES" = 0 ]; then echo 0; return; fi
  awk -v m="$MINUTES" -v s="$SECONDS" -v r="$RESERVE_MIN" 'BEGIN { x = m - s / 60 - r; if (x < 0.5) x = 0.5; printf "%.2f", x }'
}
out_of_time() {
  [ "$MINUTES" != 0 ] && awk -v m="$MINUTES" -v s="$SECONDS" -v r="$RESERVE_MIN" 'BEGIN { exit !(m - s / 60 - r < 0.5) }'
}
finished() {  # the run's summary says the whole schedule ran
  [ -f "$1/summary.json" ] && "$PY" -c 'import json,sys; s=json.load(open(sys.argv[1])); sys.exit(0 if s["step"] >= s["total_steps"] else 1)' "$1/summary.json"
}

collect() {
  [ -n "$COLLECT" ] || return 0
  mkdir -p "$COLLECT"
  local files=()
  mapfile -t files < <(cd "$OUTROOT" && find . -maxdepth 3 \( -name 'test_*' -o -name summary.json -o -name val_log.jsonl -o -name train_log.csv \
    -o -path './*/generator/*' -o -path './*/classifier/config.json' \) -type f | sort)
  [ ${#files[@]} -gt 0 ] || return 0
  tar czf "$COLLECT/recipes.tgz" -C "$OUTROOT" "${files[@]}"
  if [ "$(stat -c %s "$COLLECT/recipes.tgz")" -gt $((15 * 1024 * 1024)) ]; then
    split -b 15M "$COLLECT/recipes.tgz" "$COLLECT/recipes.tgz.part-" && rm "$COLLECT/recipes.tgz"
    log "collected into $COLLECT/recipes.tgz.part-* (join: cat recipes.tgz.part-* | tar xzf -)"
  else
    log "collected into $COLLECT/recipes.tgz"
  fi
}

train_one() {  # returns 0 when the schedule is complete
  local r=$1 dir=$2 kind cmd left
  kind=$(kind_of "$r")
  cmd=train; [ "$kind" = baseline ] && cmd=train-baseline
  left=$(minutes_left)
  if finished "$dir"; then return 0; fi
  if [ -f "$dir/state/config.json" ]; then
    log "resume $r ($dir, max_minutes=$left)"
    "$PY" -m r2c_core --log-level INFO "$cmd" --resume "$dir" --out "$dir" ${SETS[@]+"${SETS[@]}"} --set "max_minutes=$left" --no-progress > "$dir/last_train.json" \
      || { echo "error: training $r failed (see above)" >&2; exit 1; }
  else
    log "train $r ($(config_of "$r"), max_minutes=$left)"
    mkdir -p "$dir"
    "$PY" -m r2c_core --log-level INFO "$cmd" --config "$(config_of "$r")" --out "$dir" ${SETS[@]+"${SETS[@]}"} --set "max_minutes=$left" --no-progress > "$dir/last_train.json" \
      || { echo "error: training $r failed (see above)" >&2; exit 1; }
  fi
  finished "$dir"
}

evaluate_one() {
  local r=$1 dir=$2
  if [ "$(kind_of "$r")" = baseline ]; then
    "$PY" -m r2c_core classify-baseline --weights "$dir/classifier" --manifest "$MANIFEST" --split test --out "$dir/test_preds.csv"
  else
    "$PY" -m r2c_core classify --weights "$dir/generator" --manifest "$MANIFEST" --split test --out "$dir/test_preds.csv"
  fi
  "$PY" -m r2c_core evaluate --preds "$dir/test_preds.csv" --manifest "$MANIFEST" --out "$dir/test_metrics.json" > /dev/null
  log "evaluated $r: $dir/test_metrics.json"
}

# ------------------------------------------------------------------------------------------------ main
status=0
for r in "${RECIPES[@]}"; do
  cfg=$(config_of "$r")
  [ -f "$cfg" ] || { echo "error: no recipe $r ($cfg missing)" >&2; exit 2; }
  dir="$OUTROOT/$r"
  if [ -f "$dir/test_metrics.json" ]; then log "skip $r (done)"; continue; fi
  if out_of_time; then log "time budget used: run again to continue with $r"; status=3; break; fi
  if train_one "$r" "$dir"; then
    evaluate_one "$r" "$dir"
  else
    log "$r stopped at its time limit with the state saved: run again to resume"
    status=3
    break
  fi
done
collect
[ $status = 0 ] && log "all requested recipes done" || log "not finished (exit 3): run the same command again"
exit $status
