"""The full analysis of a study (``full_report``) and its plain-text rendering (``format_report``).

``full_report`` takes the tidy table and returns a JSON-serialisable dict (NaN and infinities become None);
``format_report`` turns that dict into the tables ``python -m study stats --full`` prints. Every random step
(bootstraps) draws from its own stream derived from ``seed``, so a report is reproducible section by section.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .agreement import agreement
from .data import choice_data, primary_votes, validate_tidy
from .models import restored_models
from .position import position_bias
from .ranking import ranking
from .selection import restored_preferred, selection_ratios


def _study_summary(tidy: pd.DataFrame, methods: list[str], original: str) -> dict:
    ties = tidy["no_preference"].astype(bool) if "no_preference" in tidy else pd.Series(False, index=tidy.index)
    answered = tidy["chosen_method"].notna() | ties
    repeat = tidy["is_repeat"].astype(bool)
    primary = primary_votes(tidy)
    times = tidy.loc[answered, "reading_time_s"] if "reading_time_s" in tidy else pd.Series(dtype=float)
    return {
        "study_ids": sorted(int(s) for s in tidy["study_id"].unique()),
        "kinds": sorted(str(k) for k in tidy["study_kind"].unique()),
        "queries_shown": int(len(tidy)), "answered": int(answered.sum()), "unanswered": int((~answered).sum()),
        "no_preference": int(ties.sum()),
        "repeats_shown": int(repeat.sum()), "primary_votes": int(len(primary)),
        "readers": int(tidy["reader"].nunique()), "cases": int(tidy["case_key"].nunique()),
        "methods": methods, "original": original if original in methods else None,
        "median_reading_time_s": float(times.median()) if len(times) else None,
    }


def full_report(tidy: pd.DataFrame, *, original: str = "original", seed: int = 0, n_boot: int = 2000,
                alpha: float = 0.05, level: float = 0.95, kappa_threshold: float = 0.6, mixed: bool | None = None) -> dict:
    """Every statistic of the study: selection ratios (Wilson and two-way bootstrap), restored-vs-original (share,
    GEE, two-way clustered GLM, mixed model), position bias (slot table, chi-square, randomisation check,
    conditional logit net of position), Luce ranking with intervals, Fleiss' kappa, Krippendorff's alpha and
    repeat-read self-agreement. JSON-serialisable. ``mixed``: see ``models.restored_models`` (None: automatic)."""
    validate_tidy(tidy)
    data = choice_data(tidy, original)
    reference = original if original in data.methods else (data.methods[0] if data.methods else None)
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)]
    report: dict[str, Any] = {
        "study": _study_summary(tidy, data.methods, original),
        "settings": {"original": original, "reference": reference, "seed": seed, "n_boot": n_boot, "alpha": alpha,
                     "level": level, "kappa_threshold": kappa_threshold},
    }
    if data.n_queries == 0:
        report["note"] = "no answered first showings yet: nothing to analyse"
        return to_jsonable(report)
    report["selection"] = {
        "methods": selection_ratios(data, rng=streams[0], n_boot=n_boot, level=level),
        "restored_vs_original": restored_preferred(data, original, rng=streams[0], n_boot=n_boot, level=level),
    }
    report["models"] = restored_models(data, original, level=level, mixed=mixed)
    report["position"] = position_bias(data, reference, alpha=alpha, level=level, rng=streams[3],
                                       n_rep=max(200, min(n_boot, 1000)))
    report["ranking"] = {"reference": reference,
                         "methods": ranking(data, reference, rng=streams[1], n_boot=n_boot, level=level)}
    report["agreement"] = agreement(tidy, rng=streams[2], n_boot=n_boot, threshold=kappa_threshold, level=level)
    return to_jsonable(report)


def to_jsonable(obj: Any) -> Any:
    """Plain Python containers and numbers; NaN/inf become None."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [to_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(float(obj)) else None
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


# ----------------------------------------------------------------------------------------------- formatting


def _num(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    return f"{x:.3g}" if abs(x) >= 1000 else f"{x:.{digits}f}"


def _ci(lo: Any, hi: Any, digits: int = 3) -> str:
    return "-" if lo is None or hi is None else f"[{_num(lo, digits)}, {_num(hi, digits)}]"


def _p(p: Any) -> str:
    if p is None:
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "  ") -> str:
    """A plain-text table: left-aligned first column, right-aligned others."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: list[str]) -> str:
        return indent + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    rule = indent + "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


def _section(title: str) -> str:
    return f"\n{title}\n{'=' * len(title)}"


def _fmt_study(rep: dict) -> list[str]:
    s = rep["study"]
    return [_section("Study"),
            f"  studies {s['study_ids']} ({', '.join(s['kinds'])}); {s['readers']} readers, {s['cases']} cases, "
            f"methods: {', '.join(s['methods'])}",
            f"  {s['queries_shown']} queries shown, {s['answered']} answered, {s['unanswered']} unanswered, "
            f"{s['repeats_shown']} repeat showings; {s['primary_votes']} primary votes (answered first showings) "
            "count in every ratio below"
            + (f"; {s['no_preference']} \"no preference\" answers are left out of them" if s.get("no_preference") else ""),
            f"  median reading time {_num(s['median_reading_time_s'], 1)} s"]


def _fmt_selection(rep: dict) -> list[str]:
    lvl = int(round(100 * rep["settings"]["level"]))
    rows = [[r["method"], f"{r['chosen']}/{r['shown']}", _num(r["ratio"]), _num(r["chance"]),
             _ci(r["wilson_low"], r["wilson_high"]), _ci(r["boot_low"], r["boot_high"]),
             _ci(r["cluster_low"], r["cluster_high"])]
            for r in rep["selection"]["methods"]]
    rv = rep["selection"]["restored_vs_original"]
    if rv:
        rows.append(["restored (any)", f"{rv['restored_chosen']}/{rv['queries']}", _num(rv["ratio"]), _num(rv["chance"]),
                     _ci(rv["wilson_low"], rv["wilson_high"]), _ci(rv["boot_low"], rv["boot_high"]),
                     _ci(rv["cluster_low"], rv["cluster_high"])])
    out = [_section("Selection ratios (primary votes)"),
           table(["method", "chosen/shown", "ratio", "chance", f"Wilson {lvl}%", f"2-way bootstrap {lvl}%",
                  f"2-way clustered {lvl}%"], rows)]
    if rv:
        out.append("  restored (any) = a restored version preferred over the original")
    return out


def _fmt_models(rep: dict) -> list[str]:
    m = rep.get("models")
    if not m:
        return []
    out = [_section("Restored preferred over original: models with reader and case effects")]
    rows = []
    for key, label in (("gee", "GEE, reader clusters (exchangeable)"), ("glm_two_way", "GLM, reader + case clustered SE")):
        r = m[key]
        rows.append([label, "-", "-"] if "error" in r else [label, _num(r["p"]), _ci(r["low"], r["high"])])
    out.append(table(["model", "P(restored)", "95% interval"], rows))
    mx = m.get("mixed")
    if mx and "error" not in mx:
        out.append(f"  mixed model (random reader and case intercepts): typical reader on a typical case "
                   f"P(restored) = {_num(mx['p_typical'])}; reader SD {_num(mx['reader_sd'], 2)} "
                   f"{_ci(mx['reader_sd_low'], mx['reader_sd_high'], 2)}, case SD {_num(mx['case_sd'], 2)} "
                   f"{_ci(mx['case_sd_low'], mx['case_sd_high'], 2)} (log-odds scale)")
    elif mx:
        out.append(f"  mixed model: {mx['error']}")
    if "within_reader_corr" in m["gee"]:
        out.append(f"  GEE within-reader correlation {_num(m['gee']['within_reader_corr'])}")
    return out


def _fmt_position(rep: dict) -> list[str]:
    pos = rep["position"]
    sel = {r["method"]: r for r in rep["selection"]["methods"]}
    left = [[r["slot"], r["chosen"], _num(r["expected"], 1), _num(r["share"])] for r in pos["by_slot"]]
    right = [[m, sel[m]["chosen"], _num(sel[m]["ratio"])] for m in sel]
    n = max(len(left), len(right))
    rows = [(left[i] if i < len(left) else ["", "", "", ""]) + [" |"] + (right[i] if i < len(right) else ["", "", ""])
            for i in range(n)]
    verdict = "POSITION BIAS DETECTED" if pos["fires"] else "no evidence of position bias"
    out = [_section("Position bias"),
           table(["slot", "chosen", "expected", "share", " |", "method", "chosen", "ratio"], rows),
           f"  chi-square vs uniform slots: {_num(pos['chi2'], 2)} on {pos['df']} df, p = {_p(pos['p'])} -> {verdict} "
           f"(alpha {pos['alpha']})"]
    flagged = [r for r in pos["per_reader"] if r["flag"]]
    prow = [[r["reader"], r["votes"], " ".join(str(o) for o in r["observed"]), _num(r["chi2"], 2), _p(r["p"]),
             _p(r["p_holm"]), "FLAG" if r["flag"] else ""] for r in pos["per_reader"]]
    out.append(table(["reader", "votes", "picks by slot", "chi2", "p", "p (Holm)", ""], prow))
    if flagged:
        out.append(f"  readers with a slot preference: {', '.join(r['reader'] for r in flagged)}")
    rnd = pos["randomisation"]
    out.append(f"  randomisation check (method x slot shown vs an even spread): X2 = {_num(rnd['chi2'], 2)}, "
               f"p = {_p(rnd['p'])} ({rnd['reshuffles']} computer reshufflings)")
    model = pos["model"]
    if "error" in model:
        out.append(f"  conditional logit: {model['error']}")
        return out
    mrows = [[r["term"], _num(r["odds_ratio"], 2), _ci(r["or_low"], r["or_high"], 2), _p(r["p"]), _num(r["net_worth"])]
             for r in model["methods"]]
    out.append(f"  conditional logit (choice among shown alternatives), methods vs {model['reference']}, net of slot:")
    out.append(table(["method", "odds ratio", "95% CI", "p", "net worth"], mrows, indent="    "))
    srows = [[r["term"], _num(r["odds_ratio"], 2), _ci(r["or_low"], r["or_high"], 2), _p(r["p"])] for r in model["slots"]]
    if srows:
        w = model["slot_wald"]
        out.append("  slot effects vs slot 1 (same method):")
        out.append(table(["slot", "odds ratio", "95% CI", "p"], srows, indent="    "))
        out.append(f"    joint Wald test of all slot effects: {_num(w['chi2'], 2)} on {w['df']} df, p = {_p(w['p'])}")
    for note in model.get("notes", []):
        out.append(f"    note: {note}")
    return out


def _fmt_ranking(rep: dict) -> list[str]:
    rk = rep["ranking"]
    rows = [[r["rank"], r["method"], f"{r['wins']}/{r['shown']}", _num(r["worth"]), _ci(r["worth_low"], r["worth_high"]),
             _num(r["ratio_to_ref"], 2), _ci(r["ratio_low"], r["ratio_high"], 2),
             "-" if r["rank_low"] is None else f"{r['rank_low']}-{r['rank_high']}", _num(r["p_best"], 2)]
            for r in rk["methods"]]
    return [_section("Ranking (Luce / Plackett-Luce worths)"),
            table(["rank", "method", "wins/shown", "worth", "bootstrap 95%", f"x {rk['reference']}", "model 95%",
                   "rank 95%", "P(best)"], rows)]


def _fmt_agreement(rep: dict) -> list[str]:
    ag = rep["agreement"]
    out = [_section("Agreement between readers")]
    f = ag["fleiss"]
    if f.get("kappa") is None:
        out.append(f"  Fleiss' kappa: not computed ({f.get('note', '')})")
    else:
        out.append(f"  Fleiss' kappa {_num(f['kappa'])} {_ci(f['low'], f['high'])} over {f['cases']} of {f['cases_total']} "
                   f"cases read by {f['raters']} readers each; readers agree on {_num(100 * f['pair_agreement'], 1)}% "
                   "of reader pairs")
    k = ag["krippendorff"]
    if k.get("alpha") is None:
        out.append(f"  Krippendorff's alpha: not computed ({k.get('note', '')})")
    else:
        out.append(f"  Krippendorff's alpha (nominal) {_num(k['alpha'])} {_ci(k['low'], k['high'])} over {k['cases']} "
                   f"cases with 2+ readers ({k['values']} votes)")
    rp = ag["repeats"]
    out.append(_section("Repeat reads (self-agreement)"))
    if not rp["readers"]:
        out.append(f"  {rp.get('note', 'no repeat reads')}")
        return out
    rows = [[r["reader"], r["pairs"], _num(100 * r["agreement"], 1) if r["agreement"] is not None else "-",
             _num(r["kappa"]), _ci(r["low"], r["high"]), "FLAG" if r["flag"] else "",
             f"< {rp['min_pairs']} pairs: unreliable" if r["few_pairs"] else ""] for r in rp["readers"]]
    out.append(table(["reader", "pairs", "same %", "Cohen kappa", "95% CI", f"< {rp['threshold']}", ""], rows))
    pooled = rp["pooled"]
    out.append(f"  all readers pooled: kappa {_num(pooled['kappa'])} {_ci(pooled['low'], pooled['high'])} "
               f"over {pooled['pairs']} pairs")
    return out


def format_report(report: dict) -> str:
    """Readable plain-text tables for every part of a ``full_report``."""
    parts = _fmt_study(report)
    if "selection" not in report:
        return "\n".join(parts + [f"  {report.get('note', 'nothing to analyse')}"]) + "\n"
    for fmt in (_fmt_selection, _fmt_models, _fmt_position, _fmt_ranking, _fmt_agreement):
        parts.extend(fmt(report))
    return "\n".join(parts).lstrip("\n") + "\n"
