"""Regression models for "a restored version was preferred over the original" with reader and case effects.

The outcome is 1 when, in a query that showed the original, the reader picked a restored version. Votes by the same
reader, and votes on the same case, are not independent; three complementary models (all statsmodels):

* ``gee``: logistic GEE with reader clusters and an *independence* working correlation, so that its central value
  is exactly the pooled share (the selection ratio) whatever the number of votes per reader; its standard error
  is the bias-reduced (Mancl-DeRouen) sandwich, and the interval uses a t quantile with (readers - 1) degrees of
  freedom because readers are few. The within-reader correlation is still reported, as a description, from an
  exchangeable fit (an exchangeable working correlation would weight readers unequally and move the estimate
  away from the pooled share when readers read different numbers of cases).
* ``glm_two_way``: logistic GLM with a two-way (reader and case) cluster-robust standard error
  (Cameron-Gelbach-Miller, ``robust.two_way_cov``, negative variances repaired there); t quantile with
  (min(readers, cases) - 1) degrees of freedom. ``glm_share_test`` is the same model as a test of a share against
  a null value (the dashboard's "restored vs original" test, overall).
* ``mixed``: Bayesian logistic mixed model with random reader and case intercepts (``BinomialBayesMixedGLM``,
  variational fit). Reports the probability for a *typical* reader on a *typical* case and how much readers and
  cases vary (standard deviations on the log-odds scale). Its posterior spread for the intercept is known to be
  too narrow under the variational approximation, so no interval is given for it.

Both marginal models estimate the same population share as the selection analysis; the mixed model's typical-reader
probability is further from 0.5 than the population share when readers or cases vary.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy.special import expit, logit
from scipy.stats import t as t_dist
from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM

from .data import ChoiceData, restored_outcome
from .robust import two_way_cov

log = logging.getLogger(__name__)

#: Above this many votes the mixed model is skipped unless asked for (see ``restored_models``).
MIXED_MAX_VOTES = 3000


def restored_frame(data: ChoiceData, original: str) -> pd.DataFrame | None:
    """Votes on queries that showed the original: y (1 = a restoration picked), reader and case codes."""
    out = restored_outcome(data, original)
    if out is None or not out[0].any():
        return None
    mask, y = out
    return pd.DataFrame({"y": y[mask], "reader": data.reader[mask], "case": data.case[mask]})


def _interval(b: float, se: float, df: int, level: float) -> dict:
    q = float(t_dist.ppf(0.5 + level / 2.0, max(1, df)))
    return {"logit": float(b), "se": float(se), "df": int(df), "p": float(expit(b)),
            "low": float(expit(b - q * se)), "high": float(expit(b + q * se))}


def gee_restored(frame: pd.DataFrame, *, level: float = 0.95) -> dict:
    """Intercept-only logistic GEE, groups = reader, independence working correlation (estimate = pooled share),
    bias-reduced sandwich covariance; ``within_reader_corr`` from an exchangeable fit, descriptive only."""
    n_readers = int(frame["reader"].nunique())
    if n_readers < 2 or frame["y"].nunique() < 2:
        return {"error": "needs at least two readers and both outcomes"}
    y, x, groups = frame["y"].to_numpy(), np.ones((len(frame), 1)), frame["reader"].to_numpy()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = sm.GEE(y, x, groups=groups, family=sm.families.Binomial(),
                     cov_struct=sm.cov_struct.Independence()).fit(cov_type="bias_reduced")
        try:
            exch = sm.GEE(y, x, groups=groups, family=sm.families.Binomial(),
                          cov_struct=sm.cov_struct.Exchangeable()).fit()
            corr = float(np.atleast_1d(exch.cov_struct.dep_params)[0])
        except (np.linalg.LinAlgError, ValueError):
            corr = float("nan")
    out = _interval(float(res.params[0]), float(res.bse[0]), n_readers - 1, level)
    out["within_reader_corr"] = corr
    out["working_correlation"] = "independence"
    out["readers"] = n_readers
    out["notes"] = sorted({str(w.message).splitlines()[0] for w in caught})
    return out


def _two_way_fit(frame: pd.DataFrame) -> tuple[float, object] | None:
    """(intercept, ClusteredCov) of the intercept-only logistic GLM; None when it cannot be fitted."""
    y = frame["y"].to_numpy(dtype=float)
    if len(y) == 0 or y.min() == y.max():
        return None
    res = sm.GLM(y, np.ones((len(y), 1)), family=sm.families.Binomial()).fit()
    scores = np.asarray(res.model.score_obs(res.params), dtype=float)
    bread = np.asarray(res.cov_params(), dtype=float)  # inverse information (scale 1 for the binomial)
    return float(res.params[0]), two_way_cov(bread, scores, frame["reader"].to_numpy(), frame["case"].to_numpy())


def glm_two_way(frame: pd.DataFrame, *, level: float = 0.95) -> dict:
    """Intercept-only logistic GLM with standard errors clustered on reader and on case (``robust.two_way_cov``:
    a negative two-way variance is replaced by the larger one-way variance, with a note)."""
    n_readers, n_cases = int(frame["reader"].nunique()), int(frame["case"].nunique())
    if min(n_readers, n_cases) < 2 or frame["y"].nunique() < 2:
        return {"error": "needs at least two readers, two cases and both outcomes"}
    b, cc = _two_way_fit(frame)
    se = float(cc.se[0])
    if not np.isfinite(se):
        return {"error": "no clustered variance could be computed", "notes": cc.notes}
    out = _interval(b, se, int(cc.df), level)
    out.update({"readers": n_readers, "cases": n_cases, "variance": cc.kind, "notes": cc.notes})
    return out


def glm_share_test(frame: pd.DataFrame, null: float = 0.5) -> dict:
    """Two-sided test that the share of ``y`` = 1 equals ``null``, from the two-way clustered GLM: t = (logit(share)
    - logit(null)) / SE on min(readers, cases) - 1 degrees of freedom. ``p`` is NaN (with ``error``) when the model
    cannot be fitted (one outcome only, or one reader and one case)."""
    fit = _two_way_fit(frame)
    if fit is None:
        return {"p": float("nan"), "error": "every vote has the same outcome"}
    b, cc = fit
    se = float(cc.se[0])
    if not (np.isfinite(se) and cc.df >= 1):
        return {"p": float("nan"), "error": "no clustered variance could be computed", "notes": cc.notes}
    t_stat = (b - float(logit(null))) / se
    return {"p": float(2.0 * t_dist.sf(abs(t_stat), cc.df)), "t": float(t_stat), "df": int(cc.df),
            "variance": cc.kind, "notes": cc.notes}


def mixed_restored(frame: pd.DataFrame) -> dict:
    """Random reader and case intercepts (variational Bayes): typical-reader probability and the two SDs."""
    if frame["reader"].nunique() < 2 or frame["case"].nunique() < 2 or frame["y"].nunique() < 2:
        return {"error": "needs at least two readers, two cases and both outcomes"}
    frame = frame.assign(reader=frame["reader"].astype(str), case=frame["case"].astype(str))
    model = BinomialBayesMixedGLM.from_formula("y ~ 1", {"reader": "0 + C(reader)", "case": "0 + C(case)"}, frame)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = model.fit_vb()
    names = list(model.vcp_names)
    sd = {name: float(np.exp(res.vcp_mean[i])) for i, name in enumerate(names)}
    sd_low = {name: float(np.exp(res.vcp_mean[i] - 1.96 * res.vcp_sd[i])) for i, name in enumerate(names)}
    sd_high = {name: float(np.exp(res.vcp_mean[i] + 1.96 * res.vcp_sd[i])) for i, name in enumerate(names)}
    b = float(res.fe_mean[0])
    return {"logit": b, "p_typical": float(expit(b)),
            "reader_sd": sd["reader"], "reader_sd_low": sd_low["reader"], "reader_sd_high": sd_high["reader"],
            "case_sd": sd["case"], "case_sd_low": sd_low["case"], "case_sd_high": sd_high["case"],
            "notes": sorted({str(w.message).splitlines()[0] for w in caught})}


def restored_models(data: ChoiceData, original: str, *, level: float = 0.95, mixed: bool | None = None) -> dict | None:
    """All three models for restored-vs-original (None when the study never showed the original).

    ``mixed``: fit the mixed model (True), skip it (False), or fit it only up to ``MIXED_MAX_VOTES`` votes (None;
    the variational fit takes about 5 s per 1,000 votes on two CPU cores).
    """
    frame = restored_frame(data, original)
    if frame is None:
        return None
    out = {"queries": int(len(frame)), "gee": gee_restored(frame, level=level), "glm_two_way": glm_two_way(frame, level=level)}
    if mixed is None and len(frame) > MIXED_MAX_VOTES:
        out["mixed"] = {"error": f"skipped: {len(frame)} votes > {MIXED_MAX_VOTES} (slow variational fit; "
                                 "ask for it explicitly with mixed=True)"}
    elif mixed is not False:
        try:
            out["mixed"] = mixed_restored(frame)
        except (np.linalg.LinAlgError, ValueError) as exc:
            log.warning("mixed model failed: %s", exc)
            out["mixed"] = {"error": f"mixed model failed: {exc}"}
    return out
