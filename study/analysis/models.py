"""Regression models for "a restored version was preferred over the original" with reader and case effects.

The outcome is 1 when, in a query that showed the original, the reader picked a restored version. Votes by the same
reader, and votes on the same case, are not independent; three complementary models (all statsmodels):

* ``gee``: logistic GEE, exchangeable correlation within reader, bias-reduced (Mancl-DeRouen) sandwich standard
  error; the interval uses a t quantile with (readers - 1) degrees of freedom because readers are few.
* ``glm_two_way``: logistic GLM with a two-way (reader and case) cluster-robust standard error
  (Cameron-Gelbach-Miller); t quantile with (min(readers, cases) - 1) degrees of freedom.
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
from scipy.special import expit
from scipy.stats import t as t_dist
from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM

from .data import ChoiceData, restored_outcome

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
    """Intercept-only logistic GEE, groups = reader, exchangeable, bias-reduced covariance."""
    n_readers = int(frame["reader"].nunique())
    if n_readers < 2 or frame["y"].nunique() < 2:
        return {"error": "needs at least two readers and both outcomes"}
    model = sm.GEE(frame["y"].to_numpy(), np.ones((len(frame), 1)), groups=frame["reader"].to_numpy(),
                   family=sm.families.Binomial(), cov_struct=sm.cov_struct.Exchangeable())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = model.fit(cov_type="bias_reduced")
    out = _interval(float(res.params[0]), float(res.bse[0]), n_readers - 1, level)
    out["within_reader_corr"] = float(np.atleast_1d(res.cov_struct.dep_params)[0])
    out["readers"] = n_readers
    out["notes"] = sorted({str(w.message).splitlines()[0] for w in caught})
    return out


def glm_two_way(frame: pd.DataFrame, *, level: float = 0.95) -> dict:
    """Intercept-only logistic GLM with standard errors clustered on reader and on case."""
    n_readers, n_cases = int(frame["reader"].nunique()), int(frame["case"].nunique())
    if min(n_readers, n_cases) < 2 or frame["y"].nunique() < 2:
        return {"error": "needs at least two readers, two cases and both outcomes"}
    groups = np.column_stack([frame["reader"].to_numpy(), frame["case"].to_numpy()])
    res = sm.GLM(frame["y"].to_numpy(), np.ones((len(frame), 1)), family=sm.families.Binomial()).fit(
        cov_type="cluster", cov_kwds={"groups": groups})
    out = _interval(float(res.params[0]), float(res.bse[0]), min(n_readers, n_cases) - 1, level)
    out.update({"readers": n_readers, "cases": n_cases})
    return out


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
