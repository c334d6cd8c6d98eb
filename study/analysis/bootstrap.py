"""Two-way (reader x case) bootstrap, done with weights instead of copies of the data.

One bootstrap replicate draws the readers with replacement and, independently, the cases with replacement; a vote
by reader r on case c then appears ``n_r * n_c`` times in the replicate, where ``n_r`` and ``n_c`` are how often r
and c were drawn (a vote survives only when both its reader and its case are in the resample: "votes in the
cross"). Every statistic here is a ratio of weighted vote counts, so a replicate is a matrix product.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

#: Replicates processed at once (memory: chunk x n_queries floats).
CHUNK = 256


def two_way_weights(rng: np.random.Generator, reader: np.ndarray, case: np.ndarray, n_boot: int,
                    chunk: int = CHUNK) -> Iterator[np.ndarray]:
    """Yield (b, n_queries) arrays of per-vote multiplicities, ``n_boot`` rows in all.

    Only readers and cases that occur in the given votes are resampled (codes are compacted first).
    """
    if np.asarray(reader).size == 0:
        return
    n_r, reader = _compact(reader)
    n_c, case = _compact(case)
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        r_counts = _draw_counts(rng, n_r, b)
        c_counts = _draw_counts(rng, n_c, b)
        yield r_counts[:, reader] * c_counts[:, case]
        done += b


def _draw_counts(rng: np.random.Generator, n: int, b: int) -> np.ndarray:
    """(b, n) times each of n units is drawn in b resamples of n with replacement (multinomial, equal chances;
    counted with one bincount, much faster than ``Generator.multinomial`` row by row)."""
    draws = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
    return np.bincount(draws.ravel(), minlength=b * n).reshape(b, n).astype(float)


def _compact(codes: np.ndarray) -> tuple[int, np.ndarray]:
    uniques, inverse = np.unique(np.asarray(codes), return_inverse=True)
    return int(uniques.size), inverse.reshape(-1)


def ratio_replicates(rng: np.random.Generator, reader: np.ndarray, case: np.ndarray, numer: np.ndarray,
                     denom: np.ndarray, n_boot: int) -> np.ndarray:
    """(n_boot, k) replicates of ``sum(w * numer[:, j]) / sum(w * denom[:, j])`` (NaN when the denominator is 0)."""
    numer = np.asarray(numer, dtype=float).reshape(len(reader), -1)
    denom = np.asarray(denom, dtype=float).reshape(len(reader), -1)
    out = []
    ones = bool(np.all(denom == 1.0))  # every vote counts in every denominator: one row sum suffices
    for w in two_way_weights(rng, reader, case, n_boot):
        num = w @ numer
        den = np.repeat(w.sum(axis=1, keepdims=True), denom.shape[1], axis=1) if ones else w @ denom
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan))
    return np.vstack(out) if out else np.zeros((0, numer.shape[1]))


def percentile_interval(replicates: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval per column, ignoring NaN replicates (all-NaN columns give NaN)."""
    alpha = (1.0 - level) / 2.0
    reps = np.asarray(replicates, dtype=float)
    if reps.ndim == 1:
        reps = reps[:, None]
    lo = np.full(reps.shape[1], np.nan)
    hi = np.full(reps.shape[1], np.nan)
    for j in range(reps.shape[1]):
        col = reps[:, j][np.isfinite(reps[:, j])]
        if col.size:
            lo[j], hi[j] = np.quantile(col, [alpha, 1.0 - alpha])
    return lo, hi
