#!/usr/bin/env bash
# Ship campaign results into weights/ and measure them on the test split (issue 13; docs/TRAINING.md).
#
#   bash scripts/ship_campaign.sh op-q3 lung-unet      # any recipes of configs/campaign-cpu.json
#
# R2C recipe: the export chosen on validation (python -m r2c_core campaign ship: guards, then validation AUC) goes
# to weights/r2c-<name> as version v1-cpu; then, on the test split (never used for the choice): classification
# (all and quality domain A) with bootstrap intervals and the metadata-only baseline, the restoration check
# (python -m r2c_core restoration-eval, 3 passes), and the training curves (docs/figures/training-<name>.png).
# HQG-Net recipes (hqg, hqg-blo): the export chosen on validation to weights/<name>, the restoration check at 1 pass,
# and for hqg-blo the classification of the test split by its own classifier.
# Lung U-Net: the best-validation checkpoint of runs/campaign/lung-unet/best goes to weights/lung-unet with its
# log, then segment-eval on the test split. Everything measured lands in runs/ship/<name>/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
MANIFEST=${R2C_DATA:-../shared/data/cxr}/MANIFEST.csv
VERSION=${VERSION:-v1-cpu}
[ $# -gt 0 ] || { sed -n 2,14p "$0"; exit 2; }
for r in "$@"; do
  out=runs/ship/$r
  mkdir -p "$out"
  if [ "$r" = lung-unet ]; then
    run=runs/campaign/lung-unet
    [ -f "$run/best/model.safetensors" ] || { echo "error: no $run/best" >&2; exit 2; }
    cp "$run/best/model.safetensors" weights/lung-unet/model.safetensors.tmp && mv weights/lung-unet/model.safetensors.tmp weights/lung-unet/model.safetensors
    "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); d["version"]=sys.argv[2]; json.dump(d,open(sys.argv[3],"w"),indent=2,sort_keys=True)' \
      "$run/best/config.json" "${LUNG_VERSION:-v1}" weights/lung-unet/config.json
    cp "$run/log.csv" weights/lung-unet/train_log.csv
    "$PY" -m r2c_core segment-eval --weights weights/lung-unet --manifest "$MANIFEST" --split test --per-image "$out/test_per_image.csv" > "$out/test_metrics.json"
    echo "== $r: $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(json.dumps(d.get("human", d)["dice"]))' "$out/test_metrics.json")"
    continue
  fi
  if [ "$r" = hqg ] || [ "$r" = hqg-blo ]; then
    # HQG-Net (method hqg-x1) and HQG+BLO (hqg-blo-x1): chosen on validation into weights/<name>; the restoration check
    # at 1 pass (how the method is applied); classification only for HQG+BLO, the variant with a classifier of its own
    "$PY" -m r2c_core campaign ship --recipe "$r" --version "$VERSION" > "$out/selection.json"
    w=weights/$r
    if [ "$r" = hqg-blo ]; then
      "$PY" -m r2c_core classify --weights "$w" --manifest "$MANIFEST" --split test --out "$out/test_preds.csv" > /dev/null
      "$PY" -m r2c_core evaluate --preds "$out/test_preds.csv" --manifest "$MANIFEST" --out "$out/test_metrics.json" > /dev/null
      "$PY" -m r2c_core evaluate --preds "$out/test_preds.csv" --manifest "$MANIFEST" --markdown > "$out/test_metrics.md"
    fi
    "$PY" -m r2c_core restoration-eval --weights "$w" --manifest "$MANIFEST" --split test --passes 1 --limit 40 --out "$out/restoration_test.json" > /dev/null
    echo "== $r: selection $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("step", d["step"], "epoch", d["epoch"])' "$out/selection.json"); results in $out"
    continue
  fi
  "$PY" -m r2c_core campaign ship --recipe "$r" --version "$VERSION" > "$out/selection.json"
  w=weights/r2c-$r
  "$PY" -m r2c_core classify --weights "$w" --manifest "$MANIFEST" --split test --out "$out/test_preds.csv" > /dev/null
  "$PY" -m r2c_core evaluate --preds "$out/test_preds.csv" --manifest "$MANIFEST" --out "$out/test_metrics.json" > /dev/null
  "$PY" -m r2c_core evaluate --preds "$out/test_preds.csv" --manifest "$MANIFEST" --markdown > "$out/test_metrics.md"
  "$PY" -m r2c_core classify --weights "$w" --manifest "$MANIFEST" --split test --domain A --out "$out/test_A_preds.csv" > /dev/null
  "$PY" -m r2c_core evaluate --preds "$out/test_A_preds.csv" --manifest "$MANIFEST" --markdown > "$out/test_A_metrics.md"
  "$PY" -m r2c_core restoration-eval --weights "$w" --manifest "$MANIFEST" --split test --passes 3 --limit 40 --out "$out/restoration_test.json" > /dev/null
  "$PY" scripts/render_training_curves.py "runs/campaign/$r" --png "docs/figures/training-$r.png" > /dev/null || echo "note: no curves PNG (chromium?)" >&2
  echo "== $r: selection $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("step", d["step"], "epoch", d["epoch"])' "$out/selection.json"); results in $out"
done
