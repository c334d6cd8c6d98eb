"""Agreement: between readers (Fleiss' kappa, Krippendorff's alpha) and within a reader (repeat reads, Cohen's kappa).

All three compare the *method* picked (a nominal category), never the slot, and correct raw agreement for the
agreement expected by chance from how often each method is picked overall (1 = perfect, 0 = chance, < 0 worse).

* Fleiss' kappa needs every case read by the same number of readers (overlap studies); only cases with the most
  common reader count (at least 2) enter it.
* Krippendorff's alpha (nominal) accepts any number of readers per case, so it also covers studies where readers
  saw different but overlapping subsets; it is computed here from the coincidence matrix.
* Self-agreement pairs each repeat read with that reader's first showing of the case: the share of pairs with the
  same pick (percent agreement, exact Clopper-Pearson interval) and Cohen's kappa per reader. Kappa is low for a
  reader who nearly always picks the same method even when that reader is perfectly consistent (the "kappa
  paradox": chance agreement is then close to 1), so a reader is flagged only when kappa is below the threshold
  (default 0.6) *and* the raw agreement is below ``min_agreement`` (default 0.8). Kappa's asymptotic interval is
  used only with at least ``min_pairs`` pairs and agreement strictly between 0 and 1; otherwise (few pairs, or
  every pair agreeing, where the asymptotic variance is 0) the interval is the exact interval of the agreement
  mapped onto the kappa scale with the chance agreement held fixed, and says so.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Sequence

import numpy as np
import pandas as pd
from scipy.stats import norm
from statsmodels.stats.inter_rater import cohens_kappa, fleiss_kappa
from statsmodels.stats.proportion import proportion_confint

from .bootstrap import percentile_interval
from .data import answered_mask, primary_votes

_Z95 = 1.959963984540054  # normal quantile of the 95% interval for Cohen's kappa (as statsmodels reports it)


def coincidence_matrix(units: Sequence[Sequence[Hashable]], categories: Sequence[Hashable] | None = None
                       ) -> tuple[list[Hashable], np.ndarray]:
    """Krippendorff's coincidence matrix: each unit with m >= 2 values adds 1/(m-1) per ordered pair of values."""
    cats = list(categories) if categories is not None else sorted({v for u in units for v in u}, key=str)
    index = {c: i for i, c in enumerate(cats)}
    o = np.zeros((len(cats), len(cats)))
    for unit in units:
        if len(unit) < 2:
            continue
        counts = np.bincount([index[v] for v in unit], minlength=len(cats)).astype(float)
        o += (np.outer(counts, counts) - np.diag(counts)) / (len(unit) - 1)
    return cats, o


def alpha_from_coincidences(o: np.ndarray) -> float:
    """Nominal alpha = 1 - (n - 1) * sum_{c != k} o_ck / sum_{c != k} n_c n_k (NaN when no disagreement is possible)."""
    n_c = o.sum(axis=1)
    n = n_c.sum()
    off_observed = o.sum() - np.trace(o)
    off_expected = n_c.sum() ** 2 - np.sum(n_c ** 2)
    if n <= 1 or off_expected <= 0:
        return float("nan")
    return float(1.0 - (n - 1.0) * off_observed / off_expected)


def krippendorff_alpha_nominal(units: Sequence[Sequence[Hashable]]) -> float:
    """Krippendorff's alpha for nominal data; ``units`` lists, per unit (case), the values given (missing omitted)."""
    return alpha_from_coincidences(coincidence_matrix(units)[1])


def _case_units(votes: pd.DataFrame) -> list[list[str]]:
    return [list(g.astype(str)) for _, g in votes.groupby("case_key", sort=True)["chosen_method"]]


def _case_bootstrap(stat_reps: np.ndarray, level: float) -> tuple[float, float]:
    lo, hi = percentile_interval(stat_reps, level)
    return float(lo[0]), float(hi[0])


def krippendorff_report(tidy: pd.DataFrame, *, rng: np.random.Generator, n_boot: int, level: float = 0.95) -> dict:
    """Alpha over the primary votes (cases = units) with a case-bootstrap percentile interval."""
    units = [u for u in _case_units(primary_votes(tidy)) if len(u) >= 2]
    if not units:
        return {"alpha": None, "cases": 0, "values": 0, "note": "no case was read by two or more readers"}
    cats, _ = coincidence_matrix(units)
    per_unit = np.stack([coincidence_matrix([u], cats)[1].ravel() for u in units])
    alpha = alpha_from_coincidences(per_unit.sum(axis=0).reshape(len(cats), len(cats)))
    reps = []
    for _ in range(max(0, n_boot)):
        counts = rng.multinomial(len(units), np.full(len(units), 1.0 / len(units)))
        reps.append(alpha_from_coincidences((counts @ per_unit).reshape(len(cats), len(cats))))
    if not np.isfinite(alpha):
        return {"alpha": None, "cases": len(units), "values": int(sum(map(len, units))),
                "note": "every vote went to the same method: chance agreement is already perfect"}
    lo, hi = _case_bootstrap(np.array(reps), level) if reps else (float("nan"), float("nan"))
    return {"alpha": alpha, "low": lo, "high": hi, "cases": len(units), "values": int(sum(map(len, units)))}


def fleiss_table(tidy: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Cases x methods vote counts over the cases read by the modal number (>= 2) of readers."""
    votes = primary_votes(tidy)
    table = pd.crosstab(votes["case_key"], votes["chosen_method"].astype(str)) if len(votes) else pd.DataFrame()
    if table.empty:
        return table, 0
    raters = table.sum(axis=1)
    multi = raters[raters >= 2]
    if multi.empty:
        return table.iloc[0:0], 0
    modal = int(multi.value_counts().sort_index(ascending=False).idxmax())
    return table.loc[raters == modal], modal


def fleiss_report(tidy: pd.DataFrame, *, rng: np.random.Generator, n_boot: int, level: float = 0.95) -> dict:
    """Fleiss' kappa (statsmodels) with a case-bootstrap interval and the raw share of agreeing reader pairs."""
    table, raters = fleiss_table(tidy)
    n_cases_all = int(primary_votes(tidy)["case_key"].nunique())
    if len(table) < 2:
        return {"kappa": None, "cases": int(len(table)), "raters": raters, "cases_total": n_cases_all,
                "note": "needs at least two cases read by the same number (>= 2) of readers"}
    counts = table.to_numpy(dtype=float)
    if np.count_nonzero(counts.sum(axis=0)) < 2:
        return {"kappa": None, "cases": int(len(table)), "raters": raters, "cases_total": n_cases_all,
                "note": "every reader picked the same method every time: chance agreement is already perfect"}
    kappa = float(fleiss_kappa(counts, method="fleiss"))
    pair_agree = (counts * (counts - 1)).sum(axis=1) / (raters * (raters - 1))
    reps = []
    for _ in range(max(0, n_boot)):
        pick = rng.integers(0, len(counts), len(counts))
        sub = counts[pick]
        reps.append(_fleiss_from_counts(sub))
    lo, hi = _case_bootstrap(np.array(reps), level) if reps else (float("nan"), float("nan"))
    return {"kappa": kappa, "low": lo, "high": hi, "cases": int(len(table)), "raters": raters,
            "cases_total": n_cases_all, "pair_agreement": float(pair_agree.mean())}


def _fleiss_from_counts(counts: np.ndarray) -> float:
    """Fleiss' kappa from a constant-raters count table (NaN when chance agreement is 1)."""
    n = counts.sum(axis=1)[0]
    p_bar = ((counts * (counts - 1)).sum(axis=1) / (n * (n - 1))).mean()
    p_cat = counts.sum(axis=0) / counts.sum()
    p_e = float((p_cat ** 2).sum())
    return float((p_bar - p_e) / (1.0 - p_e)) if p_e < 1.0 else float("nan")


def repeat_pairs(tidy: pd.DataFrame) -> pd.DataFrame:
    """(reader, case_key, first, repeat) method pairs: each answered repeat with its answered first showing."""
    answered = tidy.loc[answered_mask(tidy)]
    repeats = answered.loc[answered["is_repeat"].astype(bool) & answered["repeat_of"].notna()]
    firsts = answered.set_index("query_id")["chosen_method"]
    if repeats.empty:
        return pd.DataFrame(columns=["reader", "case_key", "first", "repeat"])
    first = repeats["repeat_of"].astype("int64").map(firsts)
    out = pd.DataFrame({"reader": repeats["reader"].astype(str).to_numpy(),
                        "case_key": repeats["case_key"].astype(str).to_numpy(),
                        "first": first.to_numpy(dtype=object), "repeat": repeats["chosen_method"].to_numpy(dtype=object)})
    return out.loc[pd.notna(out["first"])].reset_index(drop=True)


def cohen_kappa_pairs(first: Sequence[str], second: Sequence[str], categories: Sequence[str] | None = None, *,
                      min_pairs: int = 10, level: float = 0.95) -> dict:
    """Cohen's kappa (statsmodels ``cohens_kappa`` on the contingency table) for paired nominal ratings, with the
    percent agreement (``agreement``, exact ``agreement_low``/``agreement_high``) and the chance agreement
    (``chance``). ``interval`` names kappa's interval: "asymptotic" (statsmodels) with at least ``min_pairs`` pairs
    and agreement strictly between 0 and 1, else "exact" (the agreement's Clopper-Pearson interval on the kappa
    scale, chance held fixed); kappa is NaN when chance agreement is 1 (one method picked every time)."""
    cats = list(categories) if categories is not None else sorted(set(first) | set(second))
    idx = {c: i for i, c in enumerate(cats)}
    table = np.zeros((len(cats), len(cats)))
    for a, b in zip(first, second):
        table[idx[a], idx[b]] += 1
    n = int(table.sum())
    same = float(np.trace(table))
    agree = same / n if n else float("nan")
    a_lo, a_hi = (proportion_confint(same, n, alpha=1.0 - level, method="beta") if n else (float("nan"),) * 2)
    row, col = table.sum(axis=1), table.sum(axis=0)
    p_e = float(row @ col) / n ** 2 if n else float("nan")
    out = {"pairs": n, "agreement": agree, "agreement_low": float(a_lo), "agreement_high": float(a_hi),
           "chance": p_e}
    if n == 0 or p_e >= 1.0 - 1e-12:
        return {"kappa": float("nan"), "se": float("nan"), "low": float("nan"), "high": float("nan"),
                "interval": "", **out}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # its z-test divides by 0 on degenerate tables
        res = cohens_kappa(table)
    kappa = float(res.kappa)
    var = float(res.var_kappa)
    se = float(np.sqrt(max(var, 0.0)))  # rounding can make a zero variance slightly negative
    z = float(_Z95 if abs(level - 0.95) < 1e-12 else norm.ppf(0.5 + level / 2))
    if n >= min_pairs and 0.0 < agree < 1.0 and var > 1e-12:
        low, high = np.clip([kappa - z * se, kappa + z * se], -1.0, 1.0)
        how = "asymptotic"
    else:
        low, high = np.clip([(a_lo - p_e) / (1.0 - p_e), (a_hi - p_e) / (1.0 - p_e)], -1.0, 1.0)
        how = "exact"
    return {"kappa": kappa, "se": se, "low": float(low), "high": float(high), "interval": how, **out}


def repeat_agreement(tidy: pd.DataFrame, *, threshold: float = 0.6, min_pairs: int = 10,
                     min_agreement: float = 0.8) -> dict:
    """Self-agreement per reader on repeat reads: percent agreement and Cohen's kappa. ``flag`` when kappa <
    ``threshold`` and the agreement < ``min_agreement`` (a reader who agrees with themself that often is
    consistent whatever kappa says; see the module doc); ``few_pairs`` marks readers with fewer than ``min_pairs``
    repeat pairs, whose figures are rough. The pooled row treats all readers' pairs alike (descriptive)."""
    pairs = repeat_pairs(tidy)
    if pairs.empty:
        return {"threshold": threshold, "min_pairs": min_pairs, "min_agreement": min_agreement, "readers": [],
                "pooled": None, "note": "no answered repeat reads"}
    cats = sorted(set(pairs["first"]) | set(pairs["repeat"]))
    readers = []
    for name, grp in pairs.groupby("reader", sort=True):
        res = cohen_kappa_pairs(list(grp["first"]), list(grp["repeat"]), cats, min_pairs=min_pairs)
        res["reader"] = str(name)
        res["flag"] = _flag(res, threshold, min_agreement)
        res["few_pairs"] = bool(res["pairs"] < min_pairs)
        readers.append(res)
    pooled = cohen_kappa_pairs(list(pairs["first"]), list(pairs["repeat"]), cats, min_pairs=min_pairs)
    pooled["flag"] = _flag(pooled, threshold, min_agreement)
    return {"threshold": threshold, "min_pairs": min_pairs, "min_agreement": min_agreement, "readers": readers,
            "pooled": pooled}


def _flag(res: dict, threshold: float, min_agreement: float) -> bool:
    """Inconsistent: kappa below the threshold and the raw agreement low too (never flagged on kappa alone)."""
    return bool(np.isfinite(res["kappa"]) and res["kappa"] < threshold and res["agreement"] < min_agreement)


def agreement(tidy: pd.DataFrame, *, rng: np.random.Generator, n_boot: int, threshold: float = 0.6,
              level: float = 0.95, min_agreement: float = 0.8) -> dict:
    return {"fleiss": fleiss_report(tidy, rng=rng, n_boot=n_boot, level=level),
            "krippendorff": krippendorff_report(tidy, rng=rng, n_boot=n_boot, level=level),
            "repeats": repeat_agreement(tidy, threshold=threshold, min_agreement=min_agreement)}
