"""CLI: ``train-baseline`` (timm classifiers trained from scratch on the R2C split) and ``classify-baseline``
(preds.csv with the same columns as ``classify``, so ``evaluate`` scores both alike)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import ManifestError, R2CError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-baseline", help="train a baseline classifier (EfficientNet-B4/B5, ResNet-50, Inception-v3; from scratch)")
    p.add_argument("--config", type=Path, default=None, help="JSON config (configs/baseline-*.json); fields not given keep their defaults")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config field (repeatable), e.g. --set size=64")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps in total; the schedule is unchanged")
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/baseline-<model>)")
    p.add_argument("--resume", type=Path, default=None, help="resume from a run folder or its state/ folder (its config is used; --set/--max-steps still apply)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    p.set_defaults(func=cmd_train_baseline)

    p = sub.add_parser("classify-baseline", help="classify the images of a manifest with a baseline classifier -> preds.csv")
    p.add_argument("--weights", required=True, type=Path, help="classifier folder (model.safetensors + config.json, kind baseline-classifier)")
    p.add_argument("--manifest", required=True, type=Path, help="manifest CSV (image paths relative to its folder)")
    p.add_argument("--split", default=None, help="only rows of this split (train/test from the manifest, val from the A/B split file)")
    p.add_argument("--domain", choices=["A", "B"], default=None, help="only images of this quality domain (from the A/B split file)")
    p.add_argument("--split-file", type=Path, default=None, help="A/B split file (default configs/splits/r2c-ab-split.csv)")
    p.add_argument("--out", required=True, type=Path, help="predictions CSV: id,label,prob_covid,pred")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=32)
    p.set_defaults(func=cmd_classify_baseline)


def cmd_train_baseline(args: argparse.Namespace) -> int:
    from ..baselines import load_baseline_config, state_baseline_config, train_baseline
    from ..paths import REPO_ROOT
    from ..training import parse_overrides

    overrides = parse_overrides(args.overrides)
    if args.max_steps is not None:
        overrides["max_steps"] = str(args.max_steps)
    cfg = state_baseline_config(args.resume, overrides) if args.resume is not None else load_baseline_config(args.config, overrides)
    out = args.out or (args.resume if args.resume is not None and (args.resume / "state").is_dir() else REPO_ROOT / "runs" / f"baseline-{cfg.model}")
    summary = train_baseline(cfg, out, resume=args.resume, progress=not args.no_progress)
    print(json.dumps(summary, default=str))
    return 0


def cmd_classify_baseline(args: argparse.Namespace) -> int:
    import numpy as np
    import pandas as pd
    from tqdm import tqdm

    from ..baselines import BaselineClassifier
    from ..data import SPLIT_FILE, check_images_exist, load_manifest, load_split, select_split
    from ..imageio import read_xray
    from ..models import CLASS_NAMES

    if args.batch_size < 1:
        raise R2CError(f"--batch-size must be >= 1, got {args.batch_size}")
    df = select_split(load_manifest(args.manifest), args.split, args.split_file)
    if args.domain:
        ab = load_split(args.split_file or SPLIT_FILE)
        df = df[df["id"].isin(set(ab.loc[ab["domain"] == args.domain, "id"]))]
        if df.empty:
            raise ManifestError(f"no rows of domain {args.domain} in the selection")
    check_images_exist(df)
    clf = BaselineClassifier.from_dir(args.weights, device=args.device)
    paths = list(df["path"])
    probs: list[np.ndarray] = []
    for s in tqdm(range(0, len(paths), args.batch_size), desc="classify", unit="batch", file=sys.stderr, disable=len(paths) <= args.batch_size):
        grays = [read_xray(p) for p in paths[s : s + args.batch_size]]
        probs.append(clf.predict_proba(grays, batch_size=args.batch_size)[:, CLASS_NAMES.index("covid")])
    p = np.concatenate(probs)
    out = pd.DataFrame({"id": df["id"].to_numpy(), "label": df["label"].to_numpy(), "prob_covid": np.round(p, 6), "pred": np.where(p >= 0.5, "covid", "control")})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(args.out, index=False, lineterminator="\n")
    print(json.dumps({"out": str(args.out), "n": len(out), "model": clf.model_name, "version": clf.config.get("version"),
                      "pretrained": clf.config.get("pretrained"), "predicted_covid": int((p >= 0.5).sum())}))
    return 0
