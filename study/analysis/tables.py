"""The dashboard's, the CLI's and the exports' tables, from the tidy vote table (:func:`study.export.tidy_votes`);
the full analysis (models, position, ranking, agreement) is the rest of this package.

* :func:`selection_ratios` / :func:`selection_table`: how often each method was chosen, per reader and overall
  (the paper's Tables III and IV). Each reader's row has a Wilson 95% interval (that reader's votes, one per case);
  the ``overall`` row pools readers whose votes are not independent (readers have tastes, cases differ), so its
  interval is the two-way (readers x cases) bootstrap (:func:`study.analysis.selection.clustered_ratio_intervals`),
  and a conservative Clopper-Pearson interval on an effective number of votes where the ratio is 0 or 1. Every
  row names its interval in ``ci_method``.
* :func:`uniformity_tests`: per reader, chi-square test of the choice counts against uniform choice (scipy
  ``chisquare``) with Holm-adjusted p-values over the readers; overall, a Wald test of the ratios against chance
  with a two-way (reader and case) clustered covariance and an F(q, clusters - 1) reference.
* :func:`pairwise_vs_original`: for each restored method, among the reads where either it or the original was
  chosen, the share that chose the restored one. Per reader: Wilson interval and exact binomial test against 1/2
  (scipy ``binomtest``); overall: two-way bootstrap interval and the two-way clustered logistic test
  (:func:`study.analysis.models.glm_share_test`). ``p_holm``: Holm-adjusted over the restored methods of the same
  row (one family per reader, one for overall).
* :func:`breakdown`: selection ratios (readers pooled, so two-way bootstrap intervals) by label or data source.
* :func:`reading_times`: median (and quartiles of) reading time per reader and overall.
* :func:`agreement`: Fleiss' kappa with its case-bootstrap interval: :func:`study.analysis.agreement.fleiss_report`,
  the one definition the full report uses too.
* :func:`repeat_agreement`: how often a repeat read chose the same method as the first read, with Cohen's kappa
  from :func:`study.analysis.agreement.repeat_agreement`.
* :func:`no_preference_rates` and :func:`selection_ratios_ties_split`: for studies that offer "no preference".

Counted reads are :func:`study.analysis.data.primary_votes`: answered first showings of a case to a reader (practice
never reaches the tidy table, repeat reads never count). A "no preference" answer is a first read that chose
nothing: the selection statistics (ratios, tests, pairwise, agreement) leave it out (their ``n`` is the reads that
chose a method), :func:`no_preference_rates` reports how many there were, and :func:`selection_ratios_ties_split`
repeats the ratios with each one split equally among the methods it showed. Bootstraps are seeded (``seed``), so
every table is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import binomtest, chisquare
from scipy.stats import f as f_dist

from . import agreement as _agreement
from . import data as _data
from .models import glm_share_test
from .robust import ratio_scores, two_way_cov
from .selection import BOOT_LABEL, clustered_ratio_intervals, effective_n, n_clusters, wilson_many

OVERALL = "overall"
ORIGINAL = "original"
#: Interval label of every per-reader row.
WILSON_LABEL = "Wilson"
#: Bootstrap replicates of the dashboard tables (fast: a few milliseconds per table for thousands of votes).
N_BOOT = 1000


def answered(tidy: pd.DataFrame) -> pd.Series:
    """Which rows are answered: a method chosen, or "no preference" (a study option)."""
    return _data.answered_mask(tidy) | _data.no_preference_mask(tidy)


def first_reads(tidy: pd.DataFrame) -> pd.DataFrame:
    """Each reader's answered first showing of each case, "no preference" answers included
    (:func:`study.analysis.data.first_reads`; refuses a table holding several studies)."""
    _data.validate_tidy(tidy)
    return _data.first_reads(tidy)


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
    key = "reader_id" if "reader_id" in reads else "reader"
    return list(reads.sort_values(key)["reader"].drop_duplicates())


def _groups(reads: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    return [(name, reads[reads["reader"] == name]) for name in _readers(reads)] + [(OVERALL, reads)]


def _codes(reads: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Integer reader and case codes of the reads (the clusters)."""
    return (pd.factorize(reads["reader"].astype(str))[0].astype(np.int64),
            pd.factorize(reads["case_key"].astype(str))[0].astype(np.int64))


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


_wilson = wilson_many  # one Wilson interval for the whole package


def _intervals(part: pd.DataFrame, numer: np.ndarray, denom_total: np.ndarray, alpha: float, *, pooled: bool,
               rng: np.random.Generator, n_boot: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per column of ``numer`` (votes x columns, counts out of every vote): Wilson for one reader's votes, the
    two-way bootstrap (conservative Clopper-Pearson when 0 or 1) when readers are pooled."""
    k = numer.sum(axis=0)
    if not pooled or len(part) == 0:
        lo, hi = _wilson(k, denom_total, alpha)
        return lo, hi, [WILSON_LABEL] * len(k)
    reader, case = _codes(part)
    res = clustered_ratio_intervals(reader, case, numer, np.ones_like(numer), rng=rng, n_boot=n_boot,
                                    level=1.0 - alpha)
    return res["low"], res["high"], res["method"]


def _ratio_rows(reads: pd.DataFrame, methods: list[str], alpha: float, key: str, name: str, *, pooled: bool = False,
                rng: np.random.Generator | None = None, n_boot: int = N_BOOT) -> list[dict[str, Any]]:
    n = len(reads)
    onehot = np.column_stack([(reads["chosen_method"] == m).to_numpy(dtype=float) for m in methods]) \
        if methods else np.zeros((n, 0))
    chosen = onehot.sum(axis=0) if n else np.zeros(len(methods))
    lo, hi, how = _intervals(reads, onehot, np.full(len(methods), n), alpha, pooled=pooled,
                             rng=rng if rng is not None else _rng(0), n_boot=n_boot)
    return [
        {key: name, "method": m, "chosen": int(c), "n": n, "ratio": (c / n) if n else math.nan,
         "ci_low": float(low), "ci_high": float(high), "ci_method": h}
        for m, c, low, high, h in zip(methods, chosen, lo, hi, how)
    ]


RATIO_COLUMNS = ["reader", "method", "chosen", "n", "ratio", "ci_low", "ci_high", "ci_method"]


def selection_ratios(tidy: pd.DataFrame, *, methods: Sequence[str] | None = None, confidence: float = 0.95,
                     original: str = ORIGINAL, n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """Long table: reader (each reader, then ``overall``), method, chosen, n, ratio, ci_low, ci_high, ci_method
    (Wilson per reader; two-way bootstrap overall, see the module doc)."""
    reads = counted_reads(tidy)
    ms = methods_of(tidy, methods, original)
    rng = _rng(seed)
    rows: list[dict[str, Any]] = []
    for name, part in _groups(reads):
        rows += _ratio_rows(part, ms, 1 - confidence, "reader", name, pooled=name == OVERALL, rng=rng, n_boot=n_boot)
    return pd.DataFrame(rows, columns=RATIO_COLUMNS)


def no_preference_rates(tidy: pd.DataFrame, *, confidence: float = 0.95, n_boot: int = N_BOOT,
                        seed: int = 0) -> pd.DataFrame:
    """Per reader and overall: first answered reads, how many said "no preference", that share (Wilson interval
    per reader, two-way bootstrap overall; ``ci_method`` says which)."""
    reads = first_reads(tidy)
    ties = _data.no_preference_mask(reads)
    rng = _rng(seed)
    rows = []
    for name, part in _groups(reads):
        n = len(part)
        tie = ties.loc[part.index].to_numpy(dtype=float)[:, None]
        lo, hi, how = _intervals(part, tie, np.array([n]), 1 - confidence, pooled=name == OVERALL, rng=rng,
                                 n_boot=n_boot)
        k = int(tie.sum())
        rows.append({"reader": name, "answered": n, "no_preference": k, "rate": k / n if n else math.nan,
                     "ci_low": float(lo[0]), "ci_high": float(hi[0]), "ci_method": how[0]})
    return pd.DataFrame(rows, columns=["reader", "answered", "no_preference", "rate", "ci_low", "ci_high", "ci_method"])


def selection_ratios_ties_split(tidy: pd.DataFrame, *, methods: Sequence[str] | None = None,
                                confidence: float = 0.95, original: str = ORIGINAL, n_boot: int = N_BOOT,
                                seed: int = 0) -> pd.DataFrame:
    """Sensitivity analysis for studies with "no preference": each such answer counts as 1/n for each of the n
    methods it showed, and ``n`` is every first answered read. Same columns as :func:`selection_ratios`; the
    chosen counts may be fractional (Wilson intervals on them are approximate)."""
    reads = first_reads(tidy)
    ms = methods_of(tidy, methods, original)
    slot_cols = [c for c in reads.columns if c.startswith("slot_") and c[5:].isdigit()]
    ties = _data.no_preference_mask(reads).to_numpy(dtype=float)
    n_slots = np.maximum(1, reads["n_slots"].to_numpy(dtype=float)) if len(reads) else np.ones(0)
    share = np.column_stack([
        (reads["chosen_method"] == m).to_numpy(dtype=float)
        + ties * (reads[slot_cols] == m).sum(axis=1).to_numpy(dtype=float) / n_slots
        for m in ms]) if ms else np.zeros((len(reads), 0))
    rng = _rng(seed)
    rows: list[dict[str, Any]] = []
    for name, part in _groups(reads):
        n = len(part)
        numer = share[reads.index.get_indexer(part.index)]
        chosen = numer.sum(axis=0) if n else np.zeros(len(ms))
        lo, hi, how = _intervals(part, numer, np.full(len(ms), n), 1 - confidence, pooled=name == OVERALL, rng=rng,
                                 n_boot=n_boot)
        rows += [{"reader": name, "method": m, "chosen": float(c), "n": n, "ratio": c / n if n else math.nan,
                  "ci_low": float(a), "ci_high": float(b), "ci_method": h}
                 for m, c, a, b, h in zip(ms, chosen, lo, hi, how)]
    return pd.DataFrame(rows, columns=RATIO_COLUMNS)


def selection_table(tidy: pd.DataFrame, *, methods: Sequence[str] | None = None, value: str = "ratio",
                    original: str = ORIGINAL, long: pd.DataFrame | None = None) -> pd.DataFrame:
    """Wide table (Tables III/IV): one row per reader and ``overall``, one column per method, plus ``n``
    (``long``: the :func:`selection_ratios` frame when already computed)."""
    long = selection_ratios(tidy, methods=methods, original=original) if long is None else long
    ms = methods_of(tidy, methods, original)
    order = list(dict.fromkeys(long["reader"]))
    wide = long.pivot(index="reader", columns="method", values=value).reindex(index=order, columns=ms)
    wide["n"] = long.groupby("reader")["n"].first().reindex(order)
    wide.columns.name = None
    return wide


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values of one family (NaN entries stay NaN and are not counted); the same numbers as
    statsmodels' ``multipletests(method="holm")`` (the tests check it), without its per-call overhead."""
    ps = np.asarray(p_values, dtype=float)
    out = np.full(ps.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(ps))
    if ok.size:
        order = ok[np.argsort(ps[ok], kind="stable")]
        steps = (ok.size - np.arange(ok.size)) * ps[order]
        out[order] = np.minimum(1.0, np.maximum.accumulate(steps))
    return out


UNIFORMITY_COLUMNS = ["reader", "n", "chi2", "dof", "df_denom", "p_value", "p_holm", "test", "min_expected"]


def _clustered_uniformity(part: pd.DataFrame, ms: list[str]) -> dict[str, Any]:
    """Overall test that every method is chosen 1/M of the time: Wald statistic of the ratios minus 1/M with the
    two-way clustered covariance, W/q referred to F(q, clusters - 1). When that covariance cannot be had (every
    vote for one method), Pearson's chi-square on the counts scaled down to one vote per cluster."""
    n, m = len(part), len(ms)
    reader, case = _codes(part)
    onehot = np.column_stack([(part["chosen_method"] == x).to_numpy(dtype=float) for x in ms])
    ratio, scores, bread = ratio_scores(onehot, np.ones_like(onehot))
    cc = two_way_cov(bread, scores, reader, case)
    d = (ratio - 1.0 / m)[:-1]  # the ratios add up to 1: drop one
    cov = cc.cov[:-1, :-1]
    rank = int(np.linalg.matrix_rank(cov, hermitian=True)) if np.all(np.isfinite(cov)) else 0
    if rank >= 1 and cc.df >= 1:
        # a method never (or always) chosen has no variance: the test then uses the directions that have some
        w = float(d @ np.linalg.pinv(cov, hermitian=True) @ d)
        part_note = "" if rank == m - 1 else f", {rank} of {m - 1} contrasts estimable"
        return {"chi2": w, "dof": rank, "df_denom": int(cc.df),
                "p_value": float(f_dist.sf(w / rank, rank, cc.df)),
                "test": f"Wald, {cc.kind} covariance, F({rank}, {int(cc.df)}){part_note}"}
    n_eff = effective_n(n, n_clusters(reader, case), None)
    obs = onehot.sum(axis=0) * n_eff / n
    stat, p = chisquare(obs)
    return {"chi2": float(stat), "dof": m - 1, "df_denom": math.nan, "p_value": float(p),
            "test": f"Pearson chi-square on {n_eff:.0f} effective votes (clustered variance not estimable)"}


def uniformity_tests(tidy: pd.DataFrame, *, methods: Sequence[str] | None = None,
                     original: str = ORIGINAL) -> pd.DataFrame:
    """Per reader: chi-square goodness of fit of the choice counts against uniform choice (``min_expected`` below
    5 flags that the approximation is rough), Holm-adjusted over the readers (``p_holm``). Overall: the two-way
    clustered Wald test (see :func:`_clustered_uniformity`), a single test (``p_holm`` = ``p_value``)."""
    reads = counted_reads(tidy)
    ms = methods_of(tidy, methods, original)
    rows = []
    for name, part in _groups(reads):
        counts = part["chosen_method"].value_counts()
        obs = np.array([int(counts.get(m, 0)) for m in ms])
        n = int(obs.sum())
        row: dict[str, Any] = {"reader": name, "n": n, "min_expected": n / len(ms) if ms else math.nan}
        if name == OVERALL and n and len(ms) >= 2:
            row.update(_clustered_uniformity(part, ms))
        else:
            stat, p = chisquare(obs) if n and len(ms) >= 2 else (math.nan, math.nan)
            row.update({"chi2": float(stat), "dof": len(ms) - 1, "df_denom": math.nan, "p_value": float(p),
                        "test": "Pearson chi-square"})
        rows.append(row)
    out = pd.DataFrame(rows, columns=UNIFORMITY_COLUMNS)
    per = out["reader"] != OVERALL
    out.loc[per, "p_holm"] = holm(out.loc[per, "p_value"])
    out.loc[~per, "p_holm"] = out.loc[~per, "p_value"]
    return out


PAIRWISE_COLUMNS = ["method", "reader", "wins", "losses", "n", "preference", "ci_low", "ci_high", "ci_method",
                    "p_value", "p_holm", "test"]


def _overall_pair_test(part: pd.DataFrame, method: str, original: str) -> tuple[float, str]:
    """Clustered test of "as often the restored method as the original" over all readers' votes, falling back to
    an exact binomial test on the effective number of votes when the model cannot be fitted."""
    pair = part[part["chosen_method"].isin([method, original])]
    if pair.empty:
        return math.nan, ""
    reader, case = _codes(pair)
    y = (pair["chosen_method"] == method).to_numpy(dtype=float)
    res = glm_share_test(pd.DataFrame({"y": y, "reader": reader, "case": case}), 0.5)
    if np.isfinite(res["p"]):
        return float(res["p"]), f"logistic, {res['variance']} SE, t({res['df']})"
    n_eff = max(1, int(math.floor(effective_n(len(y), n_clusters(reader, case), None))))
    k_eff = n_eff if y.mean() > 0.5 else (0 if y.mean() < 0.5 else n_eff // 2)
    return float(binomtest(k_eff, n_eff, 0.5).pvalue), f"exact binomial on {n_eff} effective votes ({res['error']})"


def pairwise_vs_original(tidy: pd.DataFrame, *, methods: Sequence[str] | None = None, original: str = ORIGINAL,
                         confidence: float = 0.95, n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """For each restored method and reader (and overall): among reads that chose it or the original, the share
    choosing it (``preference``) with its interval (``ci_method``: Wilson per reader, two-way bootstrap overall)
    and a two-sided test against 1/2 (``test``: exact binomial per reader; two-way clustered logistic overall).
    ``p_holm``: Holm-adjusted over the restored methods within the same reader (or within ``overall``)."""
    reads = counted_reads(tidy)
    restored = [m for m in methods_of(tidy, methods, original) if m != original]
    alpha = 1 - confidence
    rng = _rng(seed)
    rows = []
    for name, part in _groups(reads):
        chosen = part["chosen_method"]
        wins = np.array([int((chosen == m).sum()) for m in restored])
        losses = int((chosen == original).sum())
        n = wins + losses
        if name == OVERALL and len(part):
            numer = np.column_stack([(chosen == m).to_numpy(dtype=float) for m in restored]) if restored \
                else np.zeros((len(part), 0))
            denom = np.column_stack([chosen.isin([m, original]).to_numpy(dtype=float) for m in restored]) \
                if restored else np.zeros((len(part), 0))
            reader, case = _codes(part)
            res = clustered_ratio_intervals(reader, case, numer, denom, rng=rng, n_boot=n_boot, level=confidence)
            lo, hi, how = res["low"], res["high"], res["method"]
            tests = [_overall_pair_test(part, m, original) for m in restored]
        else:
            lo, hi = _wilson(wins, n, alpha)
            how = [WILSON_LABEL] * len(restored)
            tests = [(float(binomtest(int(w), int(k), 0.5).pvalue), "exact binomial") if k else (math.nan, "")
                     for w, k in zip(wins, n)]
        adjusted = holm([p for p, _ in tests])
        for j, method in enumerate(restored):
            rows.append({"method": method, "reader": name, "wins": int(wins[j]), "losses": losses, "n": int(n[j]),
                         "preference": wins[j] / n[j] if n[j] else math.nan, "ci_low": float(lo[j]),
                         "ci_high": float(hi[j]), "ci_method": how[j] if n[j] else "", "p_value": tests[j][0],
                         "p_holm": float(adjusted[j]), "test": tests[j][1]})
    out = pd.DataFrame(rows, columns=PAIRWISE_COLUMNS)
    order = {m: i for i, m in enumerate(restored)}
    readers = {r: i for i, r in enumerate(dict.fromkeys(out["reader"]))}
    return out.sort_values(["method", "reader"], key=lambda c: c.map(order if c.name == "method" else readers),
                           kind="stable").reset_index(drop=True)


def breakdown(tidy: pd.DataFrame, by: str = "label", *, methods: Sequence[str] | None = None,
              original: str = ORIGINAL, confidence: float = 0.95, n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """Selection ratios (all readers pooled, so two-way bootstrap intervals) per value of ``by`` (``label`` or
    ``source``)."""
    if by not in tidy.columns:
        raise KeyError(f"tidy table has no column {by!r}")
    reads = counted_reads(tidy)
    ms = methods_of(tidy, methods, original)
    rng = _rng(seed)
    rows: list[dict[str, Any]] = []
    for value, part in sorted(reads.groupby(by), key=lambda kv: str(kv[0])):
        rows += _ratio_rows(part, ms, 1 - confidence, by, str(value), pooled=True, rng=rng, n_boot=n_boot)
    return pd.DataFrame(rows, columns=[by] + RATIO_COLUMNS[1:])


def reading_times(tidy: pd.DataFrame) -> pd.DataFrame:
    """Reading time in seconds of counted reads: n, median, first and third quartile, per reader and overall."""
    reads = counted_reads(tidy)
    rows = []
    for name, part in _groups(reads):
        t = part["reading_time_s"].dropna().astype(float)
        q1, med, q3 = (t.quantile([0.25, 0.5, 0.75]).tolist() if len(t) else [math.nan] * 3)
        rows.append({"reader": name, "n": len(t), "median_s": med, "q1_s": q1, "q3_s": q3})
    return pd.DataFrame(rows, columns=["reader", "n", "median_s", "q1_s", "q3_s"])


def agreement(tidy: pd.DataFrame, *, methods: Sequence[str] | None = None, original: str = ORIGINAL,
              n_boot: int = N_BOOT, seed: int = 0, confidence: float = 0.95) -> dict[str, Any]:
    """Fleiss' kappa over the cases read by the most common number (>= 2) of readers, with its case-bootstrap
    interval and the raw share of agreeing reader pairs: :func:`study.analysis.agreement.fleiss_report` (the full
    report's definition). ``kappa`` is None (with a ``note``) when it cannot be computed. ``methods`` and
    ``original`` are accepted for symmetry with the other tables; kappa compares the methods picked."""
    _data.validate_tidy(tidy)
    res = _agreement.fleiss_report(tidy, rng=_rng(seed), n_boot=n_boot, level=confidence)
    res.setdefault("note", "")
    res["interval"] = "case bootstrap" if res.get("kappa") is not None else ""
    return res


REPEAT_COLUMNS = ["reader", "n", "same", "ratio", "ci_low", "ci_high", "ci_method", "kappa", "kappa_low",
                  "kappa_high", "flag"]


def repeat_agreement(tidy: pd.DataFrame, confidence: float = 0.95, *, n_boot: int = N_BOOT, seed: int = 0,
                     threshold: float = 0.6) -> pd.DataFrame:
    """Per reader and overall: answered repeat reads whose first read was answered (``n``), the share that chose
    the same method again (Wilson per reader, two-way bootstrap overall) and Cohen's kappa with its interval and
    flag from :func:`study.analysis.agreement.repeat_agreement` (pooled over readers on the overall row)."""
    _data.validate_tidy(tidy)
    pairs = _agreement.repeat_pairs(tidy)
    if pairs.empty:
        return pd.DataFrame([{"reader": OVERALL, "n": 0, "same": 0, "ratio": math.nan, "ci_low": math.nan,
                              "ci_high": math.nan, "ci_method": "", "kappa": math.nan, "kappa_low": math.nan,
                              "kappa_high": math.nan, "flag": False}], columns=REPEAT_COLUMNS)
    kappas = _agreement.repeat_agreement(tidy, threshold=threshold)
    by_reader = {r["reader"]: r for r in kappas["readers"]}
    pairs = pairs.assign(same=(pairs["first"] == pairs["repeat"]).astype(float))
    with_pairs = set(pairs["reader"])
    order = [str(r) for r in _readers(tidy) if str(r) in with_pairs]
    rng = _rng(seed)
    rows = []
    for name, part in [(r, pairs[pairs["reader"] == r]) for r in order] + [(OVERALL, pairs)]:
        n, same = len(part), int(part["same"].sum())
        lo, hi, how = _intervals(part, part[["same"]].to_numpy(), np.array([n]), 1 - confidence,
                                 pooled=name == OVERALL, rng=rng, n_boot=n_boot)
        k = kappas["pooled"] if name == OVERALL else by_reader[name]
        rows.append({"reader": name, "n": n, "same": same, "ratio": same / n if n else math.nan,
                     "ci_low": float(lo[0]), "ci_high": float(hi[0]), "ci_method": how[0],
                     "kappa": k["kappa"], "kappa_low": k["low"], "kappa_high": k["high"],
                     "flag": bool(k.get("flag", False))})
    return pd.DataFrame(rows, columns=REPEAT_COLUMNS)


def summary(tidy: pd.DataFrame, *, methods: Sequence[str] | None = None, original: str = ORIGINAL,
            n_boot: int = N_BOOT, seed: int = 0) -> dict[str, Any]:
    """Every table above, keyed by name (DataFrames, and a dict for ``agreement``). Refuses a table holding more
    than one study (``ValueError``)."""
    _data.validate_tidy(tidy)
    kw: dict[str, Any] = {"methods": methods, "original": original}
    boot: dict[str, Any] = {"n_boot": n_boot, "seed": seed}
    selection = selection_ratios(tidy, **kw, **boot)
    return {
        "selection": selection,
        "table": selection_table(tidy, **kw, long=selection),
        "uniformity": uniformity_tests(tidy, **kw),
        "pairwise": pairwise_vs_original(tidy, **kw, **boot),
        "by_label": breakdown(tidy, "label", **kw, **boot),
        "by_source": breakdown(tidy, "source", **kw, **boot),
        "reading_time": reading_times(tidy),
        "agreement": agreement(tidy, **kw, **boot),
        "repeats": repeat_agreement(tidy, **boot),
        "no_preference": no_preference_rates(tidy, **boot),
        "selection_ties_split": selection_ratios_ties_split(tidy, **kw, **boot),
    }


def _pct(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def _p(x: float) -> str:
    return "-" if x is None or math.isnan(x) else ("<0.001" if x < 0.001 else f"{x:.3f}")


def selection_wide(selection: pd.DataFrame) -> pd.DataFrame:
    """Tables III/IV: readers (then ``overall``) x methods, each cell "ratio % [low, high]", plus the number of
    counted reads ``n``; from the long :func:`selection_ratios` frame (:func:`interval_legend` says which interval
    each row carries)."""
    order = list(dict.fromkeys(selection["reader"]))
    ms = list(dict.fromkeys(selection["method"]))
    cells = selection.assign(cell=[f"{_pct(r)} [{_pct(lo)}, {_pct(hi)}]" for r, lo, hi in
                                   zip(selection["ratio"], selection["ci_low"], selection["ci_high"])])
    wide = cells.pivot(index="reader", columns="method", values="cell").reindex(index=order, columns=ms)
    wide.insert(0, "n", selection.groupby("reader")["n"].first().reindex(order))
    wide.index.name, wide.columns.name = "reader", None
    return wide


def interval_legend(selection: pd.DataFrame, what: str = "reader") -> list[str]:
    """Lines saying which 95% interval each row of a ratio table carries (and which cells fell back to the
    conservative interval for ratios of 0 or 1)."""
    if "ci_method" not in selection or selection.empty:
        return []
    key = selection.columns[0]
    lines = []
    if (selection[key] != OVERALL).any() and key == "reader":
        lines.append(f"each {what}'s row: {WILSON_LABEL} 95% interval (that {what}'s votes as independent reads)")
    pooled = selection[selection[key] == OVERALL] if key == "reader" else selection
    if len(pooled):
        lines.append(f"{'overall row' if key == 'reader' else 'every row'} (readers pooled): {BOOT_LABEL} 95% "
                     "interval, which allows for readers' tastes and cases' differences")
        odd = pooled[~pooled["ci_method"].isin([BOOT_LABEL, WILSON_LABEL, ""])]
        for _, r in odd.iterrows():
            where = f"{r[key]}, " if key != "reader" else ""
            lines.append(f"  {where}{r['method']} at {_pct(r['ratio'])}%: {r['ci_method']} (ratio 0 or 1: nothing "
                         "to bootstrap; conservative)")
    return lines


def format_selection_table(selection: pd.DataFrame) -> str:
    """Tables III/IV as text: selection ratio in percent with its 95% interval, one row per reader, and the
    legend of the intervals."""
    return "\n".join([selection_wide(selection).to_string()] + interval_legend(selection))


def format_summary(s: dict[str, Any], title: str = "") -> str:
    """All tables of :func:`summary` as plain text."""
    out = []
    if title:
        out += [title, "=" * len(title), ""]
    out += ["Selection ratio, % [95% CI] (Tables III/IV)", format_selection_table(s["selection"]), ""]
    uni = s["uniformity"].assign(p_value=lambda d: d["p_value"].map(_p), p_holm=lambda d: d["p_holm"].map(_p))
    uni = uni[["reader", "n", "chi2", "dof", "p_value", "p_holm", "test"]]
    out += ["Chi-square test against uniform choice (per reader: Pearson, Holm-adjusted over readers; overall: "
            "reader x case clustered Wald test)", uni.to_string(index=False, float_format="%.2f"), ""]
    pw = s["pairwise"]
    if len(pw):
        pw = pw.assign(preference=pw["preference"].map(_pct),
                       ci_95=[f"[{_pct(a)}, {_pct(b)}]" for a, b in zip(pw["ci_low"], pw["ci_high"])],
                       p_value=pw["p_value"].map(_p), p_holm=pw["p_holm"].map(_p))
        pw = pw[["method", "reader", "wins", "losses", "n", "preference", "ci_95", "p_value", "p_holm"]]
        out += ["Restored vs original (share % choosing the restored one, tested against 50%)",
                pw.to_string(index=False),
                "  per reader: Wilson interval, exact binomial test; overall: 2-way bootstrap interval, logistic test "
                "with reader x case clustered SE",
                "  p_holm: Holm-adjusted over the restored methods within each reader (and within overall)", ""]
    for key, head in (("by_label", "By label"), ("by_source", "By data source")):
        b = s[key]
        by = b.columns[0]
        out += [f"{head}, selection ratio % (readers pooled; 95% intervals in the exports: {BOOT_LABEL})"]
        if len(b):
            w = b.assign(cell=b["ratio"].map(_pct)).pivot(index=by, columns="method", values="cell")
            w = w.reindex(columns=list(dict.fromkeys(b["method"])))
            w.insert(0, "n", b.groupby(by)["n"].first())
            w.columns.name = None
            out += [w.to_string()]
        out += [""]
    out += ["Reading time (s)", s["reading_time"].to_string(index=False, float_format="%.1f"), ""]
    out += [format_fleiss(s["agreement"]), ""]
    rep = s["repeats"]
    if len(rep) and rep["n"].sum():
        shown = rep.assign(ratio=rep["ratio"].map(_pct),
                           kappa=[_kappa(k, lo, hi) for k, lo, hi in zip(rep["kappa"], rep["kappa_low"], rep["kappa_high"])],
                           flag=rep["flag"].map(lambda f: "FLAG" if f else ""))
        out += ["Repeat reads choosing the same method as the first read (same %, Cohen's kappa [95% CI])",
                shown[["reader", "n", "same", "ratio", "kappa", "flag"]].to_string(index=False), ""]
    return "\n".join(out)


def _kappa(k: Any, lo: Any, hi: Any) -> str:
    def num(x: Any) -> str:
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"

    return num(k) if num(lo) == "-" else f"{num(k)} [{num(lo)}, {num(hi)}]"


def format_fleiss(ag: dict[str, Any]) -> str:
    """One line: Fleiss' kappa with its interval and pair agreement, or why it was not computed."""
    if ag.get("kappa") is None:
        return f"Fleiss' kappa: not computed ({ag.get('note', '')})"
    ci = "" if ag.get("low") is None or math.isnan(ag["low"]) else f" [{ag['low']:.3f}, {ag['high']:.3f}]"
    return (f"Fleiss' kappa: {ag['kappa']:.3f}{ci} (95% case bootstrap) over {ag['cases']} of {ag['cases_total']} "
            f"cases read by {ag['raters']} readers each; readers agree on {100 * ag['pair_agreement']:.1f}% of "
            "reader pairs")
