"""Metrics against hand-computed confusion matrices, AUC against pair counting, bootstrap, baseline."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from r2c_core.metrics import (
    bootstrap_ci, confusion, fit_metadata_baseline, from_confusion, grouped_tables, metric_table, nan_to_none,
    point_metrics, predict_metadata_baseline, roc_auc,
)


def test_confusion_and_ratios_by_hand():
    y = [1, 1, 1, 1, 0, 0, 0, 0, 0, 1]
    p = [1, 1, 0, 1, 0, 1, 0, 0, 0, 0]
    cm = confusion(y, p)
    assert cm == {"tp": 3, "fn": 2, "fp": 1, "tn": 4}
    m = from_confusion(cm)
    assert m["accuracy"] == pytest.approx(7 / 10)
    assert m["sensitivity"] == pytest.approx(3 / 5)
    assert m["specificity"] == pytest.approx(4 / 5)
    assert m["precision"] == pytest.approx(3 / 4)
    prec, rec = 3 / 4, 3 / 5
    assert m["f1"] == pytest.approx(2 * prec * rec / (prec + rec))
    assert m["f2"] == pytest.approx(5 * prec * rec / (4 * prec + rec))


def test_undefined_ratios_are_nan():
    m = from_confusion(confusion([0, 0, 1], [0, 0, 0]))
    assert math.isnan(m["precision"]) and math.isnan(m["f1"]) and m["sensitivity"] == 0.0
    assert math.isnan(roc_auc([1, 1], [0.2, 0.3]))
    assert nan_to_none({"a": float("nan"), "b": [np.float32(0.5)]}) == {"a": None, "b": [0.5]}


def test_auc_equals_pair_counting_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    s = np.round(rng.random(60), 1)  # many ties
    pos, neg = s[y == 1], s[y == 0]
    pairs = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    assert roc_auc(y, s) == pytest.approx(pairs / (len(pos) * len(neg)))
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0


def test_threshold_and_tables():
    y = np.array([0, 0, 1, 1, 1, 0])
    prob = np.array([0.1, 0.6, 0.4, 0.9, 0.5, 0.2])
    assert point_metrics(y, prob)["sensitivity"] == pytest.approx(2 / 3)  # 0.5 counts as covid
    assert point_metrics(y, prob, threshold=0.95)["sensitivity"] == 0.0
    t = grouped_tables(y, prob, ["a", "a", "a", "b", "b", "b"], n_boot=50)
    assert t["pooled"]["n"] == 6 and set(t["per_source"]) == {"a", "b"}
    assert t["per_source"]["a"]["confusion"] == {"tn": 1, "fp": 1, "fn": 1, "tp": 0}


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    prob = np.clip(y * 0.3 + rng.random(200) * 0.7, 0, 1)
    a = bootstrap_ci(y, prob, n_boot=200, seed=3)
    assert a == bootstrap_ci(y, prob, n_boot=200, seed=3)
    assert a != bootstrap_ci(y, prob, n_boot=200, seed=4)
    point = point_metrics(y, prob)
    for k, (lo, hi) in a.items():
        assert lo <= point[k] <= hi, k
        assert hi - lo < 0.3
    assert metric_table(y, prob, n_boot=0).get("ci95") is None


def test_metadata_baseline_learns_source_confounding():
    rows = []
    for i in range(80):
        src = ["h1", "h2", "h3"][i % 3]
        label = {"h1": "covid", "h2": "control"}.get(src, "covid" if i % 2 else "control")
        rows.append({"source": src, "label": label, "orig_width": 500 + i, "orig_height": 400 + (i % 5), "split": "train"})
    df = pd.DataFrame(rows)
    model = fit_metadata_baseline(df)
    p = predict_metadata_baseline(model, df)
    assert p.shape == (80,) and np.all((p > 0) & (p < 1))
    assert p[df["source"] == "h1"].min() > 0.5 > p[df["source"] == "h2"].max()
