#!/usr/bin/env bash
# Train the CPU "v0" R2C-GAN weights (issue 7, no GPU) one model after another, export each generator to
# weights/r2c-<model>/ (model.safetensors + config.json, "version": "v0"; no discriminators or optimiser states),
# then classify the test split with it and evaluate (all test images, and quality domain A only).
# Runs, predictions and metrics go to runs/v0/<model>/ (ignored).
# Usage: bash scripts/train_v0.sh [model ...]      (default: op-q3 cnn-compact op-q5 cnn op-q1)
# In the background:  mkdir -p runs/v0 && nohup nice -n 5 bash scripts/train_v0.sh > runs/v0/train_v0.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
MANIFEST=${R2C_DATA:-../shared/data/cxr}/MANIFEST.csv
MODELS=("$@")
[ ${#MODELS[@]} -gt 0 ] || MODELS=(op-q3 cnn-compact op-q5 cnn op-q1)
mkdir -p runs/v0
for m in "${MODELS[@]}"; do
  cfg="configs/r2c-$m-v0-cpu.json"
  out="runs/v0/$m"
  echo "== $(date -u +%FT%TZ) train $m ($cfg)"
  rm -rf "$out"
  "$PY" -m r2c_core --log-level INFO train --config "$cfg" --out "$out" --no-progress
  rm -rf "weights/r2c-$m"
  mkdir -p "weights/r2c-$m"
  cp "$out/generator/model.safetensors" "$out/generator/config.json" "weights/r2c-$m/"
  echo "== $(date -u +%FT%TZ) exported weights/r2c-$m ($(du -h "weights/r2c-$m/model.safetensors" | cut -f1))"
  for dom in all A; do
    sel=(); [ "$dom" = all ] || sel=(--domain "$dom")
    "$PY" -m r2c_core classify --weights "weights/r2c-$m" --manifest "$MANIFEST" --split test "${sel[@]}" --out "$out/test_${dom}_preds.csv"
    "$PY" -m r2c_core evaluate --preds "$out/test_${dom}_preds.csv" --manifest "$MANIFEST" --out "$out/test_${dom}_metrics.json" --markdown > "$out/test_${dom}_metrics.md"
  done
  echo "== $(date -u +%FT%TZ) evaluated $m: runs/v0/$m/test_{all,A}_metrics.{json,md}"
done
echo "== $(date -u +%FT%TZ) done"
