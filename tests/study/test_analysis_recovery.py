"""Simulated studies with a planted truth: the analysis recovers it within its intervals, the position-bias test
fires only when a slot bias was planted, repeats never count twice, and perfect repeat readers get kappa 1.

Seeds are fixed. Checks that an interval holds the truth use 99% intervals (LEVEL), so that a test checking many
intervals at once does not hinge on the luck of one seed; detection checks ask for p-values far below 0.05."""

from __future__ import annotations

import json

import pytest

from study.analysis import format_report, full_report
from study.analysis.data import choice_data
from study.analysis.position import slot_table
from study.simulate import SimReader, simulate_tidy

METHODS = ["original", "cnn-x1", "cnn-compact-x3", "op-q3-x3", "op-q5-x3"]
PREF = {"op-q3-x3": 3.0}  # 3x the weight of each other method: truth 3/7 for op-q3-x3, 1/7 for the others
N_BOOT = 300
LEVEL = 0.99


def _study(slot_bias=None, biased_readers=6, n_readers=6, n_cases=120, seed=101, **kw):
    readers = [SimReader(f"reader{i}", PREF, slot_bias=slot_bias if i < biased_readers else None)
               for i in range(n_readers)]
    return simulate_tidy(readers, n_cases, METHODS, seed=seed, **kw)


@pytest.fixture(scope="module")
def unbiased():
    df = _study(repeat_fraction=0.1)
    return df, full_report(df, seed=1, n_boot=N_BOOT, mixed=False, level=LEVEL)


@pytest.fixture(scope="module")
def biased():
    df = _study(slot_bias=[3.0, 1.0, 1.0, 1.0, 1.0])
    return df, full_report(df, seed=1, n_boot=N_BOOT, mixed=False, level=LEVEL)


def _rows(report, key="method"):
    return {r[key]: r for r in report}


def test_selection_ratios_recover_the_planted_preference(unbiased):
    _, rep = unbiased
    truth = {m: (3 / 7 if m == "op-q3-x3" else 1 / 7) for m in METHODS}
    for m, row in _rows(rep["selection"]["methods"]).items():
        for kind in ("wilson", "boot", "cluster"):
            assert row[f"{kind}_low"] <= truth[m] <= row[f"{kind}_high"], (m, kind, row)
    rv = rep["selection"]["restored_vs_original"]
    assert rv["wilson_low"] <= 6 / 7 <= rv["wilson_high"] and rv["boot_low"] <= 6 / 7 <= rv["boot_high"]
    assert rv["chance"] == pytest.approx(0.8)
    for model in ("gee", "glm_two_way"):
        assert rep["models"][model]["low"] <= 6 / 7 <= rep["models"][model]["high"]


def test_ranking_and_choice_model_recover_the_3x_preference(unbiased):
    _, rep = unbiased
    ranking = rep["ranking"]["methods"]
    top = ranking[0]
    assert top["method"] == "op-q3-x3" and top["rank_low"] == top["rank_high"] == 1 and top["p_best"] > 0.99
    assert top["worth_low"] <= 3 / 7 <= top["worth_high"]
    assert top["ratio_low"] <= 3.0 <= top["ratio_high"] and top["ratio_low"] > 1.5
    for row in ranking[1:]:
        assert row["ratio_low"] <= 1.0 <= row["ratio_high"] and row["rank_low"] >= 2
    model = _rows(rep["position"]["model"]["methods"], "term")
    assert model["op-q3-x3"]["or_low"] <= 3.0 <= model["op-q3-x3"]["or_high"] and model["op-q3-x3"]["p"] < 1e-6


def test_position_test_is_silent_without_slot_bias(unbiased):
    _, rep = unbiased
    pos = rep["position"]
    assert not pos["fires"] and pos["p"] > 0.05
    assert not any(r["flag"] for r in pos["per_reader"])
    assert pos["randomisation"]["p"] > 0.01
    for row in pos["model"]["slots"]:
        assert row["or_low"] <= 1.0 <= row["or_high"]


def test_position_test_fires_on_the_slot1_bias_and_the_model_nets_it_out(biased):
    _, rep = biased
    pos = rep["position"]
    assert pos["fires"] and pos["p"] < 1e-6
    slot1 = pos["by_slot"][0]
    assert slot1["chosen"] > 1.5 * slot1["expected"]
    for row in pos["model"]["slots"]:  # planted: slot 1 three times as attractive as any other slot
        assert row["or_low"] <= 1 / 3 <= row["or_high"] and row["or_high"] < 1.0
    assert pos["model"]["slot_wald"]["p"] < 1e-6
    model = _rows(pos["model"]["methods"], "term")
    assert model["op-q3-x3"]["or_low"] <= 3.0 <= model["op-q3-x3"]["or_high"]


def test_only_the_slot_biased_reader_is_flagged():
    df = _study(slot_bias=[6.0, 1.0, 1.0, 1.0, 1.0], biased_readers=1, seed=202)
    data = choice_data(df)
    res = slot_table(data)
    flags = {r["reader"]: r["flag"] for r in res["per_reader"]}
    assert flags.pop("reader0") is True
    assert not any(flags.values())


def test_repeats_never_count_twice(unbiased):
    df, rep = unbiased
    assert df["is_repeat"].sum() > 0
    first = df[~df["is_repeat"]]
    for m, row in _rows(rep["selection"]["methods"]).items():
        assert row["chosen"] == int((first["chosen_method"] == m).sum())
        assert row["shown"] == len(first)
    assert rep["study"]["primary_votes"] == len(first)
    assert rep["ranking"]["methods"][0]["shown"] == len(first)


def test_perfect_repeats_give_kappa_one_and_a_noisy_reader_is_flagged():
    readers = [SimReader(f"steady{i}", PREF, repeat_consistency=1.0) for i in range(3)]
    readers.append(SimReader("noisy", PREF, repeat_consistency=0.0))
    df = simulate_tidy(readers, 80, METHODS, seed=303, repeat_fraction=0.4)
    rep = full_report(df, seed=0, n_boot=50, mixed=False)["agreement"]["repeats"]
    rows = {r["reader"]: r for r in rep["readers"]}
    for i in range(3):
        assert rows[f"steady{i}"]["kappa"] == pytest.approx(1.0) and not rows[f"steady{i}"]["flag"]
    assert rows["noisy"]["flag"] and rows["noisy"]["kappa"] < 0.6 and rows["noisy"]["pairs"] == 32


def test_agreement_is_chance_without_case_effects_and_positive_with_them():
    readers = [SimReader(f"r{i}", PREF) for i in range(5)]
    flat = full_report(simulate_tidy(readers, 120, METHODS, seed=404), seed=0, n_boot=200, mixed=False)["agreement"]
    shared = full_report(simulate_tidy(readers, 120, METHODS, seed=404, case_sd=2.0), seed=0, n_boot=200,
                         mixed=False)["agreement"]
    assert flat["fleiss"]["low"] <= 0.0 <= flat["fleiss"]["high"]
    assert flat["krippendorff"]["low"] <= 0.0 <= flat["krippendorff"]["high"]
    assert shared["fleiss"]["low"] > 0.1 and shared["krippendorff"]["low"] > 0.1


def test_partial_overlap_gets_krippendorff_alpha():
    readers = [SimReader(f"r{i}", PREF) for i in range(6)]
    df = simulate_tidy(readers, 60, METHODS, seed=505, allocation="partial", case_sd=2.0)
    ag = full_report(df, seed=0, n_boot=100, mixed=False)["agreement"]
    assert ag["krippendorff"]["cases"] == 60 and ag["krippendorff"]["alpha"] > 0.1
    split = simulate_tidy(readers, 60, METHODS, seed=505, allocation="split")
    ag = full_report(split, seed=0, n_boot=100, mixed=False)["agreement"]
    assert ag["krippendorff"]["alpha"] is None and ag["fleiss"]["kappa"] is None


def test_mixed_model_sees_reader_spread():
    readers = [SimReader(f"r{i}", {"original": w}) for i, w in enumerate([0.2, 0.5, 1.0, 2.0, 4.0, 8.0])]
    df = simulate_tidy(readers, 40, METHODS, seed=606)
    mixed = full_report(df, seed=0, n_boot=50, mixed=True)["models"]["mixed"]
    assert "error" not in mixed
    # planted reader spread on the log-odds scale: SD of log(w) = 1.5; cases identical
    assert mixed["reader_sd"] > 0.8 and mixed["reader_sd"] > 2 * mixed["case_sd"]


def test_report_is_json_and_prints_every_section(biased):
    _, rep = biased
    json.dumps(rep, allow_nan=False)
    text = format_report(rep)
    for title in ("Selection ratios", "Restored preferred over original", "Position bias", "POSITION BIAS DETECTED",
                  "conditional logit", "Ranking", "Fleiss' kappa", "Krippendorff's alpha", "Repeat reads"):
        assert title in text, title


def test_report_is_reproducible_with_a_seed(unbiased):
    df, rep = unbiased
    again = full_report(df, seed=1, n_boot=N_BOOT, mixed=False, level=LEVEL)
    assert again == rep
    other = full_report(df, seed=2, n_boot=N_BOOT, mixed=False, level=LEVEL)
    assert other["selection"]["methods"][0]["boot_low"] != rep["selection"]["methods"][0]["boot_low"]
