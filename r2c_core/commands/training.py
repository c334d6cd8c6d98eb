"""CLI: ``make-split`` (quality A/B + validation split), ``train``, ``train-hqg``, ``classify`` and ``evaluate``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from ..errors import ManifestError, R2CError


def add_train_arguments(p: argparse.ArgumentParser, config_help: str, out_help: str) -> None:
    """The options every ``train*`` command shares (config, overrides, max steps, out, resume, progress)."""
    p.add_argument("--config", type=Path, default=None, help=config_help)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config field (repeatable), e.g. --set size=64")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps in total (smoke runs); the schedule is unchanged")
    p.add_argument("--out", type=Path, default=None, help=out_help)
    p.add_argument("--resume", type=Path, default=None, help="resume from a run folder or its state/ folder (its config is used; --set/--max-steps still apply)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")


def add_classify_arguments(p: argparse.ArgumentParser, weights_help: str) -> None:
    """The options every ``classify*`` command shares: which images, where the predictions go."""
    p.add_argument("--weights", required=True, type=Path, help=weights_help)
    p.add_argument("--manifest", required=True, type=Path, help="manifest CSV (image paths relative to its folder)")
    p.add_argument("--split", default=None, help="only rows of this split (train/test from the manifest, val from the A/B split file)")
    p.add_argument("--domain", choices=["A", "B"], default=None, help="only images of this quality domain (from the A/B split file)")
    p.add_argument("--split-file", type=Path, default=None, help="A/B split file (default configs/splits/r2c-ab-split.csv)")
    p.add_argument("--out", required=True, type=Path, help="predictions CSV: id,label,prob_covid,pred")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=32)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("make-split", help="write the quality A/B + validation split file (reproducible)")
    p.add_argument("--manifest", type=Path, default=None, help="manifest CSV (default: the shared data folder, R2C_DATA)")
    p.add_argument("--out", type=Path, default=None, help="split CSV to write (default configs/splits/r2c-ab-split.csv)")
    p.add_argument("--val-fraction", type=float, default=None, help="share of each cell's train groups for val (default 0.15)")
    p.add_argument("--seed", type=int, default=None, help="split seed (default 20261123)")
    p.set_defaults(func=cmd_make_split)

    p = sub.add_parser("campaign", help="a queue of training recipes, unattended and resumable (run, status, stop)")
    p.add_argument("action", choices=("run", "status", "stop", "select", "ship"),
                   help="run the queue (foreground; scripts/campaign.sh starts it in the background), show it, stop it with its state saved, "
                        "select a recipe's checkpoint on validation, or ship it into weights/")
    p.add_argument("--plan", type=Path, default=Path("configs/campaign-cpu.json"), help="campaign plan JSON (default configs/campaign-cpu.json)")
    p.add_argument("--only", help="run: only this recipe (may run beside the full runner, which then waits for it)")
    p.add_argument("--recipe", help="select/ship: the recipe (e.g. op-q3)")
    p.add_argument("--to", type=Path, help="ship: destination weights folder (default weights/r2c-<model>; weights/hqg, weights/hqg-blo for HQG-Net recipes)")
    p.add_argument("--version", default="v1-cpu", help="ship: version recorded in config.json (default v1-cpu)")
    p.add_argument("--step", type=int, help="select/ship: this step's export instead of the rule's choice")
    p.set_defaults(func=cmd_campaign)

    p = sub.add_parser("train", help="train an R2C-GAN on the A/B split (resumable)")
    add_train_arguments(p, "JSON training config (configs/r2c-*.json); fields not given keep their defaults (--set loss.lambda_class=0 for the ablation)",
                        "run folder (default runs/<model>)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("train-hqg", help="train HQG-Net (the compared unpaired enhancement method) on the A/B split (resumable)")
    add_train_arguments(p, "JSON config (configs/hqg-*.json); fields not given keep the public code's defaults", "run folder (default runs/hqg)")
    p.set_defaults(func=cmd_train_hqg)

    p = sub.add_parser("classify", help="classify the images of a manifest with a trained generator -> preds.csv")
    add_classify_arguments(p, "generator folder (model.safetensors + config.json)")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("evaluate", help="metrics of a preds.csv as JSON: pooled, per source, with the metadata-only baseline")
    p.add_argument("--preds", required=True, type=Path, help="CSV with id,label,prob_covid[,pred]")
    p.add_argument("--manifest", type=Path, default=None, help="manifest CSV (default: the shared data folder); gives sources and sizes")
    p.add_argument("--threshold", type=float, default=0.5, help="decision threshold on prob_covid")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates for the 95%% intervals (0 = none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    p.add_argument("--markdown", action="store_true", help="print a markdown table (with 95%% intervals) instead of the JSON")
    p.set_defaults(func=cmd_evaluate)


def cmd_make_split(args: argparse.Namespace) -> int:
    from ..data import (
        SPLIT_FILE,
        SPLIT_SEED,
        VAL_FRACTION,
        file_sha256,
        load_manifest,
        make_ab_split,
        save_split,
        split_summary,
    )

    df = load_manifest(args.manifest)
    split = make_ab_split(df, fraction=VAL_FRACTION if args.val_fraction is None else args.val_fraction, seed=SPLIT_SEED if args.seed is None else args.seed)
    path = save_split(split, args.out or SPLIT_FILE)
    print(json.dumps({"out": str(path), "sha256": file_sha256(path), "counts": split_summary(split)}))
    return 0


def cmd_campaign(args: argparse.Namespace) -> int:
    from ..training import campaign

    plan = campaign.Plan.load(args.plan)
    if args.action == "run":
        pid = campaign.runner_pid(plan, args.only)
        if pid is not None:
            raise R2CError(f"a runner{' for ' + args.only if args.only else ''} is already active for {plan.out} (pid {pid})")
        return campaign.run(plan, args.only)
    if args.action in ("select", "ship"):
        from ..training import select

        recipe = next((r for r in plan.recipes if r.name == args.recipe), None)
        if recipe is None or recipe.kind not in ("r2c", "hqg"):
            names = ", ".join(r.name for r in plan.recipes if r.kind in ("r2c", "hqg"))
            raise R2CError(f"--recipe must name an R2C-GAN or HQG-Net recipe of the plan ({names})")
        run = campaign.recipe_dir(plan, recipe)
        if args.action == "select":
            chosen = select.choose(run) if args.step is None else next(c for c in select.candidates(run) if c["step"] == args.step)
            print(json.dumps(chosen, indent=2, default=str))
            return 0
        # R2C-GAN generators in weights/r2c-<model>; HQG-Net and HQG+BLO in weights/hqg, weights/hqg-blo (their method names)
        dest = args.to or campaign.REPO_ROOT / "weights" / (recipe.name if recipe.kind == "hqg" else f"r2c-{recipe.name}")
        print(json.dumps(select.ship(run, dest, args.version, step=args.step), indent=2, default=str))
        return 0
    if args.action == "stop":
        stopped = campaign.stop(plan)
        print("stopped (state saved)" if stopped else "no active runner")
        return 0
    for row in campaign.status(plan):
        print(f"{row['recipe']:<14} {row['state']:<28} step {row.get('step', '-'):<12} epoch {row.get('epoch', '-')}")
        if row.get("last"):
            print(f"    {row['last']}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from ..paths import REPO_ROOT
    from ..training import load_config, parse_overrides, state_config, train

    overrides = parse_overrides(args.overrides)
    if args.max_steps is not None:
        overrides["max_steps"] = str(args.max_steps)
    if args.resume is not None:
        cfg = state_config(args.resume, overrides)
    else:
        cfg = load_config(args.config, overrides)
    out = args.out or (args.resume if args.resume is not None and (args.resume / "state").is_dir() else REPO_ROOT / "runs" / cfg.model)
    summary = train(cfg, out, resume=args.resume, progress=not args.no_progress)
    print(json.dumps(summary, default=str))
    return 0


def cmd_train_hqg(args: argparse.Namespace) -> int:
    from ..paths import REPO_ROOT
    from ..training import parse_overrides
    from ..training.hqg import load_hqg_config, state_hqg_config, train_hqg

    overrides = parse_overrides(args.overrides)
    if args.max_steps is not None:
        overrides["max_steps"] = str(args.max_steps)
    cfg = state_hqg_config(args.resume, overrides) if args.resume is not None else load_hqg_config(args.config, overrides)
    out = args.out or (args.resume if args.resume is not None and (args.resume / "state").is_dir() else REPO_ROOT / "runs" / "hqg")
    summary = train_hqg(cfg, out, resume=args.resume, progress=not args.no_progress)
    print(json.dumps(summary, default=str))
    return 0


def classify_manifest(args: argparse.Namespace, load: Callable[[], tuple[Callable[[list], Any], dict[str, Any]]]) -> int:
    """Shared body of ``classify`` / ``classify-baseline``: check the manifest rows first, then ``load()`` the model
    as ``(predict, info)`` with ``predict(list of gray uint8) -> (N, 2) probabilities``, classify in batches, write
    ``id,label,prob_covid,pred`` and print a summary with ``info``."""
    import numpy as np
    import pandas as pd
    from tqdm import tqdm

    from ..data import (
        SPLIT_FILE,
        check_images_exist,
        load_manifest,
        load_split,
        select_split,
    )
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
    predict, info = load()
    probs: list[np.ndarray] = []
    paths = list(df["path"])
    for s in tqdm(range(0, len(paths), args.batch_size), desc="classify", unit="batch", file=sys.stderr, disable=len(paths) <= args.batch_size):
        grays = [read_xray(p) for p in paths[s : s + args.batch_size]]
        probs.append(np.asarray(predict(grays))[:, CLASS_NAMES.index("covid")])
    p = np.concatenate(probs)
    out = pd.DataFrame({"id": df["id"].to_numpy(), "label": df["label"].to_numpy(), "prob_covid": np.round(p, 6), "pred": np.where(p >= 0.5, "covid", "control")})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(args.out, index=False, lineterminator="\n")
    print(json.dumps({"out": str(args.out), "n": len(out), **info, "predicted_covid": int((p >= 0.5).sum())}))
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    from ..methods import restorer_from_dir

    def load() -> tuple[Callable[[list], Any], dict[str, Any]]:
        r = restorer_from_dir(args.weights, device=args.device, need_classifier=True)
        return (lambda grays: r.classify(grays, batch_size=args.batch_size)), {"model": r.model_name, "version": r.config.get("version")}

    return classify_manifest(args, load)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..metrics import evaluate_predictions, markdown_report

    result = evaluate_predictions(args.preds, args.manifest, threshold=args.threshold, n_boot=args.bootstrap, seed=args.seed)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(markdown_report(result) if args.markdown else text)
    return 0
