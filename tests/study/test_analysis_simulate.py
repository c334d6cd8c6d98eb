"""study.simulate: the simulated reader model and simulated tidy studies (contract columns, allocation, repeats)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chisquare

from study.simulate import SimReader, simulate_tidy

METHODS = ["original", "cnn-x1", "cnn-compact-x3", "op-q3-x3", "op-q5-x3"]
CONTRACT = ["study_id", "study_kind", "query_id", "reader", "reader_id", "case_id", "case_key", "label", "source",
            "is_repeat", "repeat_of", "n_slots", "slot_1", "slot_2", "slot_3", "slot_4", "slot_5", "chosen_method",
            "chosen_slot", "no_preference", "confidence", "comment", "shown_at", "answered_at", "reading_time_s"]


def test_choice_probabilities_are_pref_times_slot_bias_normalised():
    reader = SimReader("a", {"op-q3-x3": 3.0, "original": 0.5}, slot_bias=[2.0, 1.0, 1.0, 1.0, 1.0])
    slots = ["op-q3-x3", "original", "cnn-x1", "op-q5-x3", "cnn-compact-x3"]
    weights = np.array([3.0 * 2.0, 0.5, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(reader.choice_probabilities(slots), weights / weights.sum())


def test_choose_draws_follow_the_model():
    reader = SimReader("a", {"op-q3-x3": 3.0})
    rng = np.random.default_rng(0)
    slots = ["original", "op-q3-x3", "cnn-x1"]
    picks = np.bincount([reader.choose(rng, slots) for _ in range(5000)], minlength=3)
    assert chisquare(picks, 5000 * np.array([1, 3, 1]) / 5).pvalue > 1e-3
    assert picks[1] > 2.5 * picks[0]


def test_repeat_consistency_one_returns_previous_choice_in_its_new_slot():
    reader = SimReader("a", {}, repeat_consistency=1.0)
    rng = np.random.default_rng(1)
    for _ in range(50):
        slots = list(rng.permutation(METHODS))
        assert slots[reader.choose(rng, slots, previous_choice="cnn-x1")] == "cnn-x1"


def test_repeat_consistency_zero_chooses_afresh():
    reader = SimReader("a", {}, repeat_consistency=0.0)
    rng = np.random.default_rng(2)
    same = sum(METHODS[reader.choose(rng, METHODS, previous_choice="cnn-x1")] == "cnn-x1" for _ in range(2000))
    assert 0.15 < same / 2000 < 0.25  # 1/5 by chance


def test_invalid_readers_are_refused():
    with pytest.raises(ValueError):
        SimReader("a", {"x": -1.0})
    with pytest.raises(ValueError):
        SimReader("a", {}, repeat_consistency=1.5)
    with pytest.raises(ValueError):
        SimReader("a", {}, slot_bias=[1.0, 1.0]).choice_probabilities(METHODS)


def _readers(n: int) -> list[SimReader]:
    return [SimReader(f"reader {i}", {"op-q3-x3": 3.0}) for i in range(n)]


def test_tidy_columns_and_types_follow_the_contract():
    df = simulate_tidy(_readers(3), 20, METHODS, seed=3, repeat_fraction=0.2, unanswered_fraction=0.1)
    assert list(df.columns) == CONTRACT
    for col in ("study_id", "query_id", "reader_id", "case_id", "n_slots"):
        assert pd.api.types.is_integer_dtype(df[col]) and not isinstance(df[col].dtype, pd.Int64Dtype)
    for col in ("repeat_of", "chosen_slot", "confidence"):
        assert isinstance(df[col].dtype, pd.Int64Dtype)
    assert df["is_repeat"].dtype == bool
    assert str(df["shown_at"].dtype) == "datetime64[ns, UTC]" and str(df["answered_at"].dtype) == "datetime64[ns, UTC]"
    assert df["query_id"].is_unique
    answered = df["chosen_method"].notna()
    assert 0 < (~answered).sum() < len(df)
    assert df.loc[~answered, "chosen_slot"].isna().all() and df.loc[~answered, "answered_at"].isna().all()
    for row in df.itertuples():
        shown = [getattr(row, f"slot_{k}") for k in range(1, row.n_slots + 1)]
        assert sorted(shown) == sorted(METHODS)
        if row.chosen_method is not None:
            assert shown[row.chosen_slot - 1] == row.chosen_method
            assert 1 <= row.confidence <= 5 and row.answered_at > row.shown_at


@pytest.mark.parametrize("allocation", ["overlap", "split", "partial"])
def test_allocations(allocation):
    df = simulate_tidy(_readers(6), 30, METHODS, seed=4, allocation=allocation)
    readers_per_case = df.groupby("case_id")["reader"].nunique()
    assert not df.duplicated(["reader", "case_id"]).any()
    assert set(df["case_id"]) == set(range(1, 31))
    expected = {"overlap": {6}, "split": {1}, "partial": {3}}[allocation]
    assert set(readers_per_case) == expected


def test_repeats_are_seeded_late_and_point_back_to_the_first_showing():
    df = simulate_tidy(_readers(4), 40, METHODS, seed=5, repeat_fraction=0.25, repeat_min_gap=5)
    reps = df[df["is_repeat"]]
    assert len(reps) == 4 * 10
    first = df.set_index("query_id")
    for row in reps.itertuples():
        orig = first.loc[int(row.repeat_of)]
        assert not orig["is_repeat"] and orig["reader"] == row.reader and orig["case_id"] == row.case_id
        between = df[(df["reader"] == row.reader) & (df["query_id"] > row.repeat_of) & (df["query_id"] < row.query_id)]
        assert len(between) >= 5
    assert df.loc[~df["is_repeat"], "repeat_of"].isna().all()


def test_same_seed_same_study_other_seed_other_study():
    a = simulate_tidy(_readers(2), 15, METHODS, seed=6, case_sd=0.5)
    b = simulate_tidy(_readers(2), 15, METHODS, seed=6, case_sd=0.5)
    c = simulate_tidy(_readers(2), 15, METHODS, seed=7, case_sd=0.5)
    pd.testing.assert_frame_equal(a, b)
    assert not a["chosen_method"].equals(c["chosen_method"])


def test_bad_study_arguments_are_refused():
    with pytest.raises(ValueError):
        simulate_tidy(_readers(2), 5, METHODS + ["a"], seed=0)
    with pytest.raises(ValueError):
        simulate_tidy(_readers(2), 5, METHODS, seed=0, allocation="random")
    with pytest.raises(ValueError):
        simulate_tidy([SimReader("x", {}), SimReader("x", {})], 5, METHODS, seed=0)
