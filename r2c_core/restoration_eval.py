"""Does a restorer keep the anatomy, change the image, and not damage a degraded copy? (the issue-13 acceptance).

``python -m r2c_core restoration-eval --weights weights/r2c-op-q3 --split test --passes 3 --limit 60`` runs the
:class:`~r2c_core.inference.Restorer` exactly as the app and the study do (full input size in and out) on
manifest images and reports, per image and averaged:

* ``ssim_to_original``: SSIM (scikit-image, data range 255) of the restored image to the original; the resizing
  round trip alone (``passes=0``, what the study shows as the original) is ``ssim_roundtrip``;
* ``change``: mean absolute grey-level difference between the restored image and the round trip, i.e. what the
  generator changed beyond the resizing (an identity generator gives 0);
* on a degraded copy (Gaussian blur of 1.5 px at the 256-px working scale, i.e. ``1.5 * max(H, W) / 256`` px at
  full size, plus Gaussian noise of 8 grey levels, seeded per image): PSNR to the original after the global
  grey-level fit of :func:`~r2c_core.training.restval.fitted_psnr` for the degraded input (``psnr_degraded``),
  its round trip (``psnr_degraded_roundtrip``) and its restoration (``psnr_restored``); ``psnr_gain`` =
  restored - degraded. The same three figures at the working size (256 x 256, where the generator works and no
  resizing loss enters) are ``*_256``.

Images are taken from a manifest split (test = never seen in training), spread evenly over the id-sorted rows of
each source so that every source is represented; ``--limit`` caps the count.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
from skimage.metrics import structural_similarity

from .imageio import read_xray
from .inference import Restorer, to_working_gray
from .training.restval import BLUR_SIGMA, degrade, fitted_psnr

log = logging.getLogger(__name__)

WORK = 256


def spread_rows(rows: pd.DataFrame, limit: int) -> pd.DataFrame:
    """At most ``limit`` rows, spread evenly over each source's id-sorted rows (deterministic)."""
    rows = rows.sort_values("id", kind="mergesort")
    if limit <= 0 or len(rows) <= limit:
        return rows.reset_index(drop=True)
    groups = list(rows.groupby("source", sort=True))
    share = {s: max(1, round(limit * len(g) / len(rows))) for s, g in groups}
    parts = []
    for s, g in groups:
        k = min(len(g), share[s])
        idx = np.linspace(0, len(g) - 1, k).round().astype(int)
        parts.append(g.iloc[np.unique(idx)])
    return pd.concat(parts).sort_values("id", kind="mergesort").head(limit).reset_index(drop=True)


def degrade_full(gray: np.ndarray, seed: int) -> np.ndarray:
    """Blur (1.5 px at the working scale) + Gaussian noise (8 grey levels) at the image's own size; uint8."""
    return degrade(gray[None], seed, blur_sigma=BLUR_SIGMA * max(gray.shape) / WORK)[0]


def evaluate_image(restorer: Restorer, gray: np.ndarray, passes: int, seed: int) -> dict[str, float]:
    rt, res = (r.image for r in (restorer.restore(gray, passes=0), restorer.restore(gray, passes=passes)))
    deg = degrade_full(gray, seed)
    deg_rt, deg_res = (r.image for r in (restorer.restore(deg, passes=0), restorer.restore(deg, passes=passes)))
    # at the working size: the generator's own scale (the resizing loss does not enter)
    g256 = to_working_gray(gray, WORK)
    d256 = degrade(g256[None], seed)[0]
    r256 = restorer.restore(d256, passes=passes).image
    c256 = restorer.restore(g256, passes=passes).image
    f = lambda a, b: float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())  # noqa: E731
    return {
        "ssim_to_original": float(structural_similarity(res, gray, data_range=255)),
        "ssim_roundtrip": float(structural_similarity(rt, gray, data_range=255)),
        "change": f(res, rt),
        "change_to_original": f(res, gray),
        "roundtrip_change": f(rt, gray),
        "psnr_degraded": fitted_psnr(deg, gray),
        "psnr_degraded_roundtrip": fitted_psnr(deg_rt, gray),
        "psnr_restored": fitted_psnr(deg_res, gray),
        "psnr_gain": fitted_psnr(deg_res, gray) - fitted_psnr(deg, gray),
        "ssim_to_original_256": float(structural_similarity(c256, g256, data_range=255)),
        "change_256": f(c256, g256),
        "psnr_degraded_256": fitted_psnr(d256, g256),
        "psnr_restored_256": fitted_psnr(r256, g256),
        "psnr_gain_256": fitted_psnr(r256, g256) - fitted_psnr(d256, g256),
    }


def evaluate(restorer: Restorer, rows: pd.DataFrame, passes: int = 3, seed: int = 0,
             progress: Callable[[Iterable], Iterable] = lambda it: it) -> dict[str, Any]:
    """Per-image metrics for ``rows`` (manifest rows with ``id``, ``source``, ``path``) and their means."""
    per = []
    for i, row in enumerate(progress(list(rows.itertuples(index=False)))):
        gray = read_xray(row.path)
        m = evaluate_image(restorer, gray, passes, seed * 100_003 + i)
        per.append({"id": row.id, "source": row.source, **m})
    df = pd.DataFrame(per)
    keys = [c for c in df.columns if c not in ("id", "source")]
    summary = {"n": len(df), "passes": passes, "model": restorer.model_name, "version": restorer.config.get("version"),
               "mean": {k: float(df[k].mean()) for k in keys},
               "per_source": {s: {k: float(g[k].mean()) for k in ("ssim_to_original", "change", "psnr_gain", "psnr_gain_256")} | {"n": len(g)}
                              for s, g in df.groupby("source")}}
    return {"summary": summary, "per_image": per}
