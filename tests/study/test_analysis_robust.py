"""Clustered covariances, Holm, the conservative interval for ratios of 0 or 1, one-study tables and first reads
(study.analysis.robust, selection, tables, data): each against statsmodels or a hand computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy.stats import beta
from statsmodels.stats.multitest import multipletests

from study.analysis import tables
from study.analysis.data import first_reads, primary_votes, validate_tidy
from study.analysis.models import glm_share_test, glm_two_way
from study.analysis.robust import cluster_cov, ratio_scores, two_way_cov
from study.analysis.selection import clustered_ratio_intervals, degenerate_interval, effective_n
from study.simulate import SimReader, simulate_tidy

METHODS = ["original", "cnn-x1", "op-q3-x3"]


def _votes(n_readers: int = 6, n_cases: int = 40, seed: int = 0) -> pd.DataFrame:
    """Binary outcomes with reader and case effects (logit scale)."""
    rng = np.random.default_rng(seed)
    r_eff, c_eff = rng.normal(0, 1.0, n_readers), rng.normal(0, 1.0, n_cases)
    reader, case = np.repeat(np.arange(n_readers), n_cases), np.tile(np.arange(n_cases), n_readers)
    p = 1.0 / (1.0 + np.exp(-(0.4 + r_eff[reader] + c_eff[case])))
    return pd.DataFrame({"y": (rng.random(p.size) < p).astype(float), "reader": reader, "case": case})


def _glm_parts(frame: pd.DataFrame):
    res = sm.GLM(frame["y"].to_numpy(), np.ones((len(frame), 1)), family=sm.families.Binomial()).fit()
    return res, np.asarray(res.model.score_obs(res.params)), np.asarray(res.cov_params())


def test_one_way_cluster_cov_equals_statsmodels():
    frame = _votes()
    res, scores, bread = _glm_parts(frame)
    for col in ("reader", "case"):
        ref = sm.GLM(frame["y"].to_numpy(), np.ones((len(frame), 1)), family=sm.families.Binomial()).fit(
            cov_type="cluster", cov_kwds={"groups": frame[col].to_numpy()})
        assert cluster_cov(bread, scores, frame[col].to_numpy()) == pytest.approx(np.asarray(ref.cov_params()))


def test_two_way_cov_is_the_inclusion_exclusion_sum_or_the_larger_one_way():
    frame = _votes()
    _, scores, bread = _glm_parts(frame)
    r, c = frame["reader"].to_numpy(), frame["case"].to_numpy()
    v_r, v_c = cluster_cov(bread, scores, r), cluster_cov(bread, scores, c)
    v_rc = cluster_cov(bread, scores, np.column_stack([r, c]))
    cc = two_way_cov(bread, scores, r, c)
    assert cc.df == min(6, 40) - 1 and cc.clusters == {"readers": 6, "cases": 40}
    if (v_r + v_c - v_rc)[0, 0] > 0:
        assert cc.kind.startswith("two-way") and cc.cov == pytest.approx(v_r + v_c - v_rc) and not cc.notes
    # string labels work as well as integer codes (the (reader, case) pairs included)
    same = two_way_cov(bread, scores, np.array([f"r{x}" for x in r], dtype=object), np.array([f"c{x}" for x in c], dtype=object))
    assert same.cov == pytest.approx(cc.cov)
    # a negative two-way variance: the larger one-way one, with a note (constructed: scores that cancel per case)
    scores2 = np.where(np.arange(len(r)) % 2, 1.0, -1.0)[:, None] * (1 + (c % 2))[:, None]
    order = np.argsort(c, kind="stable")
    neg = two_way_cov(np.eye(1), scores2[order], r, c[order])
    vr2, vc2 = cluster_cov(np.eye(1), scores2[order], r), cluster_cov(np.eye(1), scores2[order], c[order])
    vrc2 = cluster_cov(np.eye(1), scores2[order], np.column_stack([r, c[order]]))
    if (vr2 + vc2 - vrc2)[0, 0] <= 0:
        assert neg.notes and neg.cov[0, 0] == pytest.approx(max(vr2[0, 0], vc2[0, 0]))
    # one reader: clustered on case only, and says so
    one = frame[frame["reader"] == 0]
    _, s1, b1 = _glm_parts(one)
    c1 = two_way_cov(b1, s1, one["reader"].to_numpy(), one["case"].to_numpy())
    assert c1.kind == "case-clustered" and "only one reader" in c1.notes[0] and c1.df == 39


def test_glm_two_way_and_share_test_agree():
    frame = _votes(seed=3)
    fit = glm_two_way(frame)
    test = glm_share_test(frame, 0.5)
    share = frame["y"].mean()
    assert fit["p"] == pytest.approx(share) and fit["low"] < share < fit["high"]
    # the test's t statistic is (logit(share) - logit(1/2)) / SE, on the interval's SE and degrees of freedom
    assert np.log(share / (1 - share)) / test["t"] == pytest.approx(fit["se"])
    assert test["df"] == fit["df"] == 5 and test["variance"] == fit["variance"] and 0.0 <= test["p"] <= 1.0
    assert np.isnan(glm_share_test(frame.assign(y=1.0))["p"])  # one outcome: no model


def test_ratio_scores_give_the_delta_method_variance():
    rng = np.random.default_rng(1)
    numer = (rng.random((200, 2)) < [0.3, 0.6]).astype(float)
    ratio, scores, bread = ratio_scores(numer, np.ones_like(numer))
    assert ratio == pytest.approx(numer.mean(axis=0))
    # every vote its own cluster: the (CRV1-corrected) binomial variance p(1-p)/n, up to n/(n-1) factors
    v = cluster_cov(bread, scores, np.arange(200), correction=False)
    assert np.diag(v) == pytest.approx(ratio * (1 - ratio) / 200)


def test_holm_matches_statsmodels_and_skips_nan():
    p = [0.01, 0.04, np.nan, 0.03, 0.2]
    ok = [0, 1, 3, 4]
    out = tables.holm(p)
    assert np.isnan(out[2])
    assert out[ok] == pytest.approx(multipletests(np.array(p)[ok], method="holm")[1])


def test_degenerate_ratios_get_a_conservative_clopper_pearson_interval():
    lo, hi = degenerate_interval(0, 50, 10)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / 10)) and hi == pytest.approx(beta.ppf(0.975, 1, 10))
    lo1, hi1 = degenerate_interval(50, 50, 10)
    assert hi1 == 1.0 and lo1 == pytest.approx(0.025 ** (1 / 10))
    assert effective_n(100, 4, None) == 4 and effective_n(100, 4, 2.0) == 50 and effective_n(100, 4, 80.0) == 4
    # a method nobody picks: the bootstrap would say [0, 0]; the row gets the conservative interval and a note
    rng = np.random.default_rng(0)
    reader, case = np.repeat(np.arange(4), 25), np.tile(np.arange(25), 4)
    picks = rng.integers(0, 2, size=100)
    numer = np.column_stack([picks == 0, picks == 1, np.zeros(100, bool)]).astype(float)
    res = clustered_ratio_intervals(reader, case, numer, np.ones_like(numer), rng=rng, n_boot=200)
    assert res["ratio"][2] == 0 and res["low"][2] == 0 and res["high"][2] > 0.01
    assert res["note"][2] and "effective votes" in res["method"][2] and res["note"][0] is None


def test_tables_refuse_a_table_of_two_studies_and_repeats_never_become_primary():
    df = simulate_tidy([SimReader("a", {}), SimReader("b", {})], 12, METHODS, seed=2, repeat_fraction=0.5,
                       unanswered_fraction=0.3)
    validate_tidy(df)
    two = pd.concat([df, df.assign(study_id=df["study_id"] + 1)])
    with pytest.raises(ValueError, match="one study at a time"):
        validate_tidy(two)
    with pytest.raises(ValueError, match="one study at a time"):
        tables.summary(two)
    reads = first_reads(df)
    assert not reads["is_repeat"].any() and not reads.duplicated(["reader", "case_key"]).any()
    # a repeat whose first showing was left unanswered is still not a primary vote
    prim = primary_votes(df)
    assert not prim["is_repeat"].any() and prim["chosen_method"].notna().all()
