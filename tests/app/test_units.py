"""Unit tests of the app's non-page modules: the demo database bootstrap and its aliases, folder manifests,
dashboard tables and charts, and the demo pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from app import charts, demo_db, study_admin
from app.app_pages.dashboard import count_table, ratio_table
from app.settings import AppSettings
from study import stats
from study.accounts import authenticate
from study.db import connect
from study.errors import ManifestError
from study.manifest import folder_manifest
from study.simstudy import write_synthetic_manifest
from study.simulate import SimReader, simulate_tidy
from tests.e2e.harness import build_test_study


def _settings(tmp: Path, data: Path, allowed: bool = True) -> AppSettings:
    return AppSettings(db_url=f"sqlite:///{tmp / 'var' / 'study.db'}", assets=tmp / "var" / "assets", data_dir=data,
                       weights_root=tmp / "no-weights", device="cpu", demo_allowed=allowed)


def test_demo_database_is_created_once_with_working_aliases(tmp_path):
    data = tmp_path / "data"
    write_synthetic_manifest(data, 12, seed=1)
    cfg = _settings(tmp_path, data)
    status = demo_db.ensure_demo_database(cfg)
    assert status.is_demo and status.created and status.study_built and status.renderer == "synthetic"
    factory = connect(cfg.db_url)
    with factory.begin() as s:
        for alias, role in demo_db.DEMO_ACCOUNTS.items():
            reader = authenticate(s, demo_db.resolve_alias(s, f"  {alias.upper()} "))
            assert reader is not None and reader.name == alias and reader.role == role
        assert authenticate(s, demo_db.resolve_alias(s, "demo-nobody")) is None
    again = demo_db.ensure_demo_database(cfg)
    assert again.is_demo and not again.created
    from study import overview as queries

    with factory.begin() as s:
        studies = queries.studies(s)
    assert list(studies["name"]) == [demo_db.DEMO_STUDY]
    assert int(studies["cases"].iloc[0]) == demo_db.DEMO_CASES and int(studies["practice_cases"].iloc[0]) == 1


def test_demo_aliases_never_work_in_other_databases(tmp_path):
    ts = build_test_study(tmp_path / "s", n_cases=2, n_practice=0)
    cfg = AppSettings(db_url=ts.url, assets=Path(ts.env["R2C_ASSETS"]), data_dir=tmp_path / "none",
                      weights_root=tmp_path / "none", device="cpu", demo_allowed=True)
    status = demo_db.ensure_demo_database(cfg)
    assert not status.is_demo
    with connect(ts.url).begin() as s:
        assert demo_db.resolve_alias(s, "demo-admin") == "demo-admin"
        assert authenticate(s, demo_db.resolve_alias(s, "demo-admin")) is None
        from study import overview as queries

        assert not any(n.startswith("demo-") for n in queries.readers(s)["name"])


def test_no_demo_database_where_it_is_not_allowed(tmp_path):
    cfg = _settings(tmp_path, tmp_path / "none", allowed=False)
    assert not demo_db.ensure_demo_database(cfg).is_demo
    assert not (tmp_path / "var" / "study.db").exists()


def test_demo_database_without_data_has_accounts_but_no_study(tmp_path):
    cfg = _settings(tmp_path, tmp_path / "none")
    status = demo_db.ensure_demo_database(cfg)
    assert status.is_demo and not status.study_built and "demo study skipped" in status.note


def test_demo_access_codes_are_valid_and_distinct():
    from study.security import split_code

    codes = {demo_db.demo_access_code(a) for a in demo_db.DEMO_ACCOUNTS}
    assert len(codes) == 3 and all(split_code(c) is not None for c in codes)


def test_folder_manifest_labels_from_subfolders(tmp_path):
    folder = tmp_path / "imgs"
    for rel in ("a.png", "covid/b.png", "control/c.jpg", "control/d.png", "notes.txt"):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith("txt"):
            (folder / rel).write_text("x")
        else:
            Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / rel)
    path, n = folder_manifest(folder, tmp_path / "m.csv", default_label="control")
    df = pd.read_csv(path)
    assert n == 4 and sorted(df["label"]) == ["control", "control", "control", "covid"]
    assert df.set_index("id").loc["covid_b", "label"] == "covid" and df["id"].is_unique
    assert all(Path(f).is_absolute() and Path(f).is_file() for f in df["file"])
    with pytest.raises(ManifestError):
        folder_manifest(tmp_path / "missing", tmp_path / "x.csv")
    with pytest.raises(ManifestError):
        folder_manifest(folder / "covid", tmp_path / "y.csv", default_label="unknown")


def test_study_from_a_folder_of_images(tmp_path):
    """The admin page's path: any folder of images -> manifest -> built, open study."""
    from study.builder import StudySpec

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (40, 48), dtype=np.uint8)).save(folder / f"x{i}.png")
    manifest, n = folder_manifest(folder, tmp_path / "m.csv")
    ts = build_test_study(tmp_path / "s", n_cases=1, n_practice=0)
    renderer, methods = study_admin.make_renderer("synthetic", "segmentation", tmp_path / "none")
    spec = StudySpec(name="folder study", manifest=manifest, kind="segmentation", methods=tuple(methods), split=None,
                     n_cases=n, seed=0)
    sid = study_admin.build(connect(ts.url), spec, renderer, Path(ts.env["R2C_ASSETS"]))
    from study import overview as queries

    with connect(ts.url).begin() as s:
        row = queries.studies(s).set_index("id").loc[sid]
    assert (row["kind"], row["status"], row["cases"]) == ("segmentation", "open", 5)


def test_r2c_renderer_needs_weights(tmp_path):
    from study.errors import StudyError

    with pytest.raises(StudyError, match="no restoration weights"):
        study_admin.make_renderer("r2c", "restoration", tmp_path)


def _tidy():
    readers = [SimReader("r1", {"op-q3-x3": 3.0}), SimReader("r2", {"original": 2.0})]
    return simulate_tidy(readers, 20, ["original", "cnn-x1", "op-q3-x3"], seed=3)


def test_dashboard_tables_agree_with_the_tidy_table():
    tidy = _tidy()
    sel = stats.selection_ratios(tidy)
    counts = count_table(sel)
    reads = stats.counted_reads(tidy)
    for reader, part in reads.groupby("reader"):
        vc = part["chosen_method"].value_counts()
        assert all(int(counts.loc[reader, m]) == int(vc.get(m, 0)) for m in counts.columns)
    assert int(counts.loc["overall"].sum()) == len(reads)
    ratios = ratio_table(sel)
    assert list(ratios.columns) == ["n", "original", "cnn-x1", "op-q3-x3"]
    r = sel[(sel["reader"] == "overall") & (sel["method"] == "op-q3-x3")].iloc[0]
    assert ratios.loc["overall", "op-q3-x3"] == f"{100 * r['ratio']:.1f} [{100 * r['ci_low']:.1f}, {100 * r['ci_high']:.1f}]"


def test_charts_show_the_counts():
    tidy = _tidy()
    sel = stats.selection_ratios(tidy)
    fig = charts.selections_per_reader(sel)
    per = sel[sel["reader"] != "overall"]
    assert sum(sum(t.y) for t in fig.data) == per["chosen"].sum()
    fig2 = charts.ratio_with_intervals(sel)
    overall = sel[sel["reader"] == "overall"]
    assert list(fig2.data[0].y) == pytest.approx(list(overall["ratio"]))
    assert list(fig2.data[0].error_y.array) == pytest.approx(list(overall["ci_high"] - overall["ratio"]))
    fig3 = charts.reading_time_distribution(tidy)
    assert len(fig3.data[0].y) == len(stats.counted_reads(tidy))


def test_demo_pipeline_times_each_step(tmp_path):
    import torch

    from r2c_core.demo import run_demo
    from r2c_core.inference import Restorer, export_generator
    from r2c_core.models import build_generator

    torch.manual_seed(0)
    d = export_generator(build_generator("op-q1"), "op-q1", tmp_path / "g")
    gray = (np.arange(300 * 260) % 251).astype(np.uint8).reshape(300, 260)

    class HalfLung:
        threshold = 0.5

        def masks(self, grays):
            out = []
            for g in grays:
                m = np.zeros(g.shape, bool)
                m[:, : g.shape[1] // 2] = True
                out.append(m)
            return out

    steps = []
    res = run_demo(gray, Restorer.from_dir(d), HalfLung(), passes=2, progress=lambda msg, f: steps.append(f))
    assert res.restored.shape == gray.shape and res.restored.dtype == np.uint8
    assert 0.0 <= res.prob_covid <= 1.0 and res.passes == 2 and res.model == "op-q1"
    assert res.overlay_original.shape == (300, 260, 3) and res.lung_fraction == pytest.approx((0.5, 0.5))
    assert set(res.timings) == {"restore", "segment", "overlay"} and steps[-1] == 1.0
    no_seg = run_demo(gray, Restorer.from_dir(d), None, passes=1)
    assert no_seg.overlay_original is None and set(no_seg.timings) == {"restore"}
