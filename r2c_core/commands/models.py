"""CLI: ``params`` (parameter counts of every registered model), ``restore`` (restore X-ray files) and
``restoration-eval`` (keeps the anatomy? changes the image? spares a degraded copy?)."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from ..errors import ImageLoadError, R2CError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("params", help="print JSON {model: {generator: N, discriminator: M}} for every registered model")
    p.set_defaults(func=cmd_params)

    p = sub.add_parser("restore", help="restore X-ray images with a trained R2C-GAN generator")
    p.add_argument("--weights", required=True, type=Path, help="generator checkpoint folder (model.safetensors + config.json)")
    p.add_argument("--input", required=True, type=Path, help="an image file (PNG/JPEG/TIFF/DICOM) or a folder of them")
    p.add_argument("--out", required=True, type=Path, help="output folder for <name>_restored.png and predictions.csv")
    p.add_argument("--passes", type=int, default=1, help="restoration passes (the paper shows 1 and 3)")
    p.add_argument("--save-passes", action="store_true", help="also write every intermediate pass as <name>_passK.png")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (CUDA when present)")
    p.add_argument("--batch-size", type=int, default=8)
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("restoration-eval", help="does a restorer keep the anatomy, change the image, and spare a degraded copy? (JSON)")
    p.add_argument("--weights", required=True, type=Path, help="generator checkpoint folder")
    p.add_argument("--manifest", type=Path, default=None, help="manifest CSV (default: the shared data folder, R2C_DATA)")
    p.add_argument("--split", default="test", help="test (default; never seen in training), train, val (A/B split file) or all")
    p.add_argument("--domain", choices=("A", "B"), help="keep one quality domain of the A/B split file")
    p.add_argument("--passes", type=int, default=3, help="restoration passes (the study uses 3)")
    p.add_argument("--limit", type=int, default=60, help="at most this many images, spread over the sources (0 = all)")
    p.add_argument("--seed", type=int, default=0, help="degradation noise seed")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--out", type=Path, help="also write the full JSON (summary + per image) here")
    p.set_defaults(func=cmd_restoration_eval)


def cmd_params(args: argparse.Namespace) -> int:
    from ..models import build_discriminator, build_generator, count_params, list_models

    out = {n: {"generator": count_params(build_generator(n)), "discriminator": count_params(build_discriminator(n))} for n in list_models()}
    print(json.dumps(out, indent=2))
    return 0


def cmd_restoration_eval(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..data import (
        SPLIT_FILE,
        check_images_exist,
        load_manifest,
        load_split,
        select_split,
    )
    from ..methods import restorer_from_dir
    from ..restoration_eval import evaluate, spread_rows

    if args.passes < 1:
        raise R2CError(f"--passes must be >= 1, got {args.passes}")
    rows = select_split(load_manifest(args.manifest), args.split)
    if args.domain:
        split = load_split(SPLIT_FILE)
        rows = rows[rows["id"].isin(set(split.loc[split["domain"] == args.domain, "id"]))]
    rows = spread_rows(rows, args.limit)
    if rows.empty:
        raise R2CError(f"no images in split {args.split!r}")
    check_images_exist(rows)
    restorer = restorer_from_dir(args.weights, device=args.device)
    result = evaluate(restorer, rows, passes=args.passes, seed=args.seed,
                      progress=lambda it: tqdm(it, desc="restoration-eval", unit="img", file=sys.stderr))
    result["summary"].update({"weights": str(args.weights), "split": args.split, "domain": args.domain})
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["summary"], indent=2))
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..imageio import list_images, png_bytes, read_xray
    from ..inference import Restorer

    if args.passes < 1:
        raise R2CError(f"--passes must be >= 1, got {args.passes}")
    files = list_images(args.input)
    restorer = Restorer.from_dir(args.weights, device=args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    rows = []
    for f in tqdm(files, desc="restore", unit="img", disable=len(files) < 2, file=sys.stderr):
        try:
            gray = read_xray(f)
        except ImageLoadError as exc:
            if len(files) == 1:
                raise
            failures.append(str(exc))
            print(f"skipped: {exc}", file=sys.stderr)
            continue
        res = restorer.restore(gray, passes=args.passes)
        (args.out / f"{f.stem}_restored.png").write_bytes(png_bytes(res.image))
        if args.save_passes:
            for k, im in enumerate(res.passes_images, start=1):
                (args.out / f"{f.stem}_pass{k}.png").write_bytes(png_bytes(im))
        rows.append({"file": f.name, "prob_covid": f"{res.prob_covid:.6f}", "pred": "covid" if res.prob_covid >= 0.5 else "control"})
    with open(args.out / "predictions.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["file", "prob_covid", "pred"])
        w.writeheader()
        w.writerows(rows)
    print(json.dumps({"restored": len(rows), "failed": len(failures), "out": str(args.out), "model": restorer.model_name, "passes": args.passes, "device": str(restorer.device)}))
    if failures:
        raise R2CError(f"{len(failures)} of {len(files)} input file(s) could not be read (first: {failures[0]})")
    return 0
