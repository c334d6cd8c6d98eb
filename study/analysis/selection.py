"""Selection ratios with Wilson, two-way (reader x case) bootstrap and two-way clustered intervals.

A method's selection ratio is the share of the queries showing it in which it was picked (with every method on
screen in every query, simply its share of the votes). Only primary votes count (answered first showings), so a
repeat read never counts twice. "Restored preferred" is the share of queries showing the original in which the
reader picked anything but the original.

Three intervals per ratio: Wilson (treats every vote as independent), the two-way bootstrap (``bootstrap``), and
a logistic GLM with standard errors clustered on reader and on case (``models.glm_two_way``).

``clustered_ratio_intervals`` is the one reader-and-case interval for any pooled ratio (the dashboard's "overall"
rows use it too). Where a ratio is 0 or 1 (a method never, or always, picked) neither the bootstrap (every re-run
gives 0) nor the clustered GLM (cannot be fitted) says anything, so ``degenerate_interval`` gives a conservative
Clopper-Pearson interval on an *effective* number of votes instead: the votes divided by the design effect (how
much clustering inflates the variance) measured on the other, non-degenerate ratios of the same analysis, never
fewer than the number of clusters (readers, or cases when there is one reader); with nothing to measure it on,
the number of clusters itself. Such rows carry a note saying so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import beta as beta_dist
from statsmodels.stats.proportion import proportion_confint

from .bootstrap import percentile_interval, ratio_replicates
from .data import ChoiceData, restored_outcome
from .models import glm_two_way

#: How the clustered interval of a pooled ratio is labelled (tables, charts, exports).
BOOT_LABEL = "2-way bootstrap (readers x cases)"


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


def n_clusters(reader: np.ndarray, case: np.ndarray) -> int:
    """The clusters that limit what pooled votes can say: the readers, or the cases when there is one reader
    (the smaller count when both vary)."""
    n_r, n_c = int(np.unique(reader).size), int(np.unique(case).size)
    usable = [k for k in (n_r, n_c) if k >= 2]
    return min(usable) if usable else max(1, n_r * n_c)


def degenerate_interval(k: float, n: float, n_eff: float, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson interval for a ratio of 0 (``k`` = 0) or 1 (``k`` = ``n``) on ``n_eff`` effective votes."""
    a = (1.0 - level) / 2.0
    n_eff = max(float(n_eff), 1.0)
    if k <= 0:
        return 0.0, float(beta_dist.ppf(1.0 - a, 1.0, n_eff))
    return float(beta_dist.ppf(a, n_eff, 1.0)), 1.0


def design_effects(replicates: np.ndarray, ratio: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Bootstrap variance over the binomial variance ``p(1-p)/n`` per column (NaN where the ratio is 0 or 1)."""
    ratio, n = np.asarray(ratio, float), np.asarray(n, float)
    out = np.full(ratio.shape, np.nan)
    ok = (n > 0) & (ratio > 0) & (ratio < 1)
    if replicates.size and ok.any():
        var = np.nanvar(replicates[:, ok], axis=0, ddof=1)
        out[ok] = var / (ratio[ok] * (1.0 - ratio[ok]) / n[ok])
    return out


def effective_n(n: float, clusters: int, deff: float | None) -> float:
    """``n`` / design effect, between the number of clusters and ``n`` (the clusters when ``deff`` is unknown)."""
    if deff is None or not np.isfinite(deff):
        return float(min(n, clusters))
    return float(min(n, max(clusters, n / max(1.0, deff))))


def degenerate_note(n_eff: float, deff: float | None) -> str:
    how = (f"design effect {deff:.2f} of the other ratios" if deff is not None and np.isfinite(deff)
           else "no other ratio to measure clustering on, so one vote per cluster")
    return (f"ratio 0 or 1: no variation to bootstrap; conservative Clopper-Pearson interval on {n_eff:.1f} "
            f"effective votes ({how})")


def clustered_ratio_intervals(reader: np.ndarray, case: np.ndarray, numer: np.ndarray, denom: np.ndarray, *,
                              rng: np.random.Generator, n_boot: int, level: float = 0.95,
                              deff: float | None = None) -> dict:
    """Reader-and-case intervals for pooled ratios ``sum(numer[:, j]) / sum(denom[:, j])``: two-way bootstrap
    percentile intervals, and for ratios of 0 or 1 the conservative ``degenerate_interval`` (see the module doc).

    ``deff``: design effect to use for degenerate columns (default: the largest one measured on this call's
    non-degenerate columns). Returns arrays ``ratio``, ``low``, ``high``, ``deff`` (per column), lists ``method``
    and ``note`` (None where the bootstrap interval is used) and the bootstrap ``replicates``."""
    reader, case = np.asarray(reader), np.asarray(case)
    numer = np.asarray(numer, dtype=float).reshape(len(reader), -1)
    denom = np.asarray(denom, dtype=float).reshape(len(reader), -1)
    k, n = numer.sum(axis=0), denom.sum(axis=0)
    ratio = np.divide(k, n, out=np.full(k.shape, np.nan), where=n > 0)
    reps = ratio_replicates(rng, reader, case, numer, denom, n_boot) if len(reader) else np.zeros((0, k.size))
    lo, hi = percentile_interval(reps, level) if len(reps) else (np.full(k.size, np.nan),) * 2
    lo, hi = np.array(lo, dtype=float), np.array(hi, dtype=float)
    deffs = design_effects(reps, ratio, n) if len(reps) else np.full(k.size, np.nan)
    use = deff if deff is not None else (float(np.nanmax(deffs)) if np.isfinite(deffs).any() else None)
    methods, notes = [BOOT_LABEL] * k.size, [None] * k.size
    for j in range(k.size):
        if n[j] <= 0 or not (k[j] <= 1e-12 or k[j] >= n[j] - 1e-12):
            continue
        on = denom[:, j] > 0
        n_eff = effective_n(float(n[j]), n_clusters(reader[on], case[on]), use)
        lo[j], hi[j] = degenerate_interval(k[j], n[j], n_eff, level)
        methods[j] = f"Clopper-Pearson, {n_eff:.1f} effective votes"
        notes[j] = degenerate_note(n_eff, use)
    return {"ratio": ratio, "low": lo, "high": hi, "deff": deffs, "method": methods, "note": notes,
            "replicates": reps}


def selection_ratios(data: ChoiceData, *, rng: np.random.Generator, n_boot: int, level: float = 0.95) -> list[dict]:
    """One row per method: chosen, shown, ratio, chance level, Wilson, two-way bootstrap and clustered intervals.

    For a ratio of 0 or 1 both reader-and-case intervals are the conservative ``degenerate_interval`` and the row's
    ``note`` says so; ``cluster_note`` explains any other missing or repaired clustered interval."""
    chosen = data.chosen.sum(axis=0)
    shown = data.shown.sum(axis=0)
    if data.n_queries:
        boot = clustered_ratio_intervals(data.reader, data.case, data.chosen, data.shown, rng=rng, n_boot=n_boot,
                                         level=level)
    else:
        nan = np.full(len(data.methods), np.nan)
        boot = {"low": nan, "high": nan, "deff": nan, "note": [None] * len(data.methods)}
    n_slots = data.n_slots.astype(float)
    rows = []
    for j, method in enumerate(data.methods):
        w_lo, w_hi = wilson(int(chosen[j]), int(shown[j]), level)
        on = data.shown[:, j]
        if boot["note"][j] is not None:  # ratio 0 or 1: the same conservative interval for both
            c_lo, c_hi, c_note = float(boot["low"][j]), float(boot["high"][j]), boot["note"][j]
        else:
            c_lo, c_hi, c_note = _clustered(data.chosen[on, j], data.reader[on], data.case[on], level)
        rows.append({
            "method": method, "chosen": int(chosen[j]), "shown": int(shown[j]),
            "ratio": float(chosen[j] / shown[j]) if shown[j] else float("nan"),
            "chance": float(np.mean(1.0 / n_slots[on])) if on.any() else float("nan"),
            "wilson_low": w_lo, "wilson_high": w_hi,
            "boot_low": float(boot["low"][j]), "boot_high": float(boot["high"][j]),
            "cluster_low": c_lo, "cluster_high": c_hi,
            "design_effect": float(boot["deff"][j]), "note": boot["note"][j], "cluster_note": c_note,
        })
    return rows


def _clustered(y: np.ndarray, reader: np.ndarray, case: np.ndarray, level: float) -> tuple[float, float, str | None]:
    """Interval from the logistic GLM with reader- and case-clustered SE, and a note when it is missing (NaN) or
    its variance was repaired."""
    res = glm_two_way(pd.DataFrame({"y": y.astype(float), "reader": reader, "case": case}), level=level)
    if "error" in res:
        return float("nan"), float("nan"), f"no clustered interval: {res['error']}"
    notes = res.get("notes") or []
    return res["low"], res["high"], ("; ".join(notes) if notes else None)


def restored_preferred(data: ChoiceData, original: str, *, rng: np.random.Generator, n_boot: int,
                       level: float = 0.95, deff: float | None = None) -> dict | None:
    """P(chosen != original) among queries that showed the original, with the three intervals (None: no original).
    ``deff``: design effect for the conservative interval should the share be 0 or 1 (default: the number of
    clusters, see ``clustered_ratio_intervals``)."""
    out = restored_outcome(data, original)
    if out is None or not out[0].any():
        return None
    mask, y = out
    k, n = int(y[mask].sum()), int(mask.sum())
    boot = clustered_ratio_intervals(data.reader[mask], data.case[mask], y[mask], np.ones(n), rng=rng,
                                     n_boot=n_boot, level=level, deff=deff)
    w_lo, w_hi = wilson(k, n, level)
    if boot["note"][0] is not None:
        c_lo, c_hi, c_note = float(boot["low"][0]), float(boot["high"][0]), boot["note"][0]
    else:
        c_lo, c_hi, c_note = _clustered(y[mask], data.reader[mask], data.case[mask], level)
    return {
        "restored_chosen": k, "queries": n, "ratio": k / n,
        "chance": float(np.mean((data.n_slots[mask] - 1) / data.n_slots[mask])),
        "wilson_low": w_lo, "wilson_high": w_hi, "boot_low": float(boot["low"][0]), "boot_high": float(boot["high"][0]),
        "cluster_low": c_lo, "cluster_high": c_hi, "note": boot["note"][0], "cluster_note": c_note,
    }
