"""Ranking the methods: Luce (Plackett-Luce first-choice / Bradley-Terry) worths from forced choices.

Each vote is a win of the picked method over every other method on screen. The Luce choice model says a method
with worth ``w_i`` is picked from the shown set S with probability ``w_i / sum_{j in S} w_j``; its maximum
likelihood fit is the conditional logit with one effect per method. We fit it with Hunter's (2004)
minorise-maximise (MM) iteration, which copes with a method that never wins (worth 0), works with vote weights
(so bootstrap replicates are cheap), and gives the model's standard errors from the observed information.
Worths are scaled to sum to 1: a method's worth is the chance it would be picked if all methods were shown.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm, rankdata

from .bootstrap import percentile_interval, two_way_weights
from .data import ChoiceData

def luce_mm(shown: np.ndarray, chosen: np.ndarray, weights: np.ndarray | None = None, *, tol: float = 1e-10,
            max_iter: int = 10000, init: np.ndarray | None = None) -> np.ndarray:
    """Maximum-likelihood Luce worths (rows sum to 1) for each row of ``weights`` ((b, n_queries); None: one row
    of ones). Methods with no weighted exposure get NaN. Returns (b, n_methods), or (n_methods,) when
    ``weights`` is None.
    """
    s = np.asarray(shown, dtype=float)
    y = np.asarray(chosen, dtype=float)
    w_q = np.ones((1, s.shape[0])) if weights is None else np.atleast_2d(np.asarray(weights, dtype=float))
    wins = w_q @ y
    present = (w_q @ s) > 0
    worth = np.where(present, 1.0, 0.0) if init is None else np.where(present, np.atleast_2d(init), 0.0)
    worth = worth / worth.sum(axis=1, keepdims=True)
    for _ in range(max_iter):
        denom = worth @ s.T
        ratio = np.divide(w_q, denom, out=np.zeros_like(w_q), where=denom > 0)
        exposure = ratio @ s
        new = np.divide(wins, exposure, out=np.zeros_like(wins), where=exposure > 0)
        new = new / new.sum(axis=1, keepdims=True)
        step = np.max(np.abs(new - worth))
        worth = new
        if step < tol:
            break
    worth = np.where(present, worth, np.nan)
    return worth[0] if weights is None else worth


def luce_covariance(shown: np.ndarray, worth: np.ndarray, ref: int) -> np.ndarray:
    """Covariance of the log-worths relative to method ``ref`` (inverse observed information; ref row/col 0)."""
    s = np.asarray(shown, dtype=float)
    m = s.shape[1]
    keep = [j for j in range(m) if j != ref]
    cov = np.full((m, m), np.nan)
    cov[ref, ref] = 0.0
    if not np.all(worth > 0):
        return cov
    num = s * worth
    p = num / num.sum(axis=1, keepdims=True)
    info = np.diag(p.sum(axis=0)) - p.T @ p
    sub = info[np.ix_(keep, keep)]
    try:
        inv = np.linalg.inv(sub)
    except np.linalg.LinAlgError:
        return cov
    cov[np.ix_(keep, keep)] = inv
    return cov


def _ranks(worth: np.ndarray) -> np.ndarray:
    """Rank 1 = largest worth; NaN worths rank last."""
    filled = np.where(np.isfinite(worth), worth, -np.inf)
    return rankdata(-filled, method="min", axis=-1)


def luce_bootstrap(data: ChoiceData, worth: np.ndarray, *, rng: np.random.Generator, n_boot: int) -> np.ndarray:
    """(n_boot, n_methods) worths refitted on two-way bootstrap replicates (warm-started at ``worth``)."""
    init = np.nan_to_num(worth, nan=0.0) + 1e-3
    reps = [luce_mm(data.shown, data.chosen, w, init=init, tol=1e-8)
            for w in two_way_weights(rng, data.reader, data.case, n_boot)]
    return np.vstack(reps) if reps else np.zeros((0, len(data.methods)))


def ranking(data: ChoiceData, reference: str | None, *, rng: np.random.Generator, n_boot: int,
            level: float = 0.95) -> list[dict]:
    """One row per method, best first: wins, worth with bootstrap interval, worth ratio to the reference with the
    model's interval, rank with its bootstrap interval and the share of replicates in which it ranked first."""
    if data.n_queries == 0:
        return []
    worth = luce_mm(data.shown, data.chosen)
    ref = data.index(reference) if reference is not None else None
    ref = 0 if ref is None else ref
    cov = luce_covariance(data.shown, worth, ref)
    reps = luce_bootstrap(data, worth, rng=rng, n_boot=n_boot)
    w_lo, w_hi = percentile_interval(reps, level)
    rank = _ranks(worth)
    rep_ranks = _ranks(reps) if len(reps) else np.zeros((0, worth.size))
    r_lo, r_hi = percentile_interval(rep_ranks, level)
    z = float(norm.ppf(0.5 + level / 2.0))
    rows = []
    for j, method in enumerate(data.methods):
        with np.errstate(divide="ignore", invalid="ignore"):  # a method that never wins has worth 0
            log_ratio = float(np.log(worth[j] / worth[ref]))
        se = float(np.sqrt(cov[j, j])) if np.isfinite(cov[j, j]) else float("nan")
        rows.append({
            "method": method, "wins": int(data.chosen[:, j].sum()), "shown": int(data.shown[:, j].sum()),
            "worth": float(worth[j]), "worth_low": float(w_lo[j]), "worth_high": float(w_hi[j]),
            "ratio_to_ref": float(np.exp(log_ratio)), "log_ratio_se": se,
            "ratio_low": float(np.exp(log_ratio - z * se)) if j != ref else 1.0,
            "ratio_high": float(np.exp(log_ratio + z * se)) if j != ref else 1.0,
            "rank": int(rank[j]),
            "rank_low": int(np.floor(r_lo[j])) if np.isfinite(r_lo[j]) else None,
            "rank_high": int(np.ceil(r_hi[j])) if np.isfinite(r_hi[j]) else None,
            "p_best": float(np.mean(rep_ranks[:, j] == 1)) if len(rep_ranks) else float("nan"),
        })
    rows.sort(key=lambda r: (r["rank"], r["method"]))
    return rows
