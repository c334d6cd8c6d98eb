"""CLI: lung segmentation commands ``train-seg``, ``segment`` and ``segment-eval``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import ImageLoadError, R2CError
from ..imageio import list_images, read_xray

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-seg", help="train the lung U-Net (DenseNet-121 encoder)")
    p.add_argument("--config", type=Path, help="training config JSON (e.g. configs/lung-unet-cpu.json)")
    p.add_argument("--out", type=Path, help="run folder (default runs/<config name>, or the --resume folder)")
    p.add_argument("--epochs", type=int, help="override train.epochs")
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (smoke tests)")
    p.add_argument("--max-minutes", type=float, help="override train.max_minutes, the wall-clock budget (0: none)")
    p.add_argument("--resume", type=Path, help="continue a run folder from its last/ checkpoint")
    p.add_argument("--no-test", action="store_true", help="skip the final test-split evaluation")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("segment", help="lung masks and contour overlays for an image or a folder")
    p.add_argument("--weights", type=Path, help="lung U-Net checkpoint folder (default weights/lung-unet)")
    p.add_argument("--input", type=Path, required=True, help="image file or folder of images")
    p.add_argument("--out", type=Path, required=True, help="output folder (<name>_mask.png, <name>_overlay.png)")
    p.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    p.set_defaults(func=cmd_segment)

    p = sub.add_parser("segment-eval", help="Dice/IoU of the lung U-Net on a manifest split (JSON)")
    p.add_argument("--weights", type=Path, help="lung U-Net checkpoint folder (default weights/lung-unet)")
    p.add_argument("--manifest", type=Path, help="MANIFEST.csv (default: the R2C_DATA folder's)")
    p.add_argument("--split", default="test", help="split to evaluate (train, test or all; default test)")
    p.add_argument("--per-image", type=Path, help="also write per-image scores to this CSV")
    p.add_argument("--restore-weights", type=Path, help="R2C checkpoint: also report original-vs-restored mask agreement")
    p.add_argument("--passes", type=int, default=1, help="restoration passes (with --restore-weights)")
    p.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    p.set_defaults(func=cmd_segment_eval)


def cmd_train(args: argparse.Namespace) -> int:
    from ..segmentation.train import train

    if args.config is None and args.resume is None:
        raise R2CError("give --config FILE (or --resume DIR)")
    if args.max_steps is not None and args.max_steps < 1:
        raise R2CError("--max-steps must be >= 1")
    result = train(args.config, out=args.out, epochs=args.epochs, max_steps=args.max_steps, resume=args.resume,
                   evaluate_on_test=not args.no_test, max_minutes=args.max_minutes)
    print(json.dumps(result, indent=2))
    return 0


def _save_png(path: Path, arr: Any) -> None:
    Image.fromarray(arr).save(path, format="PNG")


def cmd_segment(args: argparse.Namespace) -> int:
    from ..segmentation import LungSegmenter, overlay

    files = list_images(args.input)
    seg = LungSegmenter.from_dir(args.weights, device=args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    results = []
    for f in files:
        try:
            gray = read_xray(f)
        except ImageLoadError as exc:
            if len(files) == 1:
                raise
            failures.append(str(exc))
            log.info("skipped: %s", exc)
            continue
        mask = seg.mask(gray)
        _save_png(args.out / f"{f.stem}_mask.png", mask.astype("uint8") * 255)
        _save_png(args.out / f"{f.stem}_overlay.png", overlay(gray, mask))
        results.append({"file": str(f), "lung_fraction": round(float(mask.mean()), 4)})
    print(json.dumps({"out": str(args.out), "images": results}, indent=2))
    if failures:
        raise ImageLoadError(f"{len(failures)} of {len(files)} images could not be read (first: {failures[0]})")
    return 0


def _restorer(weights: Path) -> tuple[Any | None, str | None]:
    """(restorer, None) or (None, reason to skip)."""
    try:
        from .. import inference  # lazy: the R2C model is heavy and may not exist yet
    except ImportError as exc:
        return None, f"r2c_core.inference not available ({exc})"
    if not (weights / "config.json").is_file():
        return None, f"no R2C weights in {weights}"
    return inference.Restorer.from_dir(weights), None


def cmd_segment_eval(args: argparse.Namespace) -> int:
    import pandas as pd
    from tqdm import tqdm

    from ..paths import manifest_path
    from ..segmentation import LungSegmenter
    from ..segmentation.evaluate import evaluate

    if args.passes < 1:
        raise R2CError("--passes must be >= 1")
    seg = LungSegmenter.from_dir(args.weights, device=args.device)
    restorer, skipped = (None, None)
    if args.restore_weights is not None:
        restorer, skipped = _restorer(args.restore_weights)
        if skipped:
            print(f"warning: restore agreement skipped: {skipped}", file=sys.stderr)
    progress = (lambda it: tqdm(list(it), desc="segment-eval", leave=False, file=sys.stderr))
    summary, records = evaluate(seg, args.manifest or manifest_path(), split=None if args.split == "all" else args.split,
                                progress=progress, restorer=restorer, passes=args.passes)
    summary["weights"] = str(args.weights or "weights/lung-unet")
    if skipped:
        summary["restore_agreement"] = {"skipped": skipped}
    if args.per_image:
        pd.DataFrame(records).to_csv(args.per_image, index=False)
    print(json.dumps(summary, indent=2))
    return 0
