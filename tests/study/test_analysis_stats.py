"""Known-answer checks of each statistic in study.analysis against scipy / statsmodels or hand-worked values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import beta, binomtest, chi2_contingency, chisquare
from statsmodels.discrete.conditional_models import ConditionalLogit
from statsmodels.stats.inter_rater import aggregate_raters, cohens_kappa, fleiss_kappa

from study.analysis.agreement import (
    _fleiss_from_counts, coincidence_matrix, cohen_kappa_pairs, fleiss_report, krippendorff_alpha_nominal,
    repeat_agreement,
)
from study.analysis.bootstrap import percentile_interval, ratio_replicates, two_way_weights
from study.analysis.data import ChoiceData, alternatives_long, choice_data
from study.analysis.models import glm_two_way, gee_restored
from study.analysis.position import (
    _design, _padded, choice_model, expected_by_slot, newton_clogit, randomisation_check, slot_chisquare,
)
from study.analysis.ranking import luce_covariance, luce_mm
from study.analysis.selection import wilson
from study.simulate import SimReader, simulate_tidy

METHODS = ["original", "cnn-x1", "cnn-compact-x3", "op-q3-x3", "op-q5-x3"]


@pytest.mark.parametrize("k,n", [(0, 10), (7, 20), (45, 50), (313, 1000)])
def test_wilson_matches_scipy(k, n):
    ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    np.testing.assert_allclose(wilson(k, n), (ref.low, ref.high), rtol=1e-10, atol=1e-12)


def test_slot_chisquare_matches_scipy_with_mixed_slot_counts():
    n_slots = np.array([5] * 40 + [4] * 20)
    chosen = np.array([1] * 20 + [2] * 8 + [3] * 6 + [4] * 3 + [5] * 3 + [1] * 8 + [2] * 4 + [3] * 4 + [4] * 4)
    expected = np.array([40 / 5 + 20 / 4] * 4 + [40 / 5])
    np.testing.assert_allclose(expected_by_slot(n_slots), expected)
    res = slot_chisquare(chosen, n_slots)
    ref = chisquare(np.bincount(chosen, minlength=6)[1:], expected)
    assert res["chi2"] == pytest.approx(ref.statistic) and res["p"] == pytest.approx(ref.pvalue) and res["df"] == 4


def _shuffled_study(rng: np.random.Generator, n_q: int) -> ChoiceData:
    """Queries showing all five methods in a uniformly random slot order (choices irrelevant here)."""
    slot = np.argsort(rng.random((n_q, 5)), axis=1) + 1
    chosen = np.zeros((n_q, 5), dtype=bool)
    chosen[:, 0] = True
    return ChoiceData(methods=METHODS, readers=["a"], cases=[str(i) for i in range(n_q)], query_id=np.arange(n_q),
                      reader=np.zeros(n_q, dtype=np.int64), case=np.arange(n_q), shown=np.ones((n_q, 5), dtype=bool),
                      chosen=chosen, slot=slot, chosen_slot=slot[:, 0], n_slots=np.full(n_q, 5))


def test_randomisation_check_statistic_is_pearson_and_its_p_value_is_calibrated():
    readers = [SimReader("a", {"op-q3-x3": 3.0}), SimReader("b", {})]
    data = choice_data(simulate_tidy(readers, 40, METHODS, seed=1))
    res = randomisation_check(data, rng=np.random.default_rng(0), n_rep=200)
    table = np.array(res["table"])
    assert table.sum() == 5 * data.n_queries and (table.sum(axis=0) == data.n_queries).all()
    assert res["chi2"] == pytest.approx(chi2_contingency(table, correction=False)[0])  # same X^2, other reference
    # under correct shuffling the p-value is uniform: 300 small null studies
    rng = np.random.default_rng(1)
    ps = np.array([randomisation_check(_shuffled_study(rng, 12), rng=rng, n_rep=99)["p"] for _ in range(300)])
    assert 0.02 <= np.mean(ps <= 0.05) <= 0.09 and 0.42 <= ps.mean() <= 0.58


def test_randomisation_check_catches_a_fixed_slot_order():
    df = simulate_tidy([SimReader("a", {}), SimReader("b", {})], 60, METHODS, seed=2)
    fixed = df.index[::3]  # a third of the queries show the methods in the same order every time
    for k, method in enumerate(METHODS, start=1):
        df.loc[fixed, f"slot_{k}"] = method
    df.loc[fixed, "chosen_slot"] = [METHODS.index(m) + 1 for m in df.loc[fixed, "chosen_method"]]
    res = randomisation_check(choice_data(df), rng=np.random.default_rng(0), n_rep=200)
    assert res["p"] < 0.01


def _subset_study(seed: int = 11):
    """Queries that show 3 or 4 of 5 methods (a Luce model with unequal choice sets)."""
    rng = np.random.default_rng(seed)
    worth = np.array([1.0, 2.0, 0.5, 4.0, 1.5])
    shown = np.zeros((400, 5), dtype=bool)
    chosen = np.zeros((400, 5), dtype=bool)
    for q in range(400):
        on = rng.choice(5, size=rng.integers(3, 5), replace=False)
        shown[q, on] = True
        p = worth[on] / worth[on].sum()
        chosen[q, on[rng.choice(len(on), p=p)]] = True
    return shown, chosen


def test_luce_mm_and_its_standard_errors_match_statsmodels_conditional_logit():
    shown, chosen = _subset_study()
    worth = luce_mm(shown, chosen)
    q_idx, m_idx = np.nonzero(shown)
    exog = pd.get_dummies(pd.Series(m_idx), dtype=float).drop(columns=0).to_numpy()
    res = ConditionalLogit(chosen[q_idx, m_idx].astype(float), exog, groups=q_idx).fit(disp=0, method="newton")
    np.testing.assert_allclose(np.log(worth[1:] / worth[0]), res.params, atol=1e-6)
    se = np.sqrt(np.diag(luce_covariance(shown, worth, 0)))[1:]
    np.testing.assert_allclose(se, res.bse, rtol=1e-3)
    assert worth.sum() == pytest.approx(1.0) and np.argmax(worth) == 3


def test_luce_mm_weights_equal_duplicated_votes():
    shown, chosen = _subset_study(12)
    w = np.random.default_rng(0).integers(0, 4, shown.shape[0])
    rep = np.repeat(np.arange(shown.shape[0]), w)
    np.testing.assert_allclose(luce_mm(shown, chosen, w[None, :])[0], luce_mm(shown[rep], chosen[rep]), atol=1e-8)


def test_luce_mm_gives_zero_worth_to_a_method_that_never_wins():
    shown = np.ones((30, 3), dtype=bool)
    chosen = np.zeros((30, 3), dtype=bool)
    chosen[:20, 0] = True
    chosen[20:, 1] = True
    worth = luce_mm(shown, chosen)
    np.testing.assert_allclose(worth, [2 / 3, 1 / 3, 0.0], atol=1e-6)


def test_newton_conditional_logit_matches_statsmodels_with_slot_effects():
    readers = [SimReader(f"r{i}", {"op-q3-x3": 3.0}, slot_bias=[2, 1, 1, 1, 1]) for i in range(3)]
    data = choice_data(simulate_tidy(readers, 60, METHODS, seed=2))
    frame, methods, slots = _design(data, "original")
    names = methods + slots
    beta, info, llf, ok = newton_clogit(*_padded(frame, names))
    res = ConditionalLogit(frame["chosen"].to_numpy(), frame[[f"x:{n}" for n in names]].to_numpy(),
                           groups=frame["query_id"].to_numpy()).fit(disp=0, method="newton")
    assert ok
    np.testing.assert_allclose(beta, res.params, atol=1e-6)
    np.testing.assert_allclose(np.sqrt(np.diag(np.linalg.inv(info))), res.bse, rtol=1e-4)
    assert llf == pytest.approx(res.llf)
    model = choice_model(data, "original")  # what the report prints: the same numbers
    np.testing.assert_allclose([r["coef"] for r in model["methods"][1:] + model["slots"]], res.params, atol=1e-6)
    np.testing.assert_allclose([r["se"] for r in model["methods"][1:] + model["slots"]], res.bse, rtol=1e-4)
    assert len(alternatives_long(data)) == 5 * data.n_queries


def test_two_way_weights_are_products_of_reader_and_case_counts():
    reader = np.array([0, 0, 1, 1, 2, 2])
    case = np.array([0, 1, 0, 1, 0, 1])
    w = np.vstack(list(two_way_weights(np.random.default_rng(0), reader, case, 300, chunk=128)))
    assert w.shape == (300, 6) and np.all(w == np.round(w)) and np.all(w >= 0)
    for b in range(300):
        grid = w[b].reshape(3, 2)  # rows readers, columns cases: outer(reader counts, case counts)
        assert np.linalg.matrix_rank(grid) <= 1
        assert grid.sum() == 6  # (3 readers drawn) x (2 cases drawn) in a fully crossed design
    assert np.mean(w[:, 0] == 0) > 0.2  # some replicates drop a reader or a case


def test_ratio_replicates_of_a_constant_and_percentiles_ignore_nan():
    reader, case = np.repeat(np.arange(4), 5), np.tile(np.arange(5), 4)
    reps = ratio_replicates(np.random.default_rng(1), reader, case, np.ones(20), np.ones(20), 50)
    assert np.all(reps == 1.0)
    lo, hi = percentile_interval(np.array([[np.nan, 1.0], [np.nan, 2.0], [np.nan, 3.0]]))
    assert np.isnan(lo[0]) and np.isnan(hi[0]) and lo[1] == pytest.approx(1.05) and hi[1] == pytest.approx(2.95)


def test_krippendorff_alpha_hand_worked_example():
    # units (a,a), (a,b), (b,b): o_aa = 2, o_ab = o_ba = 1, o_bb = 2; n_a = n_b = 3, n = 6
    units = [["a", "a"], ["a", "b"], ["b", "b"]]
    cats, o = coincidence_matrix(units)
    np.testing.assert_allclose(o, [[2, 1], [1, 2]])
    # alpha = 1 - (n - 1) * sum_{c != k} o_ck / sum_{c != k} n_c n_k = 1 - 5 * 2 / 18
    assert krippendorff_alpha_nominal(units) == pytest.approx(1 - 10 / 18)
    assert krippendorff_alpha_nominal(units + [["a"]]) == pytest.approx(1 - 10 / 18)  # lone values are unpairable
    assert np.isnan(krippendorff_alpha_nominal([["a", "a"], ["a", "a"]]))


def test_krippendorff_alpha_published_example():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 observers, 12 units, missing values;
    # nominal alpha = 0.743
    observers = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    units = [[obs[u] for obs in observers if obs[u] is not None] for u in range(12)]
    assert krippendorff_alpha_nominal(units) == pytest.approx(0.743, abs=5e-4)


def test_krippendorff_alpha_and_fleiss_kappa_on_complete_data():
    rng = np.random.default_rng(3)
    ratings = rng.choice(4, size=(60, 5), p=[0.5, 0.2, 0.2, 0.1])
    ratings[:30, :] = ratings[:30, :1]  # half the cases: full agreement
    table, _ = aggregate_raters(ratings)
    n = ratings.size
    kappa = fleiss_kappa(table)
    # with every unit fully rated, alpha = 1 - (1 - kappa) (n - 1) / n (alpha's small-sample expected agreement)
    assert krippendorff_alpha_nominal([list(r) for r in ratings]) == pytest.approx(1 - (1 - kappa) * (n - 1) / n)
    assert _fleiss_from_counts(table.astype(float)) == pytest.approx(kappa)


def test_fleiss_report_matches_statsmodels_on_the_same_votes():
    readers = [SimReader(f"r{i}", {"op-q3-x3": 4.0}) for i in range(4)]
    df = simulate_tidy(readers, 50, METHODS, seed=8, case_sd=1.0)
    res = fleiss_report(df, rng=np.random.default_rng(0), n_boot=50)
    wide = df.pivot(index="case_key", columns="reader", values="chosen_method")
    codes = wide.apply(lambda col: col.map({m: i for i, m in enumerate(METHODS)})).to_numpy()
    table, _ = aggregate_raters(codes)
    assert res["cases"] == 50 and res["raters"] == 4
    assert res["kappa"] == pytest.approx(fleiss_kappa(table))
    assert res["low"] <= res["kappa"] <= res["high"]


def test_cohen_kappa_known_table_and_perfect_agreement():
    # table [[20, 5], [10, 15]]: p_o = 0.7, p_e = (25*30 + 25*20)/50^2 = 0.5, kappa = 0.4
    first = ["a"] * 25 + ["b"] * 25
    second = ["a"] * 20 + ["b"] * 5 + ["a"] * 10 + ["b"] * 15
    res = cohen_kappa_pairs(first, second)
    assert res["kappa"] == pytest.approx(0.4) and res["agreement"] == pytest.approx(0.7) and res["pairs"] == 50
    assert res["low"] == pytest.approx(cohens_kappa(np.array([[20, 5], [10, 15]])).kappa_low)
    assert res["interval"] == "asymptotic"
    # perfect agreement on 3/6/1 of 5 categories: the asymptotic variance is 0 (statsmodels: -4e-17), so the
    # interval is the exact (Clopper-Pearson) interval of 10/10 agreeing pairs mapped onto kappa, chance fixed
    same = ["b"] * 3 + ["c"] * 6 + ["d"]
    perfect = cohen_kappa_pairs(same, same, list("abcde"))
    p_e = (3 * 3 + 6 * 6 + 1 * 1) / 100
    assert perfect["kappa"] == pytest.approx(1.0) and perfect["interval"] == "exact"
    assert perfect["chance"] == pytest.approx(p_e) and perfect["high"] == pytest.approx(1.0)
    a_low = beta.ppf(0.025, 10, 1)  # Clopper-Pearson lower bound of 10 of 10
    assert perfect["low"] == pytest.approx((a_low - p_e) / (1 - p_e)) and perfect["low"] < 1.0
    assert np.isnan(cohen_kappa_pairs(["a", "a"], ["a", "a"])["kappa"])  # no chance-corrected answer


def test_repeat_agreement_ignores_unanswered_repeats():
    df = simulate_tidy([SimReader("a", {}), SimReader("b", {})], 30, METHODS, seed=9, repeat_fraction=0.5,
                       unanswered_fraction=0.2)
    res = repeat_agreement(df)
    answered = df[df["chosen_method"].notna()]
    first_ok = set(answered.loc[~answered["is_repeat"], "query_id"])
    usable = answered[answered["is_repeat"] & answered["repeat_of"].isin(first_ok)]
    assert sum(r["pairs"] for r in res["readers"]) == len(usable) == res["pooled"]["pairs"]
    assert all(r["kappa"] == pytest.approx(1.0) for r in res["readers"])


def test_intercept_only_models_estimate_the_raw_share():
    rng = np.random.default_rng(4)
    frame = pd.DataFrame({"y": (rng.random(300) < 0.8).astype(float), "reader": np.repeat(np.arange(6), 50),
                          "case": np.tile(np.arange(50), 6)})
    share = frame["y"].mean()
    for res in (gee_restored(frame), glm_two_way(frame)):
        assert res["p"] == pytest.approx(share, abs=1e-6) and res["low"] < share < res["high"]


def test_choice_model_falls_back_to_statsmodels_when_newton_fails(monkeypatch):
    import study.analysis.position as position

    data = choice_data(simulate_tidy([SimReader(f"r{i}", {"op-q3-x3": 3.0}) for i in range(2)], 40, METHODS, seed=3))
    newton = choice_model(data, "original")
    monkeypatch.setattr(position, "newton_clogit", lambda x, mask, y: (np.zeros(x.shape[2]), np.eye(x.shape[2]), 0.0, False))
    fallback = choice_model(data, "original")
    assert newton["fitted_by"].startswith("Newton") and fallback["fitted_by"] == "statsmodels ConditionalLogit"
    for a, b in zip(newton["methods"] + newton["slots"], fallback["methods"] + fallback["slots"]):
        assert a["term"] == b["term"] and a["coef"] == pytest.approx(b["coef"], abs=5e-3)  # BFGS stops early
        assert a["se"] == pytest.approx(b["se"], rel=2e-2, abs=1e-9)
