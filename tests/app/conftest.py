"""Fixtures for the app's AppTest tests: a small synthetic study database per test, the app's environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.harness import TestStudy, build_test_study

APP = str(Path(__file__).resolve().parents[2] / "app" / "streamlit_app.py")


@pytest.fixture(scope="session", autouse=True)
def _keep_suite_threads():
    """The app sets the model threads once per process; keep the suite's setting (tests/conftest.py) instead."""
    import os

    import torch

    os.environ.setdefault("R2C_TORCH_THREADS", str(torch.get_num_threads()))
    yield


@pytest.fixture
def study_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TestStudy:
    """A fresh study (4 cases + 1 practice, synthetic renditions) with one reader, researcher and admin."""
    ts = build_test_study(tmp_path / "study")
    for key, value in ts.env.items():
        monkeypatch.setenv(key, value)
    # AppTest runs no browser script: these tests drive the plain voting loop (one rerun per vote); the instant
    # voting area (app/instant_vote.js) is tested in a real browser (tests/e2e/test_instant_vote.py) and its
    # server side in tests/app/test_instant_vote.py
    monkeypatch.setenv("R2C_VOTE_UI", "plain")
    return ts


def app_test(timeout: float = 60.0):
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(APP, default_timeout=timeout)


def signed_in(ts: TestStudy, account: str):
    """An AppTest of the whole app, run and signed in as ``account``."""
    at = app_test().run()
    at.text_input(key="access_code").input(ts.codes[account])
    at.button[0].click().run()
    assert not at.exception, at.exception
    return at
