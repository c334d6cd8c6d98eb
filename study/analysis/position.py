"""Position bias: did the display slot, rather than the image in it, drive the choice?

Slots are shuffled per reader and case, so if readers ignored position every slot would be picked equally often
(1/n of the time in a query with n slots) whatever their taste in methods. Three checks:

* ``slot_table``: picks per slot against that uniform expectation (chi-square goodness of fit, study-wide and per
  reader with Holm's correction);
* ``randomisation_check``: methods by slot *shown* against an even spread (Monte-Carlo reshuffling test): the
  shuffling itself worked;
* ``choice_model``: a conditional logit of the pick among the shown alternatives with method and slot effects, so
  each method's preference is reported net of position (and the slot effects get a joint Wald test).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
from scipy.stats import chi2, chisquare, norm
from statsmodels.discrete.conditional_models import ConditionalLogit
from statsmodels.stats.multitest import multipletests

from .data import ChoiceData, alternatives_long

log = logging.getLogger(__name__)

#: Beyond these a conditional-logit term is reported as not estimable (complete or quasi-complete separation).
_MAX_COEF, _MAX_SE = 10.0, 10.0


def expected_by_slot(n_slots: np.ndarray) -> np.ndarray:
    """Expected picks per slot (index k-1) if position does not matter: sum over queries of 1/n_slots."""
    k_max = int(n_slots.max()) if n_slots.size else 0
    return np.array([np.sum((n_slots >= k) / n_slots) for k in range(1, k_max + 1)], dtype=float)


def slot_chisquare(chosen_slot: np.ndarray, n_slots: np.ndarray) -> dict:
    """Observed vs uniform-expected picks per slot and the chi-square goodness-of-fit test."""
    expected = expected_by_slot(n_slots)
    observed = np.array([np.sum(chosen_slot == k) for k in range(1, expected.size + 1)], dtype=float)
    if expected.size < 2:
        return {"observed": observed.tolist(), "expected": expected.tolist(), "chi2": float("nan"), "df": 0,
                "p": float("nan")}
    stat, p = chisquare(observed, expected)
    return {"observed": observed.astype(int).tolist(), "expected": expected.tolist(), "chi2": float(stat),
            "df": int(expected.size - 1), "p": float(p)}


def slot_table(data: ChoiceData, *, alpha: float = 0.05) -> dict:
    """Study-wide and per-reader picks by slot with chi-square tests; ``fires`` when the study-wide p < alpha."""
    overall = slot_chisquare(data.chosen_slot, data.n_slots)
    total = max(1, data.n_queries)
    rows = [{"slot": k, "chosen": int(o), "expected": float(e), "share": float(o) / total}
            for k, (o, e) in enumerate(zip(overall["observed"], overall["expected"]), 1)]
    per_reader = []
    for r, name in enumerate(data.readers):
        sel = data.reader == r
        res = slot_chisquare(data.chosen_slot[sel], data.n_slots[sel])
        per_reader.append({"reader": name, "votes": int(sel.sum()), "observed": res["observed"],
                           "chi2": res["chi2"], "p": res["p"]})
    ps = np.array([row["p"] for row in per_reader], dtype=float)
    ok = np.isfinite(ps)
    adjusted = np.full(ps.shape, np.nan)
    if ok.any():
        adjusted[ok] = multipletests(ps[ok], method="holm")[1]
    for row, p_adj in zip(per_reader, adjusted):
        row["p_holm"] = float(p_adj)
        row["flag"] = bool(np.isfinite(p_adj) and p_adj < alpha)
    return {"by_slot": rows, "chi2": overall["chi2"], "df": overall["df"], "p": overall["p"], "alpha": alpha,
            "fires": bool(np.isfinite(overall["p"]) and overall["p"] < alpha), "per_reader": per_reader}


def _pearson(table: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Pearson X^2 of one table (m, k) or a stack (b, m, k) against ``expected`` (cells with expectation 0 skipped)."""
    on = expected > 0
    diff = table[..., on] - expected[on]
    return np.sum(diff ** 2 / expected[on], axis=-1)


def _shuffled_tables(rng: np.random.Generator, shown: np.ndarray, k_max: int, n_rep: int) -> np.ndarray:
    """(n_rep, methods, slots) tables of slot shown after reshuffling every query's slots uniformly at random."""
    n_q, n_m = shown.shape
    keys = rng.random((n_rep, n_q, n_m))
    keys[:, ~shown] = 2.0  # methods not shown sort last
    order = np.argsort(keys, axis=2)[:, :, :k_max]  # order[b, q, k]: the method put in slot k+1
    valid = np.arange(k_max)[None, :] < shown.sum(axis=1)[:, None]  # (queries, slots) that exist
    flat = (np.arange(n_rep)[:, None, None] * n_m + order) * k_max + np.arange(k_max)[None, None, :]
    return np.bincount(flat[:, valid].ravel(), minlength=n_rep * n_m * k_max).reshape(n_rep, n_m, k_max).astype(float)


def randomisation_check(data: ChoiceData, *, rng: np.random.Generator | None = None, n_rep: int = 1000,
                        chunk: int = 50) -> dict:
    """Methods x slot shown (counts) against the even spread that shuffling should give.

    The statistic is Pearson's X^2 against the design's expectation (method m sits in slot k of a query with n
    slots with probability 1/n). Because the slots of one query are a permutation, the cells are not independent
    and the textbook chi-square reference overstates significance (by about n/(n-1) in X^2), so the p-value is a
    Monte-Carlo one: the share of ``n_rep`` computer reshufflings of the same queries giving an X^2 at least as
    large. A small p means the shuffling did not work.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    k_max = int(data.slot.max()) if data.slot.size else 0
    n_m = len(data.methods)
    table = np.zeros((n_m, k_max))
    for j in range(n_m):
        table[j] = np.bincount(data.slot[data.shown[:, j], j] - 1, minlength=k_max)[:k_max]
    n_slots = data.shown.sum(axis=1)
    per_query = np.where(np.arange(1, k_max + 1)[None, :] <= n_slots[:, None], 1.0 / np.maximum(n_slots, 1)[:, None], 0.0)
    expected = data.shown.T.astype(float) @ per_query
    if n_m < 2 or k_max < 2:
        return {"methods": data.methods, "table": table.astype(int).tolist(), "chi2": float("nan"), "p": float("nan"),
                "reshuffles": 0}
    observed = float(_pearson(table, expected))
    exceed, done = 0, 0
    while done < n_rep:
        b = min(chunk, n_rep - done)
        exceed += int(np.sum(_pearson(_shuffled_tables(rng, data.shown, k_max, b), expected) >= observed - 1e-9))
        done += b
    return {"methods": data.methods, "table": table.astype(int).tolist(), "chi2": observed,
            "p": (1 + exceed) / (1 + n_rep), "reshuffles": n_rep}


def _design(data: ChoiceData, reference: str) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Long alternatives frame with ``x:<term>`` indicator columns for every method but ``reference`` and every
    slot but slot 1."""
    longf = alternatives_long(data)
    methods = [m for m in data.methods if m != reference]
    slots = sorted(int(k) for k in longf["slot"].unique() if int(k) != 1)
    cols = {m: (longf["method"] == m).astype(float) for m in methods}
    cols.update({f"slot_{k}": (longf["slot"] == k).astype(float) for k in slots})
    exog = pd.DataFrame(cols)
    return pd.concat([longf, exog.add_prefix("x:")], axis=1), methods, [f"slot_{k}" for k in slots]


def newton_clogit(x: np.ndarray, mask: np.ndarray, y: np.ndarray, *, max_iter: int = 50, tol: float = 1e-10
                  ) -> tuple[np.ndarray, np.ndarray, float, bool]:
    """Conditional-logit MLE by damped Newton on padded arrays: ``x`` (queries, alternatives, features), ``mask``
    (queries, alternatives) for real alternatives, ``y`` (queries,) index of the chosen one.

    Returns (beta, observed information at beta, log-likelihood, converged). Same model and likelihood as
    statsmodels' ``ConditionalLogit`` (rows = alternatives, groups = queries), vectorised: seconds instead of
    minutes on large studies. The tests check both against each other."""
    n_q, _, n_p = x.shape
    rows = np.arange(n_q)

    def loglik(b: np.ndarray) -> float:
        u = np.where(mask, x @ b, -np.inf)
        return float(np.sum(u[rows, y] - np.logaddexp.reduce(u, axis=1)))

    def grad_info(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u = np.where(mask, x @ b, -np.inf)
        p = np.exp(u - u.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        mean_x = np.einsum("qk,qkp->qp", p, x)
        return np.sum(x[rows, y] - mean_x, axis=0), np.einsum("qk,qkp,qkr->pr", p, x, x) - mean_x.T @ mean_x

    beta = np.zeros(n_p)
    current = loglik(beta)
    converged = False
    for _ in range(max_iter):
        grad, info = grad_info(beta)
        try:
            step = np.linalg.solve(info, grad)
        except np.linalg.LinAlgError:
            break
        t = 1.0
        while t > 1e-6 and loglik(beta + t * step) < current - 1e-12:
            t /= 2.0
        beta, previous = beta + t * step, current
        current = loglik(beta)
        if abs(current - previous) < tol and np.max(np.abs(t * step)) < 1e-6:
            converged = bool(np.all(np.isfinite(beta)) and np.max(np.abs(beta)) < 30)
            break
    return beta, grad_info(beta)[1], current, converged


def _padded(frame: pd.DataFrame, names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The long alternatives frame as (queries, max alternatives, features) arrays for ``newton_clogit``."""
    codes, _ = pd.factorize(frame["query_id"])
    pos = frame.groupby(codes).cumcount().to_numpy()
    n_q, k = int(codes.max()) + 1, int(pos.max()) + 1
    x = np.zeros((n_q, k, len(names)))
    mask = np.zeros((n_q, k), dtype=bool)
    x[codes, pos] = frame[[f"x:{n}" for n in names]].to_numpy()
    mask[codes, pos] = True
    y = np.zeros(n_q, dtype=np.int64)
    chosen = frame["chosen"].to_numpy() > 0.5
    y[codes[chosen]] = pos[chosen]
    return x, mask, y


def _fit_clogit(frame: pd.DataFrame, names: list[str]) -> tuple[np.ndarray, np.ndarray, float, str, list[str]]:
    """(params, covariance, log-likelihood, fitted by, notes): Newton first, statsmodels when Newton fails."""
    params, info, llf, converged = newton_clogit(*_padded(frame, names))
    cov = _inverse(info) if converged else None
    if cov is not None:
        return params, cov, llf, "Newton (vectorised conditional logit)", []
    log.debug("Newton fit of the conditional logit did not converge; falling back to statsmodels")
    exog = frame[[f"x:{n}" for n in names]].to_numpy()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = ConditionalLogit(frame["chosen"].to_numpy(), exog, groups=frame["query_id"].to_numpy()).fit(
            disp=0, maxiter=200)
    notes = sorted({str(w.message).splitlines()[0] for w in caught})
    return (np.asarray(res.params, dtype=float), np.asarray(res.cov_params(), dtype=float), float(res.llf),
            "statsmodels ConditionalLogit", notes)


def _effect(name: str, b: float, se: float, z: float) -> dict:
    """One model term as an odds ratio with its interval (not estimable under separation)."""
    if not (np.isfinite(se) and se < _MAX_SE and abs(b) < _MAX_COEF):
        return {"term": name, "coef": float(b), "se": float(se), "odds_ratio": float("nan"), "or_low": float("nan"),
                "or_high": float("nan"), "p": float("nan"), "estimable": False}
    return {"term": name, "coef": float(b), "se": float(se), "odds_ratio": float(np.exp(b)),
            "or_low": float(np.exp(b - z * se)), "or_high": float(np.exp(b + z * se)),
            "p": float(2 * norm.sf(abs(b / se))) if se > 0 else float("nan"), "estimable": True}


def choice_model(data: ChoiceData, reference: str, *, level: float = 0.95) -> dict:
    """Conditional logit of the pick with method effects (vs ``reference``) and slot effects (vs slot 1), fitted
    by ``newton_clogit`` (statsmodels ``ConditionalLogit`` when Newton fails). Odds ratios are "how many times more
    likely to be picked than the reference, in the same slot"; ``net_worth`` is each method's predicted vote share
    with position taken out."""
    if data.n_queries == 0 or reference not in data.methods:
        return {"error": "no votes" if data.n_queries == 0 else f"reference method {reference!r} never shown"}
    frame, methods, slots = _design(data, reference)
    try:
        params, cov, llf, fitted_by, notes = _fit_clogit(frame, methods + slots)
    except (np.linalg.LinAlgError, ValueError) as exc:
        return {"error": f"conditional logit failed: {exc}"}
    with np.errstate(invalid="ignore"):
        bse = np.sqrt(np.diag(cov))
    z = float(norm.ppf(0.5 + level / 2.0))
    method_rows = [{"term": reference, "coef": 0.0, "se": 0.0, "odds_ratio": 1.0, "or_low": 1.0, "or_high": 1.0,
                    "p": float("nan"), "estimable": True}]
    method_rows += [_effect(m, params[i], bse[i], z) for i, m in enumerate(methods)]
    slot_rows = [_effect(s, params[len(methods) + i], bse[len(methods) + i], z) for i, s in enumerate(slots)]
    estimable = all(row["estimable"] for row in method_rows + slot_rows)
    if not estimable:
        notes.append("some method or slot was (almost) never or always picked: its effect cannot be estimated")
    coefs = np.array([row["coef"] for row in method_rows])
    worth = np.exp(coefs - coefs.max())
    for row, w in zip(method_rows, worth / worth.sum()):
        row["net_worth"] = float(w) if estimable else float("nan")
    wald = _wald(params[len(methods):], cov[len(methods):, len(methods):]) if estimable else \
        {"chi2": float("nan"), "df": len(slots), "p": float("nan")}
    return {"reference": reference, "methods": method_rows, "slots": slot_rows, "slot_wald": wald,
            "n_queries": data.n_queries, "loglik": float(llf), "fitted_by": fitted_by, "notes": notes}


def _inverse(info: np.ndarray) -> np.ndarray | None:
    """Covariance from the observed information (None when it is singular)."""
    try:
        cov = np.linalg.inv(info)
    except np.linalg.LinAlgError:
        return None
    return cov if np.all(np.isfinite(cov)) else None


def _wald(b: np.ndarray, cov: np.ndarray) -> dict:
    """Joint Wald chi-square test that every coefficient in ``b`` is 0."""
    if b.size == 0:
        return {"chi2": float("nan"), "df": 0, "p": float("nan")}
    try:
        stat = float(b @ np.linalg.solve(cov, b))
    except np.linalg.LinAlgError:
        return {"chi2": float("nan"), "df": int(b.size), "p": float("nan")}
    return {"chi2": stat, "df": int(b.size), "p": float(chi2.sf(stat, b.size))}


def position_bias(data: ChoiceData, reference: str, *, alpha: float = 0.05, level: float = 0.95,
                  rng: np.random.Generator | None = None, n_rep: int = 1000) -> dict:
    """Everything about position: slot table + tests, randomisation check, choice model net of position."""
    out = slot_table(data, alpha=alpha)
    out["randomisation"] = randomisation_check(data, rng=rng, n_rep=n_rep)
    out["model"] = choice_model(data, reference, level=level)
    return out
