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
        r_counts = rng.multinomial(n_r, np.full(n_r, 1.0 / n_r), size=b).astype(float)
        c_counts = rng.multinomial(n_c, np.full(n_c, 1.0 / n_c), size=b).astype(float)
        yield r_counts[:, reader] * c_counts[:, case]
        done += b


def _compact(codes: np.ndarray) -> tuple[int, np.ndarray]:
    uniques, inverse = np.unique(np.asarray(codes), return_inverse=True)
    return int(uniques.size), inverse.reshape(-1)


def ratio_replicates(rng: np.random.Generator, reader: np.ndarray, case: np.ndarray, numer: np.ndarray,
                     denom: np.ndarray, n_boot: int) -> np.ndarray:
    """(n_boot, k) replicates of ``sum(w * numer[:, j]) / sum(w * denom[:, j])`` (NaN when the denominator is 0)."""
    numer = np.asarray(numer, dtype=float).reshape(len(reader), -1)
    denom = np.asarray(denom, dtype=float).reshape(len(reader), -1)
    out = []
    for w in two_way_weights(rng, reader, case, n_boot):
        num, den = w @ numer, w @ denom
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
