"""Scale-out (issue 16, finding 12): two app processes on one PostgreSQL database serve 20 readers at once, in real
Chromium, half through each process; every vote is stored exactly once (double clicks included) and both processes'
dashboards show the same counts."""

from __future__ import annotations

import multiprocessing as mp
import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from study.accounts import add_reader
from study.builder import StudySpec, build_study
from study.db import connect
from study.render import SyntheticRenderer
from study.simstudy import write_synthetic_manifest
from tests.e2e.harness import CHROMIUM, has_chromium, run_app, sign_in, wait_app_idle
from tests.study.conftest import pg_server  # noqa: F401  (the PostgreSQL fixture of the study tests)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

N_READERS, N_VOTES = 20, 2


def _drive(url: str, codes: list[str], out: "mp.Queue") -> None:
    """One browser driving its readers in turn through one app process: sign in, vote N_VOTES times (the first
    click of each vote doubled), until "All done"."""
    from playwright.sync_api import sync_playwright

    from tests.e2e.harness import launch

    done = 0
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 950})
        page.set_default_timeout(120_000)
        try:
            for code in codes:
                page.goto(url)
                wait_app_idle(page)
                sign_in(page, code)
                for k in range(1, N_VOTES + 1):
                    page.get_by_text(re.compile(rf"Query {k} of {N_VOTES}")).wait_for()
                    wait_app_idle(page)
                    page.wait_for_timeout(500)  # a reader looks at the images first (R2C_MIN_DWELL_S is 0.35 s here)
                    page.get_by_role("button", name=f"Choose {1 + (done + k) % 5}").dblclick()  # must not vote twice
                    done += 1
                page.get_by_text(re.compile("All done")).wait_for()
            out.put(("ok", done))
        except Exception as exc:  # reported to the test, which fails with it (and what the page showed)
            try:
                shown = page.locator('[data-testid="stMain"]').inner_text(timeout=5000)[:600]
            except Exception as again:  # noqa: BLE001
                shown = repr(again)[:200]
            out.put(("error", f"{type(exc).__name__}: {str(exc)[:300]} | page: {shown}"))
        finally:
            browser.close()


@pytest.fixture
def pg_study(pg_server, tmp_path: Path):  # noqa: F811
    if not has_chromium():
        pytest.skip(f"end-to-end tests need Chromium at {CHROMIUM} (scripts/setup_system.sh installs it)")
    url = pg_server.new_database()
    factory = connect(url, migrate=True)
    codes = {}
    with factory.begin() as s:
        for i in range(N_READERS):
            codes[f"r{i:02d}"] = add_reader(s, f"r{i:02d}", "reader")[1]
        codes["res"] = add_reader(s, "res", "researcher")[1]
    manifest = write_synthetic_manifest(tmp_path / "data", N_VOTES + 2, seed=5)
    spec = StudySpec(name="Scale-out", manifest=manifest, n_cases=N_VOTES, split="test")
    build_study(factory, spec, SyntheticRenderer("restoration", working_size=32), assets=tmp_path / "assets", show_bar=False)
    env = {"R2C_DB_URL": url, "R2C_ASSETS": str(tmp_path / "assets"), "R2C_DATA": str(tmp_path / "data"),
           "R2C_WEIGHTS": str(tmp_path / "none"), "R2C_DEMO_DB": "0", "R2C_MIN_DWELL_S": "0.35"}  # the default guard
    try:
        yield url, env, codes
    finally:
        factory.kw["bind"].dispose()
        pg_server.drop(url)


def _answered_on_dashboard(url: str, code: str, out: "mp.Queue") -> None:
    """The researcher dashboard's "Answered" figure on one app process (its own Playwright: one per process)."""
    from playwright.sync_api import sync_playwright

    from tests.e2e.harness import launch

    try:
        with sync_playwright() as p:
            browser = launch(p)
            page = browser.new_page(viewport={"width": 1400, "height": 950})
            page.set_default_timeout(120_000)
            page.goto(url)
            wait_app_idle(page)
            sign_in(page, code)
            page.get_by_text("Researcher dashboard").first.wait_for()
            wait_app_idle(page)
            metric = page.locator('[data-testid="stMetric"]').filter(has_text="Answered")
            out.put(("ok", metric.locator('[data-testid="stMetricValue"]').inner_text().strip()))
            browser.close()
    except Exception as exc:
        out.put(("error", f"{type(exc).__name__}: {str(exc)[:300]}"))


def _in_processes(target, jobs: list[tuple]) -> list[tuple]:
    """Run ``target(*job, queue)`` for every job at once, each in its own spawned process (Playwright's sync API
    cannot run inside another one, and the session's browser fixture may hold one); returns the results."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*job, q)) for job in jobs]
    for p in procs:
        p.start()
    results = [q.get(timeout=900) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    return results


def test_two_app_processes_on_postgresql_lose_and_double_no_vote(pg_study):
    from study.models import Query, Vote

    url, env, codes = pg_study
    readers = [codes[f"r{i:02d}"] for i in range(N_READERS)]
    with run_app(env) as a, run_app(env) as b:
        results = _in_processes(_drive, [(server, readers[i::2]) for i, server in enumerate((a, b))])
        assert all(r[0] == "ok" for r in results), results
        assert sum(r[1] for r in results) == N_READERS * N_VOTES
        engine_factory = connect(url)
        try:
            with engine_factory.begin() as s:
                per_query = s.execute(select(Vote.query_id, func.count()).group_by(Vote.query_id)).all()
                n_queries = s.scalar(select(func.count()).select_from(Query))
        finally:
            engine_factory.kw["bind"].dispose()
        assert len(per_query) == n_queries == N_READERS * N_VOTES and all(n == 1 for _, n in per_query)
        # both processes' dashboards agree with the database
        shown = _in_processes(_answered_on_dashboard, [(a, codes["res"]), (b, codes["res"])])
        assert shown == [("ok", str(N_READERS * N_VOTES))] * 2, shown
