"""Fixtures for the end-to-end tests: one app server per session on a free port with a temp database, temp
assets and test weights, and the system Chromium driven by Playwright (skipped when Chromium is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.harness import CHROMIUM, TestStudy, build_test_study, export_test_weights, has_chromium, launch, run_app

SCREENSHOTS = Path(__file__).resolve().parents[2] / "screenshots"


@pytest.fixture(scope="session")
def e2e_study(tmp_path_factory) -> TestStudy:
    if not has_chromium():
        pytest.skip(f"end-to-end tests need Chromium at {CHROMIUM} (scripts/setup_system.sh installs it)")
    root = tmp_path_factory.mktemp("e2e")
    ts = build_test_study(root, n_cases=4, n_practice=1,
                          accounts={"reader-1": "reader", "reader-2": "reader", "reader-3": "reader", "researcher-1": "researcher",
                                    "admin-1": "admin"})
    export_test_weights(Path(ts.env["R2C_WEIGHTS"]), models=("op-q1",), lung=True)
    return ts


@pytest.fixture(scope="session")
def app_url(e2e_study):
    with run_app(e2e_study.env) as url:
        yield url


@pytest.fixture(scope="session")
def browser(e2e_study):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


@pytest.fixture
def page(browser, app_url):
    ctx = browser.new_context(viewport={"width": 1400, "height": 950})
    pg = ctx.new_page()
    pg.set_default_timeout(120_000)  # generous: the first page of a cold app server on a busy 2-core machine
    yield pg
    ctx.close()


@pytest.fixture(scope="session")
def shots() -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    return SCREENSHOTS
