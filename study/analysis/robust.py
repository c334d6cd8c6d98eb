"""Cluster-robust ("sandwich") covariances: one way, and two way on reader and case (Cameron, Gelbach and Miller).

Every model in this package that reports a reader- and case-clustered interval (the logistic GLM of
``models.glm_two_way``, the conditional logit of ``position.choice_model``) and the clustered tests of the
dashboard tables (``tables``) get their covariance here, from the per-vote score contributions and the "bread"
(the inverse information, or any matrix turning summed scores into parameter changes):

* one way: ``bread @ (sum over clusters g of S_g S_g') @ bread`` with statsmodels' CRV1 small-sample factor
  ``G/(G-1) * (N-1)/(N-K)`` (G clusters, N votes, K parameters), so that the numbers equal statsmodels'
  ``cov_type="cluster"`` (the tests check this);
* two way: ``V_reader + V_case - V_reader-and-case``. That difference can come out negative (not positive
  semi-definite) when the clustering is weak; the usual repair is then applied: the larger (by trace) of the two
  one-way covariances is used instead, and a note says so. With only one reader (or one case) the other
  dimension's one-way covariance is used, also with a note.

Inference uses a t (or F) reference on ``min(readers, cases) - 1`` degrees of freedom (the number of clusters, not
of votes, limits what the data can say about reader-to-reader spread).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _codes(groups: np.ndarray) -> tuple[int, np.ndarray]:
    """(number of clusters, integer cluster code per vote); labels of any sortable type (ints, strings), and for
    (N, 2) labels the clusters are the distinct pairs."""
    g = np.asarray(groups)
    if g.ndim > 1:  # each column to integer codes first (np.unique with an axis refuses object arrays)
        g = np.column_stack([np.unique(g[:, j], return_inverse=True)[1].reshape(-1) for j in range(g.shape[1])])
        uniques, inverse = np.unique(g, return_inverse=True, axis=0)
    else:
        uniques, inverse = np.unique(g, return_inverse=True)
    return int(len(uniques)), inverse.reshape(-1)


def cluster_cov(bread: np.ndarray, scores: np.ndarray, groups: np.ndarray, *, correction: bool = True) -> np.ndarray:
    """One-way cluster-robust covariance (CRV1, statsmodels' correction). ``scores``: (N, K) per-vote score
    contributions; ``groups``: (N,) cluster labels, or (N, 2) for the intersection of two labels."""
    scores = np.asarray(scores, dtype=float).reshape(len(scores), -1)
    n_obs, k = scores.shape
    n_groups, codes = _codes(groups)
    sums = np.zeros((n_groups, k))
    np.add.at(sums, codes, scores)
    cov = bread @ (sums.T @ sums) @ bread.T
    if correction and n_groups > 1 and n_obs > k:
        cov = cov * (n_groups / (n_groups - 1.0)) * ((n_obs - 1.0) / (n_obs - k))
    return cov


@dataclass
class ClusteredCov:
    """A clustered covariance, what it is (``kind``), its degrees of freedom and the notes to print with it."""

    cov: np.ndarray
    kind: str
    df: float
    clusters: dict[str, int]
    notes: list[str] = field(default_factory=list)

    @property
    def se(self) -> np.ndarray:
        d = np.diag(self.cov)
        return np.where(d > 0, np.sqrt(np.clip(d, 0.0, None)), np.nan)


def _psd(cov: np.ndarray) -> bool:
    if not np.all(np.isfinite(cov)):
        return False
    sym = (cov + cov.T) / 2.0
    eig = np.linalg.eigvalsh(sym)
    scale = max(float(np.max(np.abs(eig))), 1e-300)
    return bool(eig.min() >= -1e-10 * scale and np.all(np.diag(cov) > 0))


def two_way_cov(bread: np.ndarray, scores: np.ndarray, reader: np.ndarray, case: np.ndarray) -> ClusteredCov:
    """Two-way (reader and case) clustered covariance with the repairs described in the module docstring."""
    reader, case = np.asarray(reader), np.asarray(case)
    n_r, n_c = _codes(reader)[0], _codes(case)[0]
    clusters = {"readers": n_r, "cases": n_c}
    if n_r >= 2 and n_c >= 2:
        v_r = cluster_cov(bread, scores, reader)
        v_c = cluster_cov(bread, scores, case)
        v_rc = cluster_cov(bread, scores, np.column_stack([reader, case]))
        both = v_r + v_c - v_rc
        df = min(n_r, n_c) - 1
        if _psd(both):
            return ClusteredCov(both, "two-way (reader x case)", df, clusters)
        use_reader = np.trace(v_r) >= np.trace(v_c)
        return ClusteredCov(v_r if use_reader else v_c, "reader-clustered" if use_reader else "case-clustered", df,
                            clusters, [f"the two-way clustered variance came out negative; the larger one-way "
                                       f"({'reader' if use_reader else 'case'}-clustered) variance is used instead"])
    if n_r >= 2:
        return ClusteredCov(cluster_cov(bread, scores, reader), "reader-clustered", n_r - 1, clusters,
                            ["only one case: clustered on reader only"])
    if n_c >= 2:
        return ClusteredCov(cluster_cov(bread, scores, case), "case-clustered", n_c - 1, clusters,
                            ["only one reader: clustered on case only (no reader-to-reader spread can be measured)"])
    return ClusteredCov(np.full_like(np.asarray(bread, dtype=float), np.nan), "none", 0, clusters,
                        ["one reader and one case: no clustered variance"])


def ratio_scores(numer: np.ndarray, denom: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ratios ``sum(numer[:, j]) / sum(denom[:, j])`` as M-estimators: (ratios, per-vote scores, bread), so that
    ``two_way_cov(bread, scores, ...)`` is the clustered covariance of the ratios (delta method)."""
    numer = np.asarray(numer, dtype=float).reshape(len(numer), -1)
    denom = np.asarray(denom, dtype=float).reshape(len(denom), -1)
    tot = denom.sum(axis=0)
    ratio = np.divide(numer.sum(axis=0), tot, out=np.full(tot.shape, np.nan), where=tot > 0)
    scores = numer - np.nan_to_num(ratio) * denom
    bread = np.diag(np.divide(1.0, tot, out=np.zeros_like(tot), where=tot > 0))
    return ratio, scores, bread
