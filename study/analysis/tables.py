"""The dashboard's and the CLI's tables, from the tidy vote table (:func:`study.export.tidy_votes`); the full
analysis (bootstrap and clustered intervals, models, position, ranking, agreement) is the rest of this package.

* :func:`selection_ratios` / :func:`selection_table`: how often each method was chosen, per reader and
  overall (the paper's Tables III and IV), with Wilson 95% intervals (statsmodels ``proportion_confint``).
* :func:`uniformity_tests`: chi-square test of the choice counts against uniform choice (scipy ``chisquare``).
* :func:`pairwise_vs_original`: for each restored method, among the reads where either it or the original was
  chosen, the share that chose the restored one, with an exact binomial test against 1/2 (scipy ``binomtest``).
* :func:`breakdown`: selection ratios by label or by data source.
* :func:`reading_times`: median (and quartiles of) reading time per reader and overall.
* :func:`agreement`: Fleiss' kappa (statsmodels) over cases read by several readers (``overlap`` studies).
* :func:`repeat_agreement`: how often a repeat read chose the same method as the first read.

* :func:`no_preference_rates` and :func:`selection_ratios_ties_split`: for studies that offer "no preference".

Counted reads: answered, non-practice queries (practice never reaches the tidy table), and for each reader and
case only the first answered read, so repeat reads never count twice in the ratios. A "no preference" answer is
a first read that chose nothing: the selection statistics (ratios, tests, pairwise, agreement) leave it out (their
``n`` is the reads that chose a method), :func:`no_preference_rates` reports how many there were, and
:func:`selection_ratios_ties_split` repeats the ratios with each one split equally among the methods it showed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import binomtest, chisquare
from statsmodels.stats.inter_rater import fleiss_kappa

from .selection import wilson_many

OVERALL = "overall"
ORIGINAL = "original"


def answered(tidy: pd.DataFrame) -> pd.Series:
    """Which rows are answered: a method chosen, or "no preference" (a study option)."""
    ties = tidy["no_preference"].astype(bool) if "no_preference" in tidy else False
    return tidy["chosen_method"].notna() | ties


def first_reads(tidy: pd.DataFrame) -> pd.DataFrame:
    """The first answered read per (study, reader, case), "no preference" answers included."""
    done = tidy[answered(tidy)].sort_values(["answered_at", "query_id"])
    return done.drop_duplicates(["study_id", "reader_id", "case_id"], keep="first")


def counted_reads(tidy: pd.DataFrame) -> pd.DataFrame:
    """The reads every selection statistic counts: first answered reads that chose a method ("no preference"
    answers are left out here and reported by :func:`no_preference_rates`)."""
    reads = first_reads(tidy)
    return reads[reads["chosen_method"].notna()]


def methods_of(tidy: pd.DataFrame, methods: Sequence[str] | None = None, original: str = ORIGINAL) -> list[str]:
    """The methods to report: as given, else every method shown (the original first, then by name)."""
    if methods:
        return list(methods)
    slot_cols = [c for c in tidy.columns if c.startswith("slot_") and c[5:].isdigit()]
    seen = sorted({str(v) for c in slot_cols for v in tidy[c].dropna()})
    return ([original] if original in seen else []) + [m for m in seen if m != original]


def _readers(reads: pd.DataFrame) -> list[str]:
    return list(reads.sort_values("reader_id")["reader"].drop_duplicates())


def _groups(reads: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    return [(name, reads[reads["reader"] == name]) for name in _readers(reads)] + [(OVERALL, reads)]


_wilson = wilson_many  # one Wilson interval for the whole package


def _ratio_rows(reads: pd.DataFrame, methods: list[str], alpha: float, key: str, name: str) -> list[dict[str, Any]]:
    n = len(reads)
    counts = reads["chosen_method"].value_counts()
    chosen = np.array([int(counts.get(m, 0)) for m in methods])
    lo, hi = _wilson(chosen, np.full(len(methods), n), alpha)
    return [
        {key: name, "method": m, "chosen": int(c), "n": n, "ratio": (c / n) if n else math.nan,
         "ci_low": float(low), "ci_high": float(high)}
        for m, c, low, high in zip(methods, chosen, lo, hi)
    ]


def selection_ratios(tidy: pd.DataFrame, *, methods: Sequence[str] | None = None, confidence: float = 0.95,
                     original: str = ORIGINAL) -> pd.DataFrame:
    """Long table: reader (each reader, then ``overall``), method, chosen, n, ratio, ci_low, ci_high."""
    reads = counted_reads(tidy)
    ms = methods_of(tidy, methods, original)
    rows: list[dict[str, Any]] = []
    for name, part in _groups(reads):
        rows += _ratio_rows(part, ms, 1 - confidence, "reader", name)
    return pd.DataFrame(rows, columns=["reader", "method", "chosen", "n", "ratio", "ci_low", "ci_high"])


def no_preference_rates(tidy: pd.DataFrame, *, confidence: float = 0.95) -> pd.DataFrame:
    """Per reader and overall: first answered reads, how many said "no preference", that share (Wilson interval)."""
    reads = first_reads(tidy)
    ties = reads["no_preference"].astype(bool) if "no_preference" in reads else pd.Series(False, index=reads.index)
    rows = []
    for name, part in _groups(reads):
        n, k = len(part), int(ties.loc[part.index].sum())
        lo, hi = _wilson(np.array([k]), np.array([n]), 1 - confidence)
        rows.append({"reader": name, "answered": n, "no_preference": k, "rate": k / n if n else math.nan,
                     "ci_low": float(lo[0]), "ci_high": float(hi[0])})
    return pd.DataFrame(rows, columns=["reader", "answered", "no_preference", "rate", "ci_low", "ci_high"])


def selection_ratios_ties_split(tidy: pd.DataFrame, *, methods: Sequence[str] | None = None,
                                confidence: float = 0.95, original: str = ORIGINAL) -> pd.DataFrame:
    """Sensitivity analysis for studies with "no preference": each such answer counts as 1/n for each of the n
    methods it showed, and ``n`` is every first answered read. Same columns as :func:`selection_ratios`; the
    chosen counts may be fractional (Wilson intervals on them are approximate)."""
    reads = first_reads(tidy)
    ms = methods_of(tidy, methods, original)
    slot_cols = [c for c in reads.columns if c.startswith("slot_") and c[5:].isdigit()]
    ties = reads["no_preference"].astype(bool) if "no_preference" in reads else pd.Series(False, index=reads.index)
    rows: list[dict[str, Any]] = []
    for name, part in _groups(reads):
        n = len(part)
        tied = part[ties.loc[part.index]]
        chosen = []
        for m in ms:
            share = sum(float((row[slot_cols] == m).sum()) / max(1, int(row["n_slots"])) for _, row in tied.iterrows())
            chosen.append(float((part["chosen_method"] == m).sum()) + share)
        lo, hi = _wilson(np.array(chosen), np.full(len(ms), n), 1 - confidence)
        rows += [{"reader": name, "method": m, "chosen": c, "n": n, "ratio": c / n if n else math.nan,
                  "ci_low": float(a), "ci_high": float(b)} for m, c, a, b in zip(ms, chosen, lo, hi)]
    return pd.DataFrame(rows, columns=["reader", "method", "chosen", "n", "ratio", "ci_low", "ci_high"])


def selection_table(tidy: pd.DataFrame, *, methods: Sequence[str] | None = None, value: str = "ratio",
                    original: str = ORIGINAL) -> pd.DataFrame:
    """Wide table (Tables III/IV): one row per reader and ``overall``, one column per method, plus ``n``."""
    long = selection_ratios(tidy, methods=methods, original=original)
    ms = methods_of(tidy, methods, original)
    order = list(dict.fromkeys(long["reader"]))
    wide = long.pivot(index="reader", columns="method", values=value).reindex(index=order, columns=ms)
    wide["n"] = long.groupby("reader")["n"].first().reindex(order)
    wide.columns.name = None
    return wide


def uniformity_tests(tidy: pd.DataFrame, *, methods: Sequence[str] | None = None,
                     original: str = ORIGINAL) -> pd.DataFrame:
    """Chi-square goodness of fit of the choice counts against uniform choice, per reader and overall.
    ``min_expected`` below 5 flags that the chi-square approximation is rough."""
    reads = counted_reads(tidy)
    ms = methods_of(tidy, methods, original)
    rows = []
    for name, part in _groups(reads):
        counts = part["chosen_method"].value_counts()
        obs = np.array([int(counts.get(m, 0)) for m in ms])
        n = int(obs.sum())
        stat, p = chisquare(obs) if n else (math.nan, math.nan)
        rows.append({"reader": name, "n": n, "chi2": float(stat), "dof": len(ms) - 1, "p_value": float(p),
                     "min_expected": n / len(ms) if ms else math.nan})
    return pd.DataFrame(rows, columns=["reader", "n", "chi2", "dof", "p_value", "min_expected"])


def pairwise_vs_original(tidy: pd.DataFrame, *, methods: Sequence[str] | None = None, original: str = ORIGINAL,
                         confidence: float = 0.95) -> pd.DataFrame:
    """For each restored method and reader (and overall): among reads that chose it or the original, the
    share choosing it (``preference``), Wilson interval, and a two-sided exact binomial test against 1/2."""
    reads = counted_reads(tidy)
    rows = []
    for method in [m for m in methods_of(tidy, methods, original) if m != original]:
        for name, part in _groups(reads):
            wins = int((part["chosen_method"] == method).sum())
            losses = int((part["chosen_method"] == original).sum())
            n = wins + losses
            lo, hi = _wilson(np.array([wins]), np.array([n]), 1 - confidence)
            p = binomtest(wins, n, 0.5).pvalue if n else math.nan
            rows.append({"method": method, "reader": name, "wins": wins, "losses": losses, "n": n,
                         "preference": wins / n if n else math.nan, "ci_low": float(lo[0]), "ci_high": float(hi[0]),
                         "p_value": float(p)})
    return pd.DataFrame(rows, columns=["method", "reader", "wins", "losses", "n", "preference", "ci_low", "ci_high",
                                       "p_value"])


def breakdown(tidy: pd.DataFrame, by: str = "label", *, methods: Sequence[str] | None = None,
              original: str = ORIGINAL, confidence: float = 0.95) -> pd.DataFrame:
    """Selection ratios (all readers pooled) per value of ``by`` (``label`` or ``source``)."""
    if by not in tidy.columns:
        raise KeyError(f"tidy table has no column {by!r}")
    reads = counted_reads(tidy)
    ms = methods_of(tidy, methods, original)
    rows: list[dict[str, Any]] = []
    for value, part in sorted(reads.groupby(by), key=lambda kv: str(kv[0])):
        rows += _ratio_rows(part, ms, 1 - confidence, by, str(value))
    return pd.DataFrame(rows, columns=[by, "method", "chosen", "n", "ratio", "ci_low", "ci_high"])


def reading_times(tidy: pd.DataFrame) -> pd.DataFrame:
    """Reading time in seconds of counted reads: n, median, first and third quartile, per reader and overall."""
    reads = counted_reads(tidy)
    rows = []
    for name, part in _groups(reads):
        t = part["reading_time_s"].dropna().astype(float)
        q1, med, q3 = (t.quantile([0.25, 0.5, 0.75]).tolist() if len(t) else [math.nan] * 3)
        rows.append({"reader": name, "n": len(t), "median_s": med, "q1_s": q1, "q3_s": q3})
    return pd.DataFrame(rows, columns=["reader", "n", "median_s", "q1_s", "q3_s"])


def agreement(tidy: pd.DataFrame, *, methods: Sequence[str] | None = None, original: str = ORIGINAL) -> dict[str, Any]:
    """Fleiss' kappa over the cases read by the largest common number of readers (at least two)."""
    reads = counted_reads(tidy)
    ms = methods_of(tidy, methods, original)
    raters = reads.groupby("case_id")["reader_id"].nunique()
    m = int(raters.max()) if len(raters) else 0
    if m < 2:
        return {"kappa": math.nan, "n_cases": 0, "n_raters": m,
                "note": "no case was read by two or more readers (split allocation?)"}
    cases = raters[raters == m].index
    table = (
        reads[reads["case_id"].isin(cases)]
        .groupby(["case_id", "chosen_method"]).size().unstack(fill_value=0)
        .reindex(columns=ms, fill_value=0)
    )
    kappa = float(fleiss_kappa(table.to_numpy(), method="fleiss"))
    return {"kappa": kappa, "n_cases": int(len(cases)), "n_raters": m, "note": ""}


def repeat_agreement(tidy: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Per reader and overall: answered repeat reads whose first read was answered, and the share that chose
    the same method again (intra-reader consistency), with a Wilson interval."""
    answered = tidy[tidy["chosen_method"].notna()]
    first = answered.set_index("query_id")["chosen_method"]
    rep = answered[answered["is_repeat"] & answered["repeat_of"].notna()].copy()
    rep = rep[rep["repeat_of"].isin(first.index)]
    rep["same"] = rep["chosen_method"].to_numpy() == first.reindex(rep["repeat_of"].astype("int64")).to_numpy()
    rows = []
    for name, part in _groups(rep) if len(rep) else [(OVERALL, rep)]:
        n, same = len(part), int(part["same"].sum()) if len(part) else 0
        lo, hi = _wilson(np.array([same]), np.array([n]), 1 - confidence)
        rows.append({"reader": name, "n": n, "same": same, "ratio": same / n if n else math.nan,
                     "ci_low": float(lo[0]), "ci_high": float(hi[0])})
    return pd.DataFrame(rows, columns=["reader", "n", "same", "ratio", "ci_low", "ci_high"])


def summary(tidy: pd.DataFrame, *, methods: Sequence[str] | None = None, original: str = ORIGINAL) -> dict[str, Any]:
    """Every table above, keyed by name (DataFrames, and a dict for ``agreement``)."""
    kw: dict[str, Any] = {"methods": methods, "original": original}
    return {
        "selection": selection_ratios(tidy, **kw),
        "table": selection_table(tidy, **kw),
        "uniformity": uniformity_tests(tidy, **kw),
        "pairwise": pairwise_vs_original(tidy, **kw),
        "by_label": breakdown(tidy, "label", **kw),
        "by_source": breakdown(tidy, "source", **kw),
        "reading_time": reading_times(tidy),
        "agreement": agreement(tidy, **kw),
        "repeats": repeat_agreement(tidy),
        "no_preference": no_preference_rates(tidy),
        "selection_ties_split": selection_ratios_ties_split(tidy, **kw),
    }


def _pct(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def _p(x: float) -> str:
    return "-" if math.isnan(x) else ("<0.001" if x < 0.001 else f"{x:.3f}")


def selection_wide(selection: pd.DataFrame) -> pd.DataFrame:
    """Tables III/IV: readers (then ``overall``) x methods, each cell "ratio % [low, high]", plus the number of
    counted reads ``n``; from the long :func:`selection_ratios` frame."""
    order = list(dict.fromkeys(selection["reader"]))
    ms = list(dict.fromkeys(selection["method"]))
    cells = selection.assign(cell=[f"{_pct(r)} [{_pct(lo)}, {_pct(hi)}]" for r, lo, hi in
                                   zip(selection["ratio"], selection["ci_low"], selection["ci_high"])])
    wide = cells.pivot(index="reader", columns="method", values="cell").reindex(index=order, columns=ms)
    wide.insert(0, "n", selection.groupby("reader")["n"].first().reindex(order))
    wide.index.name, wide.columns.name = "reader", None
    return wide


def format_selection_table(selection: pd.DataFrame) -> str:
    """Tables III/IV as text: selection ratio in percent with its 95% interval, one row per reader."""
    return selection_wide(selection).to_string()


def format_summary(s: dict[str, Any], title: str = "") -> str:
    """All tables of :func:`summary` as plain text."""
    out = []
    if title:
        out += [title, "=" * len(title), ""]
    out += ["Selection ratio, % [Wilson 95% CI] (Tables III/IV)", format_selection_table(s["selection"]), ""]
    uni = s["uniformity"].assign(p_value=lambda d: d["p_value"].map(_p))
    out += ["Chi-square test against uniform choice", uni.to_string(index=False, float_format="%.2f"), ""]
    pw = s["pairwise"]
    if len(pw):
        pw = pw.assign(preference=pw["preference"].map(_pct),
                       ci_95=[f"[{_pct(a)}, {_pct(b)}]" for a, b in zip(pw["ci_low"], pw["ci_high"])],
                       p_value=pw["p_value"].map(_p))
        pw = pw[["method", "reader", "wins", "losses", "n", "preference", "ci_95", "p_value"]]
        out += ["Restored vs original (share % choosing the restored one; exact binomial test vs 50%)",
                pw.to_string(index=False), ""]
    for key, head in (("by_label", "By label"), ("by_source", "By data source")):
        b = s[key]
        by = b.columns[0]
        out += [f"{head}, selection ratio %"]
        if len(b):
            w = b.assign(cell=b["ratio"].map(_pct)).pivot(index=by, columns="method", values="cell")
            w = w.reindex(columns=list(dict.fromkeys(b["method"])))
            w.insert(0, "n", b.groupby(by)["n"].first())
            w.columns.name = None
            out += [w.to_string()]
        out += [""]
    out += ["Reading time (s)", s["reading_time"].to_string(index=False, float_format="%.1f"), ""]
    ag = s["agreement"]
    kappa = "-" if math.isnan(ag["kappa"]) else f"{ag['kappa']:.3f}"
    out += [f"Fleiss' kappa: {kappa} over {ag['n_cases']} cases x {ag['n_raters']} readers {ag['note']}".rstrip(), ""]
    rep = s["repeats"]
    if len(rep) and rep["n"].sum():
        out += ["Repeat reads choosing the same method as the first read",
                rep.assign(ratio=rep["ratio"].map(_pct)).drop(columns=["ci_low", "ci_high"]).to_string(index=False), ""]
    return "\n".join(out)
