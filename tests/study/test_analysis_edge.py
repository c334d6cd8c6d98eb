"""Awkward studies: no original, nothing answered yet, mixed slot counts, one method always chosen, one case.
The report must still come back complete, JSON-clean and printable, with no stray warnings."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from study.analysis import format_report, full_report
from study.simulate import SimReader, simulate_tidy

METHODS = ["original", "cnn-x1", "cnn-compact-x3", "op-q3-x3", "op-q5-x3"]
pytestmark = pytest.mark.filterwarnings("error")


def _report(df: pd.DataFrame) -> tuple[dict, str]:
    rep = full_report(df, seed=0, n_boot=50, mixed=False)
    json.dumps(rep, allow_nan=False)
    return rep, format_report(rep)


def test_segmentation_study_without_an_original():
    df = simulate_tidy([SimReader("a", {}), SimReader("b", {"fpn": 3.0})], 30, ["unet", "deeplab", "fpn"], seed=1,
                       study_kind="segmentation")
    rep, text = _report(df)
    assert rep["study"]["original"] is None and rep["selection"]["restored_vs_original"] is None
    assert rep["models"] is None
    assert rep["ranking"]["reference"] == "deeplab" and rep["position"]["model"]["reference"] == "deeplab"
    assert "Ranking" in text and "restored (any)" not in text


def test_nothing_answered_yet():
    df = simulate_tidy([SimReader("a", {})], 5, METHODS, seed=2)
    df["chosen_method"], df["chosen_slot"] = None, pd.array([pd.NA] * len(df), dtype="Int64")
    rep, text = _report(df)
    assert "selection" not in rep and "nothing to analyse" in text
    rep, text = _report(df.iloc[0:0])
    assert rep["study"]["queries_shown"] == 0


def test_queries_with_four_and_five_slots():
    df = simulate_tidy([SimReader(f"r{i}", {"op-q3-x3": 3.0}) for i in range(3)], 40, METHODS, seed=3)
    four = df.index[::2]
    df.loc[four, "slot_5"], df.loc[four, "n_slots"] = None, 4
    moved = four[df.loc[four, "chosen_slot"] == 5]
    df.loc[moved, "chosen_slot"] = 1
    df.loc[moved, "chosen_method"] = df.loc[moved, "slot_1"]
    rep, _ = _report(df)
    expected = [r["expected"] for r in rep["position"]["by_slot"]]
    assert expected == pytest.approx([60 / 5 + 60 / 4] * 4 + [60 / 5])
    shows_original = (df[[f"slot_{k}" for k in range(1, 6)]] == "original").any(axis=1)
    rows = {r["method"]: r for r in rep["selection"]["methods"]}
    assert rows["original"]["shown"] == shows_original.sum() < len(df)
    assert rows["original"]["chance"] == pytest.approx((1 / df.loc[shows_original, "n_slots"]).mean())


def test_one_method_always_chosen_is_reported_as_not_estimable():
    df = simulate_tidy([SimReader(f"r{i}", {"op-q3-x3": 1e9}) for i in range(3)], 20, METHODS, seed=4)
    rep, text = _report(df)
    assert rep["ranking"]["methods"][0]["method"] == "op-q3-x3" and rep["ranking"]["methods"][0]["worth"] == 1.0
    assert rep["agreement"]["fleiss"]["kappa"] is None and rep["agreement"]["krippendorff"]["alpha"] is None
    assert "cannot be estimated" in text


def test_a_single_case():
    rep, _ = _report(simulate_tidy([SimReader(f"r{i}", {}) for i in range(3)], 1, METHODS, seed=5))
    assert rep["study"]["cases"] == 1 and rep["agreement"]["fleiss"]["kappa"] is None


def test_missing_columns_are_named():
    df = simulate_tidy([SimReader("a", {})], 3, METHODS, seed=6).drop(columns=["case_key"])
    with pytest.raises(ValueError, match="case_key"):
        full_report(df)
