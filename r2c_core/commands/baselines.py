"""CLI: ``train-baseline`` (timm classifiers trained from scratch on the R2C split) and ``classify-baseline``
(preds.csv with the same columns as ``classify``, so ``evaluate`` scores both alike)."""

from __future__ import annotations

import argparse
import json

from .training import add_classify_arguments, add_train_arguments, classify_manifest


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-baseline", help="train a baseline classifier (EfficientNet-B4/B5, ResNet-50, Inception-v3; from scratch)")
    add_train_arguments(p, "JSON config (configs/baseline-*.json); fields not given keep their defaults", "run folder (default runs/baseline-<model>)")
    p.set_defaults(func=cmd_train_baseline)

    p = sub.add_parser("classify-baseline", help="classify the images of a manifest with a baseline classifier -> preds.csv")
    add_classify_arguments(p, "classifier folder (model.safetensors + config.json, kind baseline-classifier)")
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
    from ..baselines import BaselineClassifier

    def load():
        clf = BaselineClassifier.from_dir(args.weights, device=args.device)
        info = {"model": clf.model_name, "version": clf.config.get("version"), "pretrained": clf.config.get("pretrained")}
        return (lambda grays: clf.predict_proba(grays, batch_size=args.batch_size)), info

    return classify_manifest(args, load)
