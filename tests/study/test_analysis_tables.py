"""Statistics on the tidy table: ratios and Wilson intervals, repeats counted once, tests, breakdowns, kappa."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest, chisquare
from statsmodels.stats.inter_rater import fleiss_kappa
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from study.analysis import tables as st
from study.analysis.models import glm_share_test
from study.analysis.selection import BOOT_LABEL

METHODS = ["original", "cnn-x1", "cnn-compact-x3", "op-q3-x3", "op-q5-x3"]
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _tidy(reads: list[tuple[str, int, str | None]], *, repeats: dict[int, int] | None = None,
          labels: dict[int, str] | None = None) -> pd.DataFrame:
    """Rows (reader, case, chosen method or None); ``repeats`` maps row index -> index of the first read."""
    rng = np.random.default_rng(0)
    readers = {name: i + 1 for i, name in enumerate(dict.fromkeys(r for r, _, _ in reads))}
    rows = []
    for i, (reader, case, chosen) in enumerate(reads):
        order = [METHODS[j] for j in rng.permutation(5)]
        shown = T0 + timedelta(minutes=i)
        rep = (repeats or {}).get(i)
        rows.append({
            "study_id": 1, "study_kind": "restoration", "query_id": 100 + i, "reader": reader,
            "reader_id": readers[reader], "case_id": case, "case_key": f"c{case}",
            "label": (labels or {}).get(case, "covid" if case % 2 else "control"),
            "source": "ieee" if case % 3 else "nih", "is_repeat": rep is not None,
            "repeat_of": 100 + rep if rep is not None else None, "n_slots": 5,
            **{f"slot_{k + 1}": order[k] for k in range(5)},
            "chosen_method": chosen, "chosen_slot": order.index(chosen) + 1 if chosen else None,
            "confidence": 3 if chosen else None, "comment": None, "shown_at": shown,
            "answered_at": shown + timedelta(seconds=5 + i % 7) if chosen else None,
            "reading_time_s": float(5 + i % 7) if chosen else math.nan,
        })
    df = pd.DataFrame(rows)
    df["repeat_of"] = df["repeat_of"].astype("Int64")
    df["shown_at"] = pd.to_datetime(df["shown_at"], utc=True)
    df["answered_at"] = pd.to_datetime(df["answered_at"], utc=True)
    return df


def _random_reads(n_readers: int = 3, n_cases: int = 30, seed: int = 1) -> list[tuple[str, int, str | None]]:
    rng = np.random.default_rng(seed)
    p = np.array([0.1, 0.15, 0.35, 0.2, 0.2])
    return [(f"reader{r}", c, str(rng.choice(METHODS, p=p))) for r in range(n_readers) for c in range(n_cases)]


def test_selection_ratios_and_wilson_intervals() -> None:
    reads = _random_reads()
    reads[3] = (reads[3][0], reads[3][1], None)  # one shown but unanswered query
    tidy = _tidy(reads)
    sel = st.selection_ratios(tidy, methods=METHODS)
    assert list(dict.fromkeys(sel["reader"])) == ["reader0", "reader1", "reader2", "overall"]
    answered = [r for r in reads if r[2] is not None]
    for name in ["reader0", "overall"]:
        mine = [r for r in answered if name == "overall" or r[0] == name]
        for method in METHODS:
            row = sel[(sel["reader"] == name) & (sel["method"] == method)].iloc[0]
            k = sum(1 for r in mine if r[2] == method)
            assert (row["chosen"], row["n"]) == (k, len(mine))
            assert row["ratio"] == pytest.approx(k / len(mine))
            if name == "overall":  # readers pooled: the two-way (reader x case) bootstrap, seeded
                assert row["ci_method"] == BOOT_LABEL and row["ci_low"] <= row["ratio"] <= row["ci_high"]
            else:  # one reader's votes: Wilson
                lo, hi = proportion_confint(k, len(mine), alpha=0.05, method="wilson")
                assert row["ci_method"] == "Wilson" and (row["ci_low"], row["ci_high"]) == pytest.approx((lo, hi))
    overall = sel[sel["reader"] == "overall"]
    again = st.selection_ratios(tidy, methods=METHODS)
    assert again[["ci_low", "ci_high"]].equals(sel[["ci_low", "ci_high"]])  # reproducible (seeded)
    # readers differ here, so the pooled interval is wider than Wilson's, which treats all 89 votes as independent
    w_lo, w_hi = proportion_confint(overall["chosen"], overall["n"], alpha=0.05, method="wilson")
    assert ((overall["ci_high"] - overall["ci_low"]).to_numpy() > (w_hi - w_lo).to_numpy()).all()
    table = st.selection_table(tidy, methods=METHODS)
    assert list(table.columns) == METHODS + ["n"]
    assert table.loc["overall", METHODS].sum() == pytest.approx(1.0)


def test_repeats_never_count_twice() -> None:
    reads = [("a", 1, "cnn-x1"), ("a", 2, "original"), ("a", 1, "op-q5-x3"), ("b", 1, "cnn-x1")]
    tidy = _tidy(reads, repeats={2: 0})
    sel = st.selection_ratios(tidy, methods=METHODS)
    a = sel[sel["reader"] == "a"].set_index("method")
    assert a.loc["cnn-x1", "chosen"] == 1 and a.loc["op-q5-x3", "chosen"] == 0 and a["n"].iloc[0] == 2
    rep = st.repeat_agreement(tidy).set_index("reader")
    assert (rep.loc["a", "n"], rep.loc["a", "same"]) == (1, 0)


def test_uniformity_and_pairwise_tests_use_the_counts() -> None:
    tidy = _tidy(_random_reads(seed=5))
    reads = st.counted_reads(tidy)
    uni = st.uniformity_tests(tidy, methods=METHODS).set_index("reader")
    obs = [int((reads["chosen_method"] == m).sum()) for m in METHODS]
    # per reader: Pearson chi-square on that reader's counts, Holm over the readers
    per = []
    for name in ("reader0", "reader1", "reader2"):
        mine = reads[reads["reader"] == name]
        per.append(chisquare([int((mine["chosen_method"] == m).sum()) for m in METHODS]).pvalue)
        assert uni.loc[name, "p_value"] == pytest.approx(per[-1]) and uni.loc[name, "dof"] == 4
    assert uni.loc[["reader0", "reader1", "reader2"], "p_holm"].to_numpy() == pytest.approx(
        multipletests(per, method="holm")[1])
    # overall: the clustered Wald test, on F(4, min(readers, cases) - 1) = F(4, 2)
    # (3 readers: a reader-clustered covariance has rank <= 2, so the Wald test uses the contrasts it can estimate)
    dof, test = int(uni.loc["overall", "dof"]), uni.loc["overall", "test"]
    assert uni.loc["overall", "n"] == sum(obs) and 1 <= dof <= 4 and (dof == 4 or f"{dof} of 4 contrasts" in test)
    assert uni.loc["overall", "df_denom"] == 2 and test.startswith("Wald") and f"F({dof}, 2)" in test
    assert 0.0 < uni.loc["overall", "p_value"] <= 1.0
    pw = st.pairwise_vs_original(tidy, methods=METHODS)
    assert set(pw["method"]) == set(METHODS[1:])
    row = pw[(pw["method"] == "cnn-compact-x3") & (pw["reader"] == "overall")].iloc[0]
    wins, losses = obs[2], obs[0]
    assert (row["wins"], row["losses"]) == (wins, losses) and row["test"].startswith("logistic")
    assert row["p_value"] == pytest.approx(glm_share_test(_pair_frame(reads, "cnn-compact-x3"))["p"])
    mine = reads[reads["reader"] == "reader1"]
    r1 = pw[(pw["method"] == "cnn-compact-x3") & (pw["reader"] == "reader1")].iloc[0]
    w1, l1 = int((mine["chosen_method"] == "cnn-compact-x3").sum()), int((mine["chosen_method"] == "original").sum())
    assert (r1["wins"], r1["losses"]) == (w1, l1)
    assert r1["p_value"] == pytest.approx(binomtest(w1, w1 + l1, 0.5).pvalue)
    fam = pw[pw["reader"] == "reader1"]
    assert fam["p_holm"].to_numpy() == pytest.approx(multipletests(fam["p_value"], method="holm")[1])


def _pair_frame(reads: pd.DataFrame, method: str) -> pd.DataFrame:
    pair = reads[reads["chosen_method"].isin([method, "original"])]
    return pd.DataFrame({"y": (pair["chosen_method"] == method).to_numpy(dtype=float),
                         "reader": pair["reader"].to_numpy(), "case": pair["case_key"].to_numpy()})


def test_breakdowns_and_reading_time() -> None:
    tidy = _tidy(_random_reads(n_readers=2, n_cases=12))
    by_label = st.breakdown(tidy, "label", methods=METHODS)
    assert set(by_label["label"]) == {"covid", "control"}
    assert by_label.groupby("label")["ratio"].sum().tolist() == pytest.approx([1.0, 1.0])
    assert by_label.groupby("label")["n"].first().sum() == 24
    by_source = st.breakdown(tidy, "source", methods=METHODS)
    assert set(by_source["source"]) == {"ieee", "nih"}
    rt = st.reading_times(tidy).set_index("reader")
    assert rt.loc["overall", "median_s"] == pytest.approx(tidy["reading_time_s"].median())


def test_fleiss_kappa_over_shared_cases() -> None:
    same = _tidy([(r, c, METHODS[c % 5]) for r in ("a", "b", "c") for c in range(10)])
    assert st.agreement(same)["kappa"] == pytest.approx(1.0)
    reads = _random_reads(n_readers=3, n_cases=20, seed=9)
    ag = st.agreement(_tidy(reads), methods=METHODS)
    table = np.zeros((20, 5))
    for _, c, m in reads:
        table[c, METHODS.index(m)] += 1
    assert ag["kappa"] == pytest.approx(fleiss_kappa(table, method="fleiss"))
    assert (ag["raters"], ag["cases"], ag["cases_total"]) == (3, 20, 20)
    assert ag["low"] <= ag["kappa"] <= ag["high"] and ag["interval"] == "case bootstrap"
    split = _tidy([("a", 1, "original"), ("b", 2, "cnn-x1")])
    res = st.agreement(split)
    assert res["kappa"] is None and "read by the same number" in res["note"]
    assert "not computed" in st.format_fleiss(res)


def test_summary_text_has_every_section() -> None:
    text = st.format_summary(st.summary(_tidy(_random_reads()), methods=METHODS), title="demo")
    for head in ("Tables III/IV", "Chi-square", "Restored vs original", "By label", "By data source",
                 "Reading time", "Fleiss' kappa"):
        assert head in text
    assert "overall" in text and "cnn-compact-x3" in text


def test_empty_table_does_not_crash() -> None:
    empty = _tidy([("a", 1, None)])
    text = st.format_summary(st.summary(empty, methods=METHODS))
    assert "Selection ratio" in text


def test_no_preference_answers_are_left_out_and_reported(factory, make_study) -> None:
    """A study offering "no preference": such answers count as answered, stay out of the ratios, are reported per
    reader, and split equally among the shown methods in the sensitivity analysis."""
    from study.accounts import start_sitting
    from study.analysis import tables as stats
    from study.export import tidy_votes
    from study.voting import NO_PREFERENCE, next_query, submit_vote

    built = make_study(factory, readers=("r1",), n_cases=4, no_preference=True)
    rid = built.readers["r1"]
    with factory.begin() as s:
        sitting = start_sitting(s, rid).id
    for answer in (1, NO_PREFERENCE, 2, NO_PREFERENCE):
        with factory.begin() as s:
            view = next_query(s, rid, sitting_id=sitting)
            submit_vote(s, rid, view.query_token, answer, sitting_id=sitting)
    with factory.begin() as s:
        tidy = tidy_votes(s, built.study_id)
    assert int(stats.answered(tidy).sum()) == 4 and int(tidy["no_preference"].sum()) == 2
    assert tidy.loc[tidy["no_preference"], "chosen_method"].isna().all()
    sel = stats.selection_ratios(tidy)
    assert set(sel["n"]) == {2}  # the two reads that chose an image
    ties = stats.no_preference_rates(tidy).set_index("reader")
    assert ties.loc["overall", ["answered", "no_preference"]].tolist() == [4, 2] and ties.loc["overall", "rate"] == 0.5
    split = stats.selection_ratios_ties_split(tidy)
    overall = split[split["reader"] == "overall"]
    n_methods = int(tidy["n_slots"].iloc[0])
    assert set(overall["n"]) == {4} and overall["chosen"].sum() == pytest.approx(4.0)  # every read counted once
    assert overall["chosen"].min() >= 2 / n_methods - 1e-9  # each method got its share of the two ties
    assert "no_preference" in stats.summary(tidy)
