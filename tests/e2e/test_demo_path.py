"""The demo path in headless Chromium, on a fresh demo database (issue 20): the sign-in page guides a visitor through
the three demo codes; ``demo-researcher`` lands on the simulated study's populated dashboard, every section
labelled simulated; a vote cast as ``demo-reader`` shows up at once in the real demo study's dashboard."""

from __future__ import annotations

import re

import pytest

from app import demo_db
from app.settings import AppSettings
from study.db import connect
from study.export import tidy_votes
from study.simstudy import write_synthetic_manifest
from tests.e2e.harness import CHROMIUM, has_chromium, launch, run_app, sign_in, wait_app_idle, wait_votes_sent

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def demo_env(tmp_path_factory):
    if not has_chromium():
        pytest.skip(f"end-to-end tests need Chromium at {CHROMIUM} (scripts/setup_system.sh installs it)")
    root = tmp_path_factory.mktemp("demo")
    data = root / "data"
    write_synthetic_manifest(data, 12, seed=3)  # no real X-ray needed: without restorers the demo study is synthetic
    env = {"R2C_DB_URL": f"sqlite:///{root / 'var' / 'study.db'}", "R2C_ASSETS": str(root / "var" / "assets"),
           "R2C_DATA": str(data), "R2C_WEIGHTS": str(root / "no-weights"), "R2C_DEMO_DB": "1", "R2C_DEVICE": "cpu",
           "R2C_MIN_DWELL_S": "0"}  # the test votes as fast as the page answers
    # what `scripts/run_app.sh` does before starting the server (python -m app.demo_db)
    status = demo_db.ensure_demo_database(AppSettings(db_url=env["R2C_DB_URL"], assets=root / "var" / "assets", data_dir=data,
                                                      weights_root=root / "no-weights", device="cpu", demo_allowed=True))
    assert status.created and status.study_built
    return env


@pytest.fixture(scope="module")
def demo_url(demo_env):
    with run_app(demo_env) as url:
        yield url


@pytest.fixture
def page(demo_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        ctx = browser.new_context(viewport={"width": 1400, "height": 950})
        pg = ctx.new_page()
        pg.set_default_timeout(120_000)
        yield pg
        browser.close()


def _sign_out(page) -> None:
    """A reload starts a new app session, signed out (the voting page keeps the sidebar with its button closed)."""
    page.reload()
    wait_app_idle(page)
    page.get_by_label("Access code").wait_for()


def _answered(page) -> str:
    return page.locator('[data-testid="stMetric"]').filter(has_text="Answered").locator('[data-testid="stMetricValue"]').inner_text().strip()


def test_demo_path_simulated_dashboard_then_a_real_vote(page, demo_url, demo_env):
    page.goto(demo_url)
    wait_app_idle(page)
    guide = page.get_by_text("Demo: try these three codes in this order")
    guide.wait_for()
    body = page.locator('[data-testid="stMain"]').inner_text()
    assert body.index("1. demo-researcher") < body.index("2. demo-reader") < body.index("3. demo-admin")

    # 1. the researcher: the simulated study, populated, every section labelled
    sign_in(page, "demo-researcher")
    page.get_by_text("Researcher dashboard").first.wait_for()
    wait_app_idle(page)
    page.get_by_text(re.compile(r"Simulated data\.")).first.wait_for()
    study_box = page.get_by_role("combobox", name="Study")
    assert study_box.input_value() == demo_db.SIMULATED_STUDY  # the study shown first: the one with votes
    assert int(_answered(page)) > 100
    for title in ("Selection ratio, % [95% CI]", "Selections (counts)"):
        page.get_by_text(title + " (SIMULATED DATA)").wait_for()
    rows = page.locator('[data-testid="stTable"] tbody tr')
    rows.nth(demo_db.SIMULATED_READERS).wait_for()  # every simulated reader, then "overall", with counts
    charts = page.locator(".js-plotly-plot")
    charts.nth(2).wait_for()
    assert all("SIMULATED DATA" in charts.nth(i).inner_text() for i in range(charts.count()))
    page.get_by_role("tab", name="Tests").click()
    page.get_by_text("Chi-square test against uniform choice (SIMULATED DATA)").wait_for()
    page.get_by_role("tab", name="Full analysis").click()
    page.get_by_text("Full analysis (SIMULATED DATA)").wait_for()
    page.get_by_role("button", name="Run the full analysis").click()
    report = page.locator('[data-testid="stCode"]').first
    report.wait_for()
    text = report.inner_text()
    assert text.startswith("SIMULATED DATA") and re.search(r"position", text, re.I)
    _sign_out(page)

    # 2. the reader votes in the real demo study: the practice query, then one counted query
    sign_in(page, "demo-reader")
    page.get_by_text(re.compile(r"Practice 1 of 1")).wait_for()
    wait_app_idle(page)
    page.keyboard.press("2")
    page.get_by_text(re.compile(r"Query 1 of \d+")).wait_for()
    wait_app_idle(page)
    page.keyboard.press("3")
    page.get_by_text(re.compile(r"Query 2 of \d+")).wait_for()
    wait_votes_sent(page)  # the next query shows at once; the vote reaches the server just after
    wait_app_idle(page)
    _sign_out(page)

    # 3. the vote is in the real demo study's dashboard at once
    with connect(demo_env["R2C_DB_URL"]).begin() as s:
        from sqlalchemy import select

        from study.models import Study

        demo_id = s.scalar(select(Study.id).where(Study.name == demo_db.DEMO_STUDY))
        tidy = tidy_votes(s, demo_id)
    assert int(tidy["chosen_method"].notna().sum()) == 1 and list(tidy["reader"].dropna().unique()) == ["demo-reader"]
    sign_in(page, "demo-researcher")
    page.get_by_text("Researcher dashboard").first.wait_for()
    wait_app_idle(page)
    page.get_by_role("combobox", name="Study").click()
    page.get_by_role("option", name=demo_db.DEMO_STUDY, exact=True).click()
    wait_app_idle(page)
    page.get_by_text(re.compile(r"\d+ cases, 1 readers")).wait_for()
    assert _answered(page) == "1"
    assert page.get_by_text(re.compile(r"Simulated data\.")).count() == 0
    assert page.get_by_text("Selection ratio, % [95% CI]", exact=True).count() == 1
