"""Start the app in a subprocess on a free port (temp database and assets) and drive it with Playwright in
the system Chromium. Used by the end-to-end tests, ``bench/bench_app_vote.py`` and ``scripts/screenshots.py``."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    """Wait until ``/_stcore/health`` answers ok (raises with the server's output if it dies or times out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = getattr(proc, "r2c_log", None)
            out = ""
            if log is not None:
                log.seek(0)
                out = log.read().decode("utf-8", "replace")
            raise RuntimeError(f"app exited with {proc.returncode}:\n{out[-4000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"app at {url} not healthy after {timeout:.0f} s")


@contextlib.contextmanager
def run_app(env: dict[str, str], port: int | None = None, timeout: float = 90.0) -> Iterator[str]:
    """The app's base URL while it runs with ``env`` added to the environment (stopped afterwards)."""
    with run_app_process(env, port, timeout) as (url, _proc):
        yield url


@contextlib.contextmanager
def run_app_process(env: dict[str, str], port: int | None = None,
                    timeout: float = 90.0) -> Iterator[tuple[str, subprocess.Popen]]:
    """:func:`run_app` that also gives the server process (tests pause it to play a server that stops answering)."""
    port = port or free_port()
    full = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "streamlit", "run", str(REPO / "app" / "streamlit_app.py"),
           "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
           "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false",
           "--client.toolbarMode", "minimal", "--runner.postScriptGC", "false"]
    # the server's output goes to a temporary file, never a pipe: nobody drains a pipe while the tests run, and a
    # full pipe (64 KB of log lines) would block the server in the middle of a test
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, cwd=REPO, env=full, stdout=log, stderr=subprocess.STDOUT)
    proc.r2c_log = log  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, timeout)
        yield url, proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)  # a test that paused it may have failed before resuming it
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def has_chromium() -> bool:
    return Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)


def launch(playwright):
    """Headless system Chromium (never a downloaded browser)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


#: the images of the voting page's instant area (app/instant_vote.js)
GRID_IMGS = ".r2c-iv-grid img.r2c-iv-img"


def wait_votes_sent(page, timeout_ms: int = 60_000) -> None:
    """Wait until the voting page's queue is empty: every vote cast in the page acknowledged by the server."""
    page.wait_for_selector('.r2c-iv-status[data-pending="0"]', state="attached", timeout=timeout_ms)


def wait_app_idle(page, timeout_ms: int = 60_000) -> None:
    """Wait until Streamlit has finished running the script (no running indicator, no stale elements)."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout_ms)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"] [data-testid=\"stStatusWidgetRunningIcon\"]')"
        " && !document.querySelector('[data-stale=\"true\"]')"
        " && !document.querySelector('[data-testid=\"stSkeleton\"], [data-testid=\"stSkeletonElement\"]')",
        timeout=timeout_ms,
    )


def sign_in(page, code: str, timeout_ms: int = 60_000) -> None:
    """Type an access code on the sign-in page and submit it."""
    box = page.get_by_label("Access code")
    box.wait_for(timeout=timeout_ms)
    box.fill(code)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("Signed in as").wait_for(timeout=timeout_ms)


# -- test databases ------------------------------------------------------------------------------------------


@dataclass
class TestStudy:
    """A study database built for tests: its environment for the app, the accounts' access codes, the study id."""

    env: dict[str, str]
    codes: dict[str, str]
    study_id: int
    methods: list[str]

    @property
    def url(self) -> str:
        return self.env["R2C_DB_URL"]


def build_test_study(root: Path, *, n_cases: int = 4, n_practice: int = 1, accounts: dict[str, str] | None = None,
                     kind: str = "restoration", seed: int = 0, name: str = "Test study",
                     no_preference: bool = False) -> TestStudy:
    """A SQLite study in ``root`` built from generated images with the synthetic renderer (a few seconds)."""
    from study.accounts import add_reader
    from study.builder import StudySpec, build_study
    from study.db import connect
    from study.render import SyntheticRenderer
    from study.simstudy import write_synthetic_manifest

    accounts = accounts or {"reader-1": "reader", "researcher-1": "researcher", "admin-1": "admin"}
    root.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{root / 'study.db'}"
    env = {"R2C_DB_URL": url, "R2C_ASSETS": str(root / "assets"), "R2C_DATA": str(root / "data"),
           "R2C_WEIGHTS": str(root / "weights"), "R2C_DEMO_DB": "0",
           # tests vote as fast as the page answers; the double-click guard is tested on its own
           "R2C_MIN_DWELL_S": "0"}
    manifest = write_synthetic_manifest(root / "data", n_cases + n_practice + 2, seed)
    factory = connect(url, migrate=True)
    codes: dict[str, str] = {}
    with factory.begin() as session:
        for acc, role in accounts.items():
            codes[acc] = add_reader(session, acc, role)[1]
    renderer = SyntheticRenderer(kind, working_size=64)
    spec = StudySpec(name=name, manifest=manifest, kind=kind, methods=tuple(renderer.methods), split="test",
                     n_cases=n_cases, seed=seed, n_practice=n_practice, no_preference=no_preference)
    study_id = build_study(factory, spec, renderer, assets=env["R2C_ASSETS"], show_bar=False)
    factory.kw["bind"].dispose()
    return TestStudy(env=env, codes=codes, study_id=study_id, methods=list(renderer.methods))


def export_test_weights(weights_root: Path, models: tuple[str, ...] = ("op-q1",), lung: bool = True) -> Path:
    """Randomly initialised (seeded) restorers and lung U-Net in the bundled-weights layout, for tests."""
    import torch

    from r2c_core.checkpoints import save_checkpoint
    from r2c_core.inference import export_generator
    from r2c_core.models import build_generator

    for model in models:
        torch.manual_seed(0)
        export_generator(build_generator(model), model, weights_root / f"r2c-{model}")
    if lung:
        from r2c_core.segmentation import DEFAULT_PREPROCESS, build_unet

        torch.manual_seed(0)
        save_checkpoint(weights_root / "lung-unet", build_unet().state_dict(),
                        {"kind": "lung-unet", "model": {"arch": "unet", "encoder": "densenet121", "in_channels": 1,
                                                        "classes": 1},
                         "preprocess": dict(DEFAULT_PREPROCESS), "threshold": 0.5}, dtype=torch.float16)
    return weights_root


def vote_through(url: str, reader_name: str, pick) -> int:
    """Answer every remaining query of ``reader_name`` through the study functions (``pick(view) -> slot``);
    returns how many votes were cast."""
    from sqlalchemy import select

    from study.accounts import start_sitting
    from study.db import connect
    from study.models import Reader
    from study.voting import next_query, submit_vote

    factory = connect(url)
    with factory.begin() as s:
        rid = s.scalar(select(Reader.id).where(Reader.name == reader_name))
        sitting = start_sitting(s, rid).id
    n = 0
    while True:
        with factory.begin() as s:
            view = next_query(s, rid, sitting_id=sitting)
            if view is None:
                return n
            submit_vote(s, rid, view.query_token, pick(view), sitting_id=sitting)
            n += 1
