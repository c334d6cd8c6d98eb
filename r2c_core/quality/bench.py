"""The restoration benchmark: any set of methods over a split, scored with and without a reference.

``python -m r2c_core restoration-bench --split test`` (``--quick`` for a small run). Everything happens at the
working size (256 x 256): the images are resized there exactly as the generators' input is, so resizing never
enters a comparison.

Methods: ``identity`` (the input unchanged: the floor every gain is measured from), the classical methods
(:mod:`r2c_core.classical`) and bundled R2C-GAN generators as ``<model>-x<passes>`` (several pass counts of one
model share one run: ``op-q3-x1`` is the first pass of ``op-q3-x3``).

1. **Full reference** on the degradation suite (:mod:`.degrade`): the high-quality (domain B) images of the split,
   each degraded by every (degradation, severity) and restored by every method; PSNR, SSIM, MS-SSIM and GMSD of
   the result against the clean image, and the gain over the degraded input (signed so that positive is better).
2. **No reference** on real images of both quality domains (A low, B high): PIQE, BRISQUE, entropy, blur effect,
   noise sigma, and the lungs' CNR and EME inside the U-Net's lung mask of the original image (the same region for
   every method).
3. **Preservation** on the same real images: SSIM between original and result, the Dice overlap of the lung masks
   found on each, and the COVID probability of a classifier (a bundled generator's class head, first pass) on the
   original and on the result: mean absolute change and the share of images whose decision at 0.5 flips.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd

from .. import classical
from ..errors import R2CError
from ..imageio import read_xray
from ..methods import bundled_models, load_restorer, parse_method
from ..tensors import to_working_gray
from . import degrade as D
from . import measures as M

log = logging.getLogger(__name__)

IDENTITY = "identity"
Progress = Callable[[Iterable], Iterable]


@dataclass(frozen=True)
class BenchConfig:
    split: str = "test"
    methods: tuple[str, ...] = ()
    #: degraded (domain B) images, and real images per domain for the no-reference part
    limit: int = 30
    limit_real: int = 20
    seed: int = 0
    degradations: tuple[str, ...] = D.DEGRADATIONS
    severities: tuple[int, ...] = D.SEVERITIES
    no_reference: bool = True
    classifier: str | None = "op-q3"
    batch_size: int = 16
    device: str | None = "cpu"
    weights_root: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def default_methods(root: Path | None = None, passes: tuple[int, ...] = (1, 3)) -> list[str]:
    """identity, the classical methods, and every bundled generator at each pass count."""
    return [IDENTITY, *classical.NAMES] + [f"{m}-x{p}" for m in bundled_models(root) for p in passes]


class MethodRunner:
    """Runs a list of methods on a batch of working-size images, sharing one generator run per model."""

    def __init__(self, methods: list[str], root: Path | None, device: str | None, batch_size: int = 16) -> None:
        if not methods:
            raise R2CError("no methods to benchmark")
        self.methods = list(methods)
        self.batch_size = batch_size
        self.passes: dict[str, int] = defaultdict(int)
        for m in self.methods:
            if m == IDENTITY:
                continue
            model, p = parse_method(m)
            if model == "original":
                raise R2CError("'original' is the study's name for the unchanged image; the benchmark calls it 'identity'")
            self.passes[model] = max(self.passes[model], p)
        self.restorers = {model: load_restorer(model, root, device) for model in self.passes}

    def run(self, images: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
        """``{method: [result per image]}`` (uint8, same size as each input)."""
        out: dict[str, list[np.ndarray]] = {}
        per_model = {model: r.restore_batch(images, passes=self.passes[model], batch_size=self.batch_size)
                     for model, r in self.restorers.items()}
        for m in self.methods:
            if m == IDENTITY:
                out[m] = [im.copy() for im in images]
                continue
            model, p = parse_method(m)
            out[m] = [res.passes_images[p - 1] if len(res.passes_images) >= p else res.image for res in per_model[model]]
        return out


def pick_rows(rows: pd.DataFrame, domain: str, limit: int) -> pd.DataFrame:
    from ..restoration_eval import spread_rows

    return spread_rows(rows[rows["domain"] == domain], limit)


def _gain(measure: str, restored: float, degraded: float) -> float:
    return M.DIRECTION[measure] * (restored - degraded)


def full_reference_rows(runner: MethodRunner, images: list[tuple[str, np.ndarray]], cfg: BenchConfig,
                        progress: Progress = lambda it: it) -> list[dict[str, Any]]:
    """One row per (image, degradation, severity, method) with the four measures and their gains."""
    rows = []
    pairs = D.suite(cfg.degradations, cfg.severities)
    for image_id, clean in progress(images):
        degraded = [D.apply(clean, d, s, cfg.seed, image_id) for d, s in pairs]
        results = runner.run(degraded)
        for k, (d, s) in enumerate(pairs):
            base = M.full_reference(degraded[k], clean)
            for m in runner.methods:
                got = base if m == IDENTITY else M.full_reference(results[m][k], clean)
                row = {"id": image_id, "degradation": d, "severity": s, "method": m, **got}
                row.update({f"{q}_degraded": base[q] for q in M.FULL_REFERENCE})
                row.update({f"{q}_gain": _gain(q, got[q], base[q]) for q in M.FULL_REFERENCE})
                rows.append(row)
    return rows


def real_image_rows(runner: MethodRunner, images: list[tuple[str, str, np.ndarray]], segmenter: Any | None,
                    classifier: Any | None, progress: Progress = lambda it: it) -> list[dict[str, Any]]:
    """One row per (real image, method): no-reference measures, preservation and classifier probabilities."""
    rows = []
    for image_id, domain, gray in progress(images):
        results = runner.run([gray])
        outs = [results[m][0] for m in runner.methods]
        masks = segmenter.masks([gray, *outs]) if segmenter is not None else [None] * (len(outs) + 1)
        probs = classifier.classify([gray, *outs])[:, 1] if classifier is not None else np.full(len(outs) + 1, np.nan)
        for k, m in enumerate(runner.methods):
            row = {"id": image_id, "domain": domain, "method": m, **M.no_reference(outs[k], masks[0])}
            row.update({f"keep_{q}": v for q, v in M.preservation(gray, outs[k], masks[0], masks[k + 1]).items()})
            row.update({"p_covid_original": float(probs[0]), "p_covid": float(probs[k + 1])})
            rows.append(row)
    return rows


def summarise(fr: pd.DataFrame, nr: pd.DataFrame) -> dict[str, Any]:
    """Means per method (and per degradation and severity), in method order."""
    out: dict[str, Any] = {}
    if not fr.empty:
        order = list(dict.fromkeys(fr["method"]))
        cols = [*M.FULL_REFERENCE, *(f"{q}_gain" for q in M.FULL_REFERENCE)]
        by = fr.groupby(["method", "degradation", "severity"], sort=False)[cols].mean()
        out["full_reference"] = {m: {f"{d}-{s}": by.loc[(m, d, s)].to_dict() for (mm, d, s) in by.index if mm == m} for m in order}
        overall = fr.groupby("method", sort=False)[cols].mean()
        per_deg = fr.groupby(["method", "degradation"], sort=False)[["psnr_gain", "ssim_gain"]].mean()
        out["full_reference_overall"] = {m: overall.loc[m].to_dict() for m in order}
        out["full_reference_per_degradation"] = {m: {d: per_deg.loc[(m, d)].to_dict() for (mm, d) in per_deg.index if mm == m} for m in order}
    if not nr.empty:
        order = list(dict.fromkeys(nr["method"]))
        known = nr["p_covid"].notna() & nr["p_covid_original"].notna()  # no classifier: no flips to count
        flip = ((nr["p_covid"] >= 0.5) != (nr["p_covid_original"] >= 0.5)).astype(float).where(known)
        nr = nr.assign(p_change=(nr["p_covid"] - nr["p_covid_original"]).abs(), flip=flip)
        cols = [*M.NO_REFERENCE, "keep_ssim", "keep_dice", "p_change", "flip"]
        by = nr.groupby(["method", "domain"], sort=False)[cols].mean()
        out["no_reference"] = {m: {dom: by.loc[(m, dom)].to_dict() for (mm, dom) in by.index if mm == m} for m in order}
    return out


def run_bench(manifest_rows: pd.DataFrame, cfg: BenchConfig, progress: Callable[[str], Progress] | None = None) -> dict[str, Any]:
    """The whole benchmark on manifest rows that carry a ``domain`` column (see module doc)."""
    root = Path(cfg.weights_root) if cfg.weights_root else None
    methods = list(cfg.methods) or default_methods(root)
    runner = MethodRunner(methods, root, cfg.device, cfg.batch_size)
    prog = progress or (lambda _desc: (lambda it: it))
    t0 = time.perf_counter()

    def load(rows: pd.DataFrame) -> list[tuple[str, str, np.ndarray]]:
        return [(r.id, r.domain, to_working_gray(read_xray(r.path))) for r in rows.itertuples(index=False)]

    clean = load(pick_rows(manifest_rows, "B", cfg.limit))
    if not clean:
        raise R2CError(f"no high-quality (domain B) images in split {cfg.split!r}")
    fr = pd.DataFrame(full_reference_rows(runner, [(i, g) for i, _, g in clean], cfg, prog("degraded")))
    nr = pd.DataFrame()
    if cfg.no_reference and cfg.limit_real > 0:
        real = load(pd.concat([pick_rows(manifest_rows, dom, cfg.limit_real) for dom in ("A", "B")]))
        segmenter = _segmenter(cfg.device)
        clf = runner.restorers.get(cfg.classifier) or _classifier(cfg.classifier, root, cfg.device)  # one load per model
        nr = pd.DataFrame(real_image_rows(runner, real, segmenter, clf, prog("real")))
    summary = summarise(fr, nr)
    meta = {k: v for k, v in asdict(cfg).items() if k != "extra"} | cfg.extra
    meta.update({"methods": methods, "n_degraded_images": len(clean), "n_real_images": int(nr["id"].nunique()) if not nr.empty else 0,
                 "seconds": round(time.perf_counter() - t0, 1),
                 "versions": {m: r.config.get("version") for m, r in runner.restorers.items()}})
    return {"config": meta, "summary": summary, "full_reference": fr, "no_reference": nr}


def _segmenter(device: str | None):
    from ..segmentation import LungSegmenter

    try:
        return LungSegmenter.from_dir(None, device=device)
    except R2CError as exc:
        log.warning("no lung segmentation (CNR, EME and mask Dice are skipped): %s", exc)
        return None


def _classifier(model: str | None, root: Path | None, device: str | None):
    if not model:
        return None
    try:
        return load_restorer(model, root, device)
    except R2CError as exc:
        log.warning("no classifier (COVID probabilities are skipped): %s", exc)
        return None


def nan_to_none(x: Any) -> Any:
    """JSON-safe: NaN and infinities become null, recursively."""
    if isinstance(x, dict):
        return {k: nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [nan_to_none(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
