#!/usr/bin/env bash
# The one-shot GPU run (scripts/gpu_oneshot.py; docs/TRAINING.md, "One-shot GPU run").
#
#   bash scripts/gpu_oneshot.sh prepare      here: build .pack/cxr256.npz, park what the run does not need outside
#                                            the checkout (the lung U-Net, HQG-Net weights, the campaign's compact states, screenshots)
#                                            so that the working tree + .pack fit the device's 64 MiB, and check it
#   device run: carry [".pack"], timeout_s 600, command:  bash scripts/gpu_oneshot.sh run
#               (HQG-Net, a window of its own:                 bash scripts/gpu_oneshot.sh run --recipes hqg --skip-bench)
#   bash scripts/gpu_oneshot.sh restore      here: put the parked files back (always, right after the run)
#   bash scripts/gpu_oneshot.sh unpack DIR   here: the files that came back -> runs/gpu/ (results) and
#                                            runs/gpu/generators/ (fp16 generators), then scripts/report_results.py
#   bash scripts/gpu_oneshot.sh size         what would travel now, in MiB
#
# Stop the CPU campaign first (bash scripts/campaign.sh stop): it writes campaign/ while it runs.
set -euo pipefail
cd "$(dirname "$0")/.."
PARK=${R2C_PARK:-../r2c-parked}
PARKED=(weights/lung-unet weights/hqg weights/hqg-blo campaign docs/screenshots)  # HQG-Net weights: 73 MB+ in fp16
LIMIT=$((64 * 1024 * 1024))

travel_bytes() {  # tracked files that exist + untracked files git does not ignore + .pack
  { git ls-files -z; git ls-files -z --others --exclude-standard; } | xargs -0 -r stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}'
}
pack_bytes() { [ -d .pack ] && du -sb .pack | cut -f1 || echo 0; }
whl_bytes() { [ -d .whl ] && du -sb .whl | cut -f1 || echo 0; }   # wheels for what the device lacks (none needed now)

case "${1:-}" in
  prepare)
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
    if pgrep -f 'r2c_core.*campaign run' > /dev/null; then
      echo "error: the CPU campaign is running (it writes campaign/): bash scripts/campaign.sh stop" >&2; exit 2
    fi
    [ -f .pack/cxr256.npz ] || "$PY" scripts/make_pack.py --quiet
    mkdir -p "$PARK"
    for p in "${PARKED[@]}"; do
      if [ -e "$p" ]; then mkdir -p "$PARK/$(dirname "$p")"; mv "$p" "$PARK/$p"; echo "parked $p -> $PARK/$p"; fi
    done
    total=$(( $(travel_bytes) + $(pack_bytes) + $(whl_bytes) ))
    echo "would travel: $((total / 1048576)) MiB (limit 64 MiB)"
    if [ "$total" -ge "$LIMIT" ]; then
      echo "error: too large to travel; putting the parked files back" >&2
      bash scripts/gpu_oneshot.sh restore; exit 1
    fi
    carry='[".pack"]'; [ -d .whl ] && carry='[".pack", ".whl"]'
    echo "parked files show as deleted in git status: do not commit until: bash scripts/gpu_oneshot.sh restore"
    echo "next: device run with carry $carry and: bash scripts/gpu_oneshot.sh run; then: bash scripts/gpu_oneshot.sh restore"
    ;;
  restore)
    for p in "${PARKED[@]}"; do
      if [ -e "$PARK/$p" ]; then
        if [ -e "$p" ]; then echo "error: $p exists both here and in $PARK: resolve by hand" >&2; exit 1; fi
        mkdir -p "$(dirname "$p")"; mv "$PARK/$p" "$p"; echo "restored $p"
      fi
    done
    git status --short -- "${PARKED[@]}" | head
    ;;
  run)
    # on the device machine: its python3 holds torch; wheels carried in .whl (if any) for what it lacks
    if compgen -G ".whl/*.whl" > /dev/null; then
      python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
      export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    fi
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    shift
    exec python3 scripts/gpu_oneshot.py --out "${OUT:?OUT is set on the device machine}" --budget-s "${BUDGET_S:-540}" "$@"
    ;;
  unpack)
    src=${2:?usage: gpu_oneshot.sh unpack DIR}
    mkdir -p runs/gpu/generators
    tar xzf "$src/results.tgz" -C runs/gpu
    if compgen -G "$src/generators.tgz.part-*" > /dev/null; then cat "$src"/generators.tgz.part-* | tar xzf - -C runs/gpu/generators
    elif [ -f "$src/generators.tgz" ]; then tar xzf "$src/generators.tgz" -C runs/gpu/generators; fi
    cp "$src"/plan.json runs/gpu/ 2>/dev/null || true
    [ -f "$src/bench.json" ] && cp "$src/bench.json" runs/gpu/bench.json
    ls runs/gpu runs/gpu/generators
    echo "next: python scripts/report_results.py runs/gpu/*/test_metrics.json"
    ;;
  size) echo "$(( ($(travel_bytes) + $(pack_bytes) + $(whl_bytes)) / 1048576 )) MiB would travel (limit 64 MiB)" ;;
  *) sed -n '2,14p' "$0"; exit 2 ;;
esac
