"""Screenshots of every page of the app, as a new user would see them, into the git-ignored screenshots/ folder.

    python scripts/screenshots.py            # screenshots/*.png
    python scripts/screenshots.py --docs     # also small copies in docs/screenshots/ (Hannover images only)

It builds a throw-away demo database (the same bootstrap as the first start: Hannover (mhh) cases from R2C_DATA,
the bundled weights in R2C_WEIGHTS or weights/), lets three simulated readers vote so that the dashboard has
numbers, starts the app on a free port and walks through it in headless Chromium: sign-in (with the demo guide),
the voting page (practice, a counted query, synchronized zoom, window/level, the enlarged view), the researcher dashboard (the demo
study, then the simulated study the demo database also holds), the admin pages and
the demo page with a Hannover X-ray from the data folder. Every X-ray shown comes from the Hannover (mhh)
collection, CC BY 3.0, so the docs copies carry the attribution line.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHOTS = REPO / "screenshots"
DOCS = REPO / "docs" / "screenshots"
ATTRIBUTION = ("Images: Hannover Medical School COVID-19 image repository (Winther et al., doi:10.25835/0090041), "
               "CC BY 3.0")
#: screenshots copied to docs/ (each shows Hannover images only, or no X-ray at all)
FOR_DOCS = ("sign-in", "vote", "vote-zoom", "vote-window-level", "enlarged", "dashboard", "dashboard-charts", "dashboard-simulated", "demo",
            "admin-studies")
SIM_READERS = {"reader A": {"op-q3-x3": 3.0, "original": 0.6}, "reader B": {"cnn-compact-x3": 2.0},
               "reader C": {"original": 1.5, "op-q5-x3": 1.5}}


def _setup(tmp: Path) -> dict[str, str]:
    env = {"R2C_DB_URL": f"sqlite:///{tmp / 'study.db'}", "R2C_ASSETS": str(tmp / "assets"), "R2C_DEMO_DB": "1",
           "R2C_MIN_DWELL_S": "0"}
    os.environ.update(env)
    from app.demo_db import DEMO_STUDY, ensure_demo_database
    from app.settings import load_settings

    status = ensure_demo_database(load_settings(), progress=lambda d, t: print(f"\rdemo study: {d}/{t}", end=""))
    print()
    if not status.study_built:
        raise SystemExit(f"error: no demo study ({status.note}); the screenshots need the data folder (R2C_DATA)")
    print(f"demo study renderer: {status.renderer}")
    _simulate(env["R2C_DB_URL"], DEMO_STUDY)
    return env


def _simulate(url: str, study_name: str) -> None:
    """Three readers with known preferences vote through the demo study (through the study functions)."""
    from study.accounts import add_reader, start_sitting
    from study.builder import assign_readers, get_study
    from study.db import connect
    from study.simulate import SimReader
    from study.voting import next_query, query_id_for_token, query_slot_methods, submit_vote

    factory = connect(url)
    with factory.begin() as s:
        ids = {name: add_reader(s, name, "reader")[0].id for name in SIM_READERS}
        assign_readers(s, get_study(s, study_name).id, list(SIM_READERS))
    import numpy as np

    rng = np.random.default_rng(0)
    for name, pref in SIM_READERS.items():
        sim = SimReader(name, pref, slot_bias=None)
        with factory.begin() as s:
            sitting = start_sitting(s, ids[name]).id
        while True:
            with factory.begin() as s:
                view = next_query(s, ids[name], sitting_id=sitting)
                if view is None:
                    break
                methods = query_slot_methods(s, query_id_for_token(s, view.query_token))
                submit_vote(s, ids[name], view.query_token, sim.choose(rng, methods) + 1,
                            confidence=int(rng.integers(2, 6)), sitting_id=sitting)


def _shoot(env: dict[str, str], has_weights: bool) -> list[str]:
    from playwright.sync_api import sync_playwright

    from tests.e2e.harness import GRID_IMGS, launch, run_app, sign_in, wait_app_idle, wait_votes_sent

    SHOTS.mkdir(exist_ok=True)
    taken: list[str] = []

    def snap(page, name: str) -> None:
        wait_app_idle(page)
        if name == "dashboard":
            page.locator(".js-plotly-plot").first.wait_for()
        page.wait_for_timeout(400)
        page.screenshot(path=str(SHOTS / f"{name}.png"))
        taken.append(name)

    with run_app(env) as url, sync_playwright() as p:
        browser = launch(p)

        def fresh():
            ctx = browser.new_context(viewport={"width": 1440, "height": 900})
            pg = ctx.new_page()
            pg.set_default_timeout(120_000)
            pg.goto(url)
            wait_app_idle(pg)
            return ctx, pg

        ctx, page = fresh()
        snap(page, "sign-in")
        sign_in(page, "demo-reader")
        page.get_by_text("Practice 1 of 1").wait_for()
        snap(page, "vote-practice")
        page.keyboard.press("2")
        page.get_by_text("Query 1 of 6").wait_for()
        wait_votes_sent(page)
        page.mouse.move(0, 0)
        snap(page, "vote")
        img = page.locator(GRID_IMGS).nth(2)
        box = img.bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.35, box["y"] + box["height"] * 0.45)
        for _ in range(4):
            page.mouse.wheel(0, -160)
            page.wait_for_timeout(60)
        page.wait_for_timeout(300)
        page.screenshot(path=str(SHOTS / "vote-zoom.png"))
        taken.append("vote-zoom")
        page.mouse.dblclick(box["x"] + 10, box["y"] + 10)
        page.wait_for_timeout(400)
        page.locator('[data-r2c-wl="lung"]').click()  # window/level: the same lung window on every image
        page.mouse.move(0, 0)
        page.wait_for_timeout(300)
        page.screenshot(path=str(SHOTS / "vote-window-level.png"))
        taken.append("vote-window-level")
        page.locator('[data-r2c-wl="default"]').click()
        page.wait_for_timeout(200)
        cap = page.get_by_text("Image 2", exact=True).bounding_box()
        page.mouse.click(cap["x"] + cap["width"] / 2, cap["y"] - 40)
        page.locator("#r2c-lightbox").wait_for()
        page.wait_for_timeout(400)
        page.screenshot(path=str(SHOTS / "enlarged.png"))
        taken.append("enlarged")
        ctx.close()

        for account, pages in (("demo-researcher", [("dashboard", None)]),
                               ("demo-admin", [("admin-studies", None), ("admin-readers", "Readers"),
                                               ("admin-export", "Export")])):
            ctx, page = fresh()
            sign_in(page, account)
            for name, link in pages:
                if link:
                    page.get_by_role("link", name=link).click()
                    page.get_by_role("heading", name=link).wait_for()
                snap(page, name)
                if name == "dashboard":
                    page.locator('[data-testid="stMain"]').evaluate("e => e.scrollTo(0, 760)")
                    page.wait_for_timeout(500)
                    page.screenshot(path=str(SHOTS / "dashboard-charts.png"))
                    taken.append("dashboard-charts")
                    from app.demo_db import SIMULATED_STUDY

                    page.locator('[data-testid="stMain"]').evaluate("e => e.scrollTo(0, 0)")
                    page.wait_for_timeout(300)
                    page.get_by_role("combobox", name="Study").click()
                    page.get_by_role("option", name=SIMULATED_STUDY, exact=True).click()
                    page.get_by_text("Simulated data.").first.wait_for()
                    snap(page, "dashboard-simulated")
            ctx.close()

        ctx, page = fresh()
        if has_weights:  # picking a data-folder image needs a researcher (readers and visitors upload their own)
            sign_in(page, "demo-researcher")
            page.get_by_role("link", name="Demo").click()  # in-app navigation keeps the session (a reload signs out)
        else:
            page.goto(f"{url}/demo")
        page.get_by_role("heading", name=re.compile("Demo")).first.wait_for()
        wait_app_idle(page)
        if has_weights:
            page.get_by_text("Pick from the data folder").click()
            page.get_by_text("COVID-19 probability").wait_for()
            page.mouse.move(0, 0)
            snap(page, "demo")
        else:
            snap(page, "demo-no-weights")
        ctx.close()
        browser.close()
    return taken


def _to_docs(names: list[str]) -> list[Path]:
    from PIL import Image

    DOCS.mkdir(parents=True, exist_ok=True)
    out = []
    for name in names:
        if name not in FOR_DOCS:
            continue
        with Image.open(SHOTS / f"{name}.png") as im:
            im = im.convert("RGB")
            im.thumbnail((1200, 1200))
            small = im.quantize(colors=192, method=Image.Quantize.MEDIANCUT)
            path = DOCS / f"{name}.png"
            small.save(path, optimize=True)
            out.append(path)
    (DOCS / "README.md").write_text(
        "# App screenshots\n\nMade by `python scripts/screenshots.py --docs` (headless Chromium, 1440x900, "
        "downscaled). The X-rays shown are Hannover (mhh) images only.\n\n" + ATTRIBUTION + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", action="store_true", help="also write small copies to docs/screenshots/")
    parser.add_argument("--weights", default=None, help="weights root (default R2C_WEIGHTS or weights/)")
    args = parser.parse_args(argv)
    if args.weights:
        os.environ["R2C_WEIGHTS"] = str(Path(args.weights).resolve())
    from r2c_core.paths import weights_root
    from tests.e2e.harness import has_chromium

    if not has_chromium():
        print("error: screenshots need /usr/bin/chromium (scripts/setup_system.sh)", file=sys.stderr)
        return 2
    root = weights_root()
    has_weights = any((d / "config.json").is_file() for d in root.glob("r2c-*"))
    tmp = Path(tempfile.mkdtemp(prefix="r2c-shots-"))
    try:
        env = _setup(tmp)
        env["R2C_WEIGHTS"] = str(root)
        random.seed(0)
        taken = _shoot(env, has_weights)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("screenshots:", ", ".join(f"screenshots/{n}.png" for n in taken))
    if args.docs:
        for path in _to_docs(taken):
            print(f"  docs copy: {path.relative_to(REPO)} ({path.stat().st_size // 1024} kB)")
    if not has_weights:
        print(f"note: no restoration weights in {root}: the demo study is synthetic and the demo page has no model")
    return 0


if __name__ == "__main__":
    sys.exit(main())
