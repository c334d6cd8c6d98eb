"""Evaluation of the lung U-Net on a manifest split: Dice/IoU per image, mean with a 95% bootstrap CI, the
10th percentile, per source, and (optionally) mask agreement between original and R2C-restored images.

Headline figures use human (v7labs) masks only; model-made (lungVAE) masks are reported apart, as agreement with
another model, never as accuracy. The bootstrap resamples whole patient groups (``group_id``), since images of
one patient are not independent.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from ..errors import ManifestError
from .data import load_pair, read_mask_manifest
from .postprocess import dice, iou
from .predict import LungSegmenter

log = logging.getLogger(__name__)

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20261123


def bootstrap_ci(values: Sequence[float], groups: Sequence[Any] | None = None, n: int = BOOTSTRAP_RESAMPLES,
                 seed: int = BOOTSTRAP_SEED, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean; resamples whole ``groups`` (clusters) when given."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return (float("nan"), float("nan"))
    g = np.asarray(groups if groups is not None else np.arange(v.size))
    uniq, inv = np.unique(g, return_inverse=True)
    sums = np.bincount(inv, weights=v, minlength=uniq.size)
    counts = np.bincount(inv, minlength=uniq.size).astype(np.float64)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, uniq.size, size=(n, uniq.size))
    means = sums[pick].sum(axis=1) / counts[pick].sum(axis=1)
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [a, 1.0 - a])
    return (float(lo), float(hi))


def summarise(values: Sequence[float], groups: Sequence[Any] | None = None) -> dict[str, Any]:
    """Mean, 95% bootstrap CI, 10th percentile, median, min and count of a list of scores."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {"n": 0}
    lo, hi = bootstrap_ci(v, groups)
    return {
        "n": int(v.size), "mean": round(float(v.mean()), 4), "ci95": [round(lo, 4), round(hi, 4)],
        "p10": round(float(np.percentile(v, 10)), 4), "median": round(float(np.median(v)), 4), "min": round(float(v.min()), 4),
    }


def select_rows(manifest: str | Path, split: str | None, ids: Iterable[str] | None = None) -> pd.DataFrame:
    """Masked manifest rows of ``split`` (``None`` or ``"all"``: every split), optionally restricted to ``ids``."""
    df = read_mask_manifest(manifest)
    if split not in (None, "all"):
        known = sorted(df["split"].astype(str).unique())
        if split not in known:
            raise ManifestError(f"split {split!r} has no masked rows (known: {', '.join(known)})")
        df = df[df["split"] == split]
    if ids is not None:
        df = df[df["id"].isin(set(ids))]
    if df.empty:
        raise ManifestError("no masked rows to evaluate")
    return df.reset_index(drop=True)


def per_image_scores(segmenter: LungSegmenter, rows: pd.DataFrame, progress: Callable[[Iterable], Iterable] | None = None,
                     restorer: Any | None = None, passes: int = 1) -> list[dict[str, Any]]:
    """Dice/IoU of each row's predicted mask against its reference mask (and restore agreement if ``restorer``)."""
    records = rows.to_dict("records")
    it = progress(records) if progress else records
    out = []
    for row in it:
        img, ref = load_pair(row)
        pred = segmenter.mask(img)
        rec = {"id": row["id"], "source": row["source"], "mask_source": row["mask_source"], "group_id": row["group_id"],
               "dice": round(dice(pred, ref), 5), "iou": round(iou(pred, ref), 5)}
        if restorer is not None:
            restored = restorer.restore(img, passes=passes).image
            pred_r = segmenter.mask(restored)
            rec["agreement_dice"] = round(dice(pred, pred_r), 5)
            rec["restored_dice"] = round(dice(pred_r, ref), 5)
        out.append(rec)
    return out


def _block(recs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return summarise([r[key] for r in recs], [r["group_id"] for r in recs])


def summarise_records(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Headline (human masks) and per-source / model-mask summaries of :func:`per_image_scores` output."""
    human = [r for r in records if r["mask_source"] == "human"]
    model = [r for r in records if r["mask_source"] != "human"]
    res: dict[str, Any] = {
        "n_images": len(records),
        "human": {"dice": _block(human, "dice"), "iou": _block(human, "iou")},
        "per_source": {},
    }
    for src in sorted({r["source"] for r in human}):
        sub = [r for r in human if r["source"] == src]
        res["per_source"][src] = {"dice": _block(sub, "dice"), "iou": _block(sub, "iou")}
    if model:
        res["model_masks"] = {"note": "agreement with lungVAE model masks, not ground truth",
                              "dice": _block(model, "dice"), "iou": _block(model, "iou")}
    if records and "agreement_dice" in records[0]:
        res["restore_agreement"] = {
            "note": "Dice between the mask on the original and on the R2C-restored image (all evaluated images)",
            "dice": _block(records, "agreement_dice"),
            "restored_vs_human_dice": _block(human, "restored_dice"),
        }
    return res


def evaluate(segmenter: LungSegmenter, manifest: str | Path, split: str | None = "test", *, ids: Iterable[str] | None = None,
             progress: Callable[[Iterable], Iterable] | None = None, restorer: Any | None = None, passes: int = 1) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Evaluate on the masked rows of ``split``: (summary dict, per-image records)."""
    rows = select_rows(manifest, split, ids)
    records = per_image_scores(segmenter, rows, progress=progress, restorer=restorer, passes=passes)
    summary = summarise_records(records)
    summary["split"] = split or "all"
    return summary, records
