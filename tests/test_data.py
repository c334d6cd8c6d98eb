"""Manifest loading, the quality score and the A/B + validation split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from r2c_core.data import (
    SPLIT_FILE, assign_domains, file_sha256, load_manifest, make_ab_split, quality_components, save_split, select_split,
)
from r2c_core.errors import ManifestError


def synthetic_manifest(n_per_cell: int = 12, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for src, lab in [("s1", "covid"), ("s1", "control"), ("s2", "covid"), ("s3", "control")]:
        for i in range(n_per_cell):
            split = "test" if i % 5 == 0 else "train"
            rows.append({
                "id": f"{src}_{lab}_{i:03d}", "file": f"images/{src}_{lab}_{i}.png", "label": lab, "split": split, "source": src,
                "group_id": f"{src}_g{i // 2}_{lab}", "orig_width": int(rng.integers(200, 3000)), "orig_height": int(rng.integers(200, 3000)),
                "lap_var": float(rng.uniform(10, 900)), "px_std": float(rng.uniform(20, 80)), "px_p1": float(rng.uniform(0, 30)),
                "px_p99": float(rng.uniform(200, 255)), "orig_format": "JPEG" if i % 3 == 0 else "PNG",
                "source_kind": "figure from publication" if i % 4 == 0 else "clinical export", "orig_has_colour": int(i % 7 == 0),
            })
    return pd.DataFrame(rows)


def test_quality_score_is_sum_of_components_and_penalties():
    df = synthetic_manifest()
    q = quality_components(df)
    expect = q[["q_resolution", "q_sharpness", "q_range", "q_contrast"]].sum(axis=1) - q[["q_jpeg", "q_figure", "q_colour"]].sum(axis=1)
    assert np.allclose(q["quality_score"], expect, atol=1e-5)
    assert q["q_jpeg"].tolist() == [int(f == "JPEG") for f in df["orig_format"]]
    # more pixels -> higher resolution component, everything else equal
    big = df.iloc[[0]].copy()
    big["orig_width"] *= 4
    both = quality_components(pd.concat([df, big], ignore_index=True))
    assert both["q_resolution"].iloc[-1] > both["q_resolution"].iloc[0]


def test_split_is_stratified_per_cell_and_by_group():
    df = synthetic_manifest()
    s = make_ab_split(df)
    assert set(s["split"]) == {"train", "val", "test"}
    assert (s.loc[df["split"].eq("test").to_numpy()[np.argsort(df["id"].to_numpy())], "split"] == "test").all()
    for (_, _, _), cell in s.groupby(["split", "source", "label"]):
        n_a = int((cell["domain"] == "A").sum())
        assert n_a == len(cell) // 2
        if n_a:  # A holds the lower scores
            assert cell.loc[cell["domain"] == "A", "quality_score"].max() <= cell.loc[cell["domain"] == "B", "quality_score"].min()
    # a patient group never spans train and val
    tv = s[s["split"] != "test"]
    assert (tv.groupby("group_id")["split"].nunique() == 1).all()
    # every (source, label) cell with train groups gives some groups to val
    val_cells = set(map(tuple, s.loc[s["split"] == "val", ["source", "label"]].to_numpy()))
    assert val_cells == {("s1", "covid"), ("s1", "control"), ("s2", "covid"), ("s3", "control")}


def test_split_is_stable_and_seed_dependent():
    df = synthetic_manifest()
    a, b = make_ab_split(df), make_ab_split(df.sample(frac=1.0, random_state=3))
    pd.testing.assert_frame_equal(a, b)
    c = make_ab_split(df, seed=7)
    assert not a["split"].equals(c["split"])


def test_domain_ties_broken_by_id():
    df = pd.DataFrame({"id": ["b", "a", "d", "c"], "source": "s", "label": "covid"})
    dom = assign_domains(df, pd.Series([1.0, 1.0, 1.0, 1.0]), pd.Series(["train"] * 4))
    assert dom.tolist() == ["A", "A", "B", "B"]


def test_saved_split_file_regenerates_identically(cxr_manifest, cxr_dir, tmp_path):
    if not SPLIT_FILE.is_file():
        pytest.fail(f"{SPLIT_FILE} is missing: run python -m r2c_core make-split")
    man = load_manifest(cxr_dir / "MANIFEST.csv")
    out = save_split(make_ab_split(man), tmp_path / "split.csv")
    assert file_sha256(out) == file_sha256(SPLIT_FILE)
    s = pd.read_csv(out)
    # both domains hold every source and label in the same proportions (up to one image per cell)
    tab = s[s["split"] == "train"].groupby(["source", "label", "domain"]).size().unstack(fill_value=0)
    assert ((tab["B"] - tab["A"]).abs() <= 1).all()


def test_load_manifest_errors(tmp_path: Path):
    p = tmp_path / "m.csv"
    p.write_text("")
    with pytest.raises(ManifestError, match="empty"):
        load_manifest(p)
    p.write_text("id,file\na,b.png\n")
    with pytest.raises(ManifestError, match="missing column"):
        load_manifest(p)
    p.write_text("id,file,label,split,source\na,b.png,maybe,train,s\n")
    with pytest.raises(ManifestError, match="label"):
        load_manifest(p)
    p.write_text("id,file,label,split,source\na,b.png,covid,train,s\n")
    with pytest.raises(ManifestError, match="do not exist"):
        load_manifest(p, check_files=True)
    df = load_manifest(p)
    with pytest.raises(ManifestError, match="unknown split"):
        select_split(df, "holdout")
    with pytest.raises(ManifestError, match="not found"):
        load_manifest(tmp_path / "nope.csv")
