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
from study.accounts import authenticate
from study.analysis import tables as stats
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
    assert list(studies["name"]) == [demo_db.DEMO_STUDY, demo_db.SIMULATED_STUDY]
    assert int(studies["cases"].iloc[0]) == demo_db.DEMO_CASES and int(studies["practice_cases"].iloc[0]) == 1
    assert list(studies["simulated"]) == [False, True]
    assert int(studies["answered"].iloc[0]) == 0 and int(studies["answered"].iloc[1]) > 100  # every statistic can show


def test_simulated_demo_study_is_labelled_everywhere(tmp_path):
    from study import overview as queries
    from study.export import export_study, tidy_votes

    cfg = _settings(tmp_path, tmp_path / "none")  # no X-ray data: the simulated study is still there
    demo_db.ensure_demo_database(cfg)
    factory = connect(cfg.db_url)
    with factory.begin() as s:
        ov = queries.studies(s)
        sim_id = int(ov.loc[ov["simulated"], "id"].iloc[0])
        tidy = tidy_votes(s, sim_id)
        files = export_study(s, sim_id, tmp_path / "export", formats=("csv",))
    assert ov.loc[ov["simulated"], "name"].iloc[0].lower().startswith("simulated")
    summary = stats.summary(tidy)
    assert summary["selection"]["n"].sum() > 0 and tidy["reader"].nunique() == demo_db.SIMULATED_READERS
    names = [f.name for f in files]
    assert all(n.startswith("SIMULATED_") for n in names) and any(n.endswith("_NOTICE.txt") for n in names)
    votes = pd.read_csv(next(f for f in files if f.name.endswith("_votes.csv")))
    assert votes["simulated"].all()
    # the demo reader is never assigned to the simulated study
    with factory.begin() as s:
        from sqlalchemy import select

        from study.models import Reader
        from study.voting import next_query

        reader = s.scalar(select(Reader).where(Reader.name == "demo-reader"))
        assert next_query(s, reader.id, study=sim_id) is None


def test_dashboard_opens_on_a_study_with_votes():
    from app.app_pages.dashboard import default_study_index

    ov = pd.DataFrame({"answered": [0, 12, 3]})
    assert default_study_index(ov) == 1
    assert default_study_index(pd.DataFrame({"answered": [0, 0]})) == 0


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


def test_no_real_study_in_the_demo_database(tmp_path):
    """Issue 16, finding 2: the demo database's codes are public, so a real study is neither built nor opened there."""
    from study.builder import StudySpec, build_study, set_status
    from study.errors import StudyError
    from study.models import Study
    from study.render import SyntheticRenderer

    data = tmp_path / "data"
    manifest = write_synthetic_manifest(data, 12, seed=1)
    cfg = _settings(tmp_path, data)
    demo_db.ensure_demo_database(cfg)  # the demo and simulated studies are allowed
    factory = connect(cfg.db_url)
    spec = StudySpec(name="Real study", manifest=manifest, n_cases=3)
    with pytest.raises(StudyError, match="demo database"):
        build_study(factory, spec, SyntheticRenderer("restoration", working_size=16), assets=tmp_path / "a", show_bar=False)
    with factory.begin() as s:  # a study slipped in before this rule cannot be opened either
        from sqlalchemy import select

        demo = s.scalar(select(Study).where(Study.name == demo_db.DEMO_STUDY))
        demo.settings = {k: v for k, v in demo.settings.items() if k != "demo"} | {"method_settings": {}}
        demo.status = "closed"
    with factory.begin() as s, pytest.raises(StudyError, match="demo database"):
        set_status(s, demo_db.DEMO_STUDY, "open")
    # the same build in a database of its own works
    own = connect(f"sqlite:///{tmp_path / 'own.db'}", migrate=True)
    assert build_study(own, spec, SyntheticRenderer("restoration", working_size=16), assets=tmp_path / "a", show_bar=False)


def test_study_deployment_command_refuses_the_demo_database(tmp_path):
    """``scripts/run_study.sh init`` makes a database of its own with one admin whose code is printed once; it
    refuses a database that carries the demo flag."""
    import os
    import subprocess

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "R2C_DB_URL": f"sqlite:///{tmp_path / 'deploy' / 'study.db'}", "R2C_ASSETS": str(tmp_path / "assets")}
    res = subprocess.run(["bash", "scripts/run_study.sh", "init", "boss"], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    code = res.stdout.split("access code (shown once, give it to the reader):")[1].split()[0]
    with connect(env["R2C_DB_URL"]).begin() as s:
        who = authenticate(s, code)
        assert who.name == "boss" and who.role == "admin"
    assert oct((tmp_path / "deploy" / "study.db").stat().st_mode & 0o777) == "0o600"
    cfg = _settings(tmp_path / "demo", tmp_path / "none")
    demo_db.ensure_demo_database(cfg)
    res = subprocess.run(["bash", "scripts/run_study.sh", "serve"], cwd=repo, env={**env, "R2C_DB_URL": cfg.db_url},
                         capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "demo database" in res.stderr


def test_client_address_trusts_forwarded_headers_only_from_configured_proxies():
    from app.auth import client_address

    assert client_address("203.0.113.9", "1.2.3.4", set()) == "203.0.113.9"  # untrusted peer: header ignored
    assert client_address(None, "1.2.3.4", set()) == "local"  # localhost without a configured proxy: no bypass
    assert client_address(None, "1.2.3.4", {"127.0.0.1"}) == "1.2.3.4"  # a proxy on this machine
    assert client_address(None, "6.6.6.6, 1.2.3.4", {"127.0.0.1"}) == "1.2.3.4"  # the left part is the client's own text
    assert client_address("10.0.0.5", "9.9.9.9, 1.2.3.4, 10.0.0.7", {"10.0.0.5", "10.0.0.7"}) == "1.2.3.4"
    assert client_address("10.0.0.5", "", {"10.0.0.5"}) == "10.0.0.5"


def test_lockouts_per_address_and_per_account_one_audit_row_each_and_lifted_by_an_admin(tmp_path):
    """Issue 16, finding 4."""
    from sqlalchemy import func, select

    from app.auth import LOCKED_MESSAGE, sign_in
    from study import audit
    from study.accounts import lift_lockout, lockouts
    from study.models import AuditEvent

    ts = build_test_study(tmp_path / "s", n_cases=2, n_practice=0)
    factory = connect(ts.url)
    good = ts.codes["reader-1"]
    wrong = good[:-1] + ("A" if good[-1] != "A" else "B")  # the right account, a wrong secret
    # 1. per account: five wrong secrets from five addresses lock the account for everyone, the right code included
    for i in range(5):
        assert sign_in(factory, wrong, f"ip:10.0.0.{i}").user is None
    assert sign_in(factory, good, "ip:10.0.0.99").message == LOCKED_MESSAGE
    assert sign_in(factory, good, "ip:10.0.0.98").message == LOCKED_MESSAGE
    def count(action: str) -> int:
        with factory.begin() as s:
            return int(s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)))
    assert count(audit.SIGN_IN_LOCKED) == 1  # one row per lockout, not per refused try
    with factory.begin() as s:
        locks = lockouts(s)
        assert [(lk["kind"], lk["key"]) for lk in locks] == [("account", "reader-1")]
        lift_lockout(s, reader_id=locks[0]["reader_id"], actor=None)
    assert sign_in(factory, good, "ip:10.0.0.99").user is not None  # lifted
    # 2. per address: garbage from one address locks that address only
    for _ in range(5):
        sign_in(factory, "not-a-code", "ip:6.6.6.6")
    assert sign_in(factory, ts.codes["researcher-1"], "ip:6.6.6.6").message == LOCKED_MESSAGE
    assert sign_in(factory, ts.codes["researcher-1"], "ip:7.7.7.7").user is not None  # other users are not locked out
    with factory.begin() as s:
        assert [lk["key"] for lk in lockouts(s)] == ["ip:6.6.6.6"]
        lift_lockout(s, everything=True)
    assert sign_in(factory, ts.codes["researcher-1"], "ip:6.6.6.6").user is not None
    assert count(audit.LOCKOUT_LIFTED) == 2


def test_demo_results_kept_downsized_and_one_demo_at_a_time():
    """Issue 16, finding 7: a session keeps display-size images only, and the server runs one demo job at a time."""
    import threading

    from app import services
    from r2c_core.demo import DemoResult, downsized

    big = np.zeros((3000, 2400), np.uint8)
    res = DemoResult(original=big, restored=big, prob_covid=0.5, model="op-q1", passes=1,
                     overlay_original=np.zeros((3000, 2400, 3), np.uint8), overlay_restored=None, mask_original=big > 0)
    small = downsized(res, 1460)
    assert small.original.shape == (1460, 1168) and small.overlay_original.shape == (1460, 1168, 3)
    assert small.mask_original is None and small.restored.dtype == np.uint8
    assert downsized(small, 1460).original is small.original  # already small: kept as is
    held, release = threading.Event(), threading.Event()

    def hold():
        with services.demo_slot(timeout=1) as got:
            assert got
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(10)
    with services.demo_slot(timeout=0.2) as got:
        assert not got  # a second job waits, then is told the server is busy
    release.set()
    t.join()
    with services.demo_slot(timeout=0.2) as got:
        assert got


def test_server_limits_come_from_the_repository_config():
    """The settings the server enforces (not the browser): 64 MB request bodies, no error details for users."""
    import tomllib

    cfg = tomllib.loads((Path(__file__).resolve().parents[2] / ".streamlit" / "config.toml").read_text())
    assert cfg["server"]["maxUploadSize"] <= 64 and cfg["client"]["showErrorDetails"] == "none"
    from app.app_pages.demo import MAX_UPLOAD_MB

    assert MAX_UPLOAD_MB <= cfg["server"]["maxUploadSize"]


def test_pixel_limit_refuses_a_small_file_that_decodes_huge(tmp_path):
    import io as _io

    from r2c_core.errors import ImageLoadError
    from r2c_core.imageio import MAX_PIXELS, read_xray

    assert MAX_PIXELS <= 25_000_000
    buf = _io.BytesIO()
    Image.new("I;16", (6000, 6000)).save(buf, format="PNG")  # 36 MP of zeros: a few KB on disk
    assert len(buf.getvalue()) < 200_000
    with pytest.raises(ImageLoadError, match="pixel limit"):
        read_xray(buf.getvalue(), name="bomb.png")
