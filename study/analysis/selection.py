"""Selection ratios with Wilson, two-way (reader x case) bootstrap and two-way clustered intervals.

A method's selection ratio is the share of the queries showing it in which it was picked (with every method on
screen in every query, simply its share of the votes). Only primary votes count (answered first showings), so a
repeat read never counts twice. "Restored preferred" is the share of queries showing the original in which the
reader picked anything but the original.

Three intervals per ratio: Wilson (treats every vote as independent), the two-way bootstrap (``bootstrap``), and
a logistic GLM with standard errors clustered on reader and on case (``models.glm_two_way``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import proportion_confint

from .bootstrap import percentile_interval, ratio_replicates
from .data import ChoiceData, restored_outcome
from .models import glm_two_way


def wilson_many(count: np.ndarray, nobs: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score intervals (statsmodels ``proportion_confint``) for arrays of counts; NaN where ``nobs`` is 0.
    Counts may be fractional (the "no preference" sensitivity analysis)."""
    count, nobs = np.asarray(count, float), np.asarray(nobs, float)
    lo, hi = np.full(count.shape, np.nan), np.full(count.shape, np.nan)
    ok = nobs > 0
    if ok.any():
        lo[ok], hi[ok] = proportion_confint(count[ok], nobs[ok], alpha=alpha, method="wilson")
    return lo, hi


def wilson(count: int, nobs: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for ``count`` successes out of ``nobs`` (NaN, NaN when ``nobs`` is 0)."""
    if nobs <= 0:
        return float("nan"), float("nan")
    lo, hi = proportion_confint(count, nobs, alpha=1.0 - level, method="wilson")
    return float(lo), float(hi)


def selection_ratios(data: ChoiceData, *, rng: np.random.Generator, n_boot: int, level: float = 0.95) -> list[dict]:
    """One row per method: chosen, shown, ratio, chance level, Wilson, two-way bootstrap and clustered intervals."""
    chosen = data.chosen.sum(axis=0)
    shown = data.shown.sum(axis=0)
    reps = ratio_replicates(rng, data.reader, data.case, data.chosen, data.shown, n_boot) if data.n_queries else None
    b_lo, b_hi = percentile_interval(reps, level) if reps is not None else ([np.nan] * len(data.methods),) * 2
    n_slots = data.n_slots.astype(float)
    rows = []
    for j, method in enumerate(data.methods):
        w_lo, w_hi = wilson(int(chosen[j]), int(shown[j]), level)
        on = data.shown[:, j]
        c_lo, c_hi = _clustered(data.chosen[on, j], data.reader[on], data.case[on], level)
        rows.append({
            "method": method, "chosen": int(chosen[j]), "shown": int(shown[j]),
            "ratio": float(chosen[j] / shown[j]) if shown[j] else float("nan"),
            "chance": float(np.mean(1.0 / n_slots[on])) if on.any() else float("nan"),
            "wilson_low": w_lo, "wilson_high": w_hi,
            "boot_low": float(b_lo[j]), "boot_high": float(b_hi[j]),
            "cluster_low": c_lo, "cluster_high": c_hi,
        })
    return rows


def _clustered(y: np.ndarray, reader: np.ndarray, case: np.ndarray, level: float) -> tuple[float, float]:
    """Interval from the logistic GLM with reader- and case-clustered SE (NaN when it cannot be fitted)."""
    res = glm_two_way(pd.DataFrame({"y": y.astype(float), "reader": reader, "case": case}), level=level)
    return (float("nan"), float("nan")) if "error" in res else (res["low"], res["high"])


def restored_preferred(data: ChoiceData, original: str, *, rng: np.random.Generator, n_boot: int,
                       level: float = 0.95) -> dict | None:
    """P(chosen != original) among queries that showed the original, with the three intervals (None: no original)."""
    out = restored_outcome(data, original)
    if out is None or not out[0].any():
        return None
    mask, y = out
    k, n = int(y[mask].sum()), int(mask.sum())
    reps = ratio_replicates(rng, data.reader[mask], data.case[mask], y[mask], np.ones(n), n_boot)
    b_lo, b_hi = percentile_interval(reps, level)
    w_lo, w_hi = wilson(k, n, level)
    c_lo, c_hi = _clustered(y[mask], data.reader[mask], data.case[mask], level)
    return {
        "restored_chosen": k, "queries": n, "ratio": k / n,
        "chance": float(np.mean((data.n_slots[mask] - 1) / data.n_slots[mask])),
        "wilson_low": w_lo, "wilson_high": w_hi, "boot_low": float(b_lo[0]), "boot_high": float(b_hi[0]),
        "cluster_low": c_lo, "cluster_high": c_hi,
    }
