"""End to end in headless Chromium: a reader votes through a study with mouse and keyboard, reloads and resumes;
the researcher's dashboard shows the database's counts; the demo page restores a real X-ray and reports a
corrupt upload; the voting page's HTML never names a method or model. Screenshots go to screenshots/."""

from __future__ import annotations

import re

import pytest

from r2c_core.models import list_models
from study.db import connect
from study.export import tidy_votes
from study.render import DEFAULT_METHODS
from tests.e2e.harness import GRID_IMGS, sign_in, vote_through, wait_app_idle

pytestmark = pytest.mark.e2e

FORBIDDEN = sorted(set(DEFAULT_METHODS) | set(list_models()) | {"op-q", "compact"})


def assert_blinded(html: str) -> None:
    low = html.lower()
    found = [name for name in FORBIDDEN if name.lower() in low]
    assert not found, f"voting page HTML names {found}"


def wait_for_text(page, pattern: str) -> None:
    page.get_by_text(re.compile(pattern)).first.wait_for()


def test_reader_votes_with_mouse_and_keyboard_then_resumes(page, app_url, e2e_study, shots):
    page.goto(app_url)
    wait_app_idle(page)
    page.screenshot(path=str(shots / "e2e-sign-in.png"))
    sign_in(page, e2e_study.codes["reader-1"])
    wait_for_text(page, r"Practice 1 of 1")
    assert_blinded(page.content())
    page.get_by_role("button", name="Choose 2").click()  # mouse
    wait_for_text(page, r"Query 1 of 4")
    wait_app_idle(page)
    assert_blinded(page.content())
    page.screenshot(path=str(shots / "e2e-vote.png"))
    page.keyboard.press("3")  # keyboard
    wait_for_text(page, r"Query 2 of 4")
    wait_app_idle(page)
    page.keyboard.press("u")  # undo the last vote
    wait_for_text(page, r"Query 1 of 4")
    wait_app_idle(page)
    page.keyboard.press("4")
    wait_for_text(page, r"Query 2 of 4")
    wait_app_idle(page)
    assert_blinded(page.content())
    # reload mid-study: sign in again, resume at the first unanswered query
    page.reload()
    wait_app_idle(page)
    sign_in(page, e2e_study.codes["reader-1"])
    wait_for_text(page, r"Query 2 of 4")
    for key, after in (("1", r"Query 3 of 4"), ("5", r"Query 4 of 4"), ("2", r"All done")):
        wait_app_idle(page)
        page.keyboard.press(key)
        wait_for_text(page, after)  # one vote at a time, also on a loaded machine
    page.screenshot(path=str(shots / "e2e-vote-done.png"))
    with connect(e2e_study.url).begin() as s:
        tidy = tidy_votes(s, e2e_study.study_id)
    mine = tidy[(tidy["reader"] == "reader-1")]
    assert list(mine["chosen_slot"]) == [4, 1, 5, 2]


def test_window_level_changes_every_image_alike(page, app_url, e2e_study):
    page.goto(app_url)
    wait_app_idle(page)
    sign_in(page, e2e_study.codes["reader-3"])  # views the practice query only, as the zoom test does
    wait_for_text(page, r"Practice 1 of 1")
    wait_app_idle(page)
    imgs = page.locator(GRID_IMGS)
    assert imgs.count() == 5
    filters = lambda: [imgs.nth(i).evaluate("e => e.style.filter") for i in range(5)]  # noqa: E731
    box = imgs.nth(2).bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down(button="right")
    page.mouse.move(x - 60, y + 40, steps=4)  # narrower window, higher level
    page.mouse.up(button="right")
    after = filters()
    assert len(set(after)) == 1 and "contrast(" in after[0]
    page.locator('[data-r2c-wl="lung"]').click()  # W 0.7, L 0.35: [0, 0.7] -> [0, 1]
    assert set(filters()) == {"brightness(1.4286) contrast(1)"}
    assert "W 70 %, L 35 %" in page.locator("#r2c-wl-readout").inner_text()
    cap = page.get_by_text("Image 2", exact=True).bounding_box()
    page.mouse.click(cap["x"] + cap["width"] / 2, cap["y"] - 30)
    page.locator("#r2c-lightbox").wait_for()
    assert page.locator("#r2c-lightbox img").evaluate("e => e.style.filter") == "brightness(1.4286) contrast(1)"
    page.keyboard.press("Escape")
    page.locator('[data-r2c-wl="default"]').click()
    assert set(filters()) == {""}
    assert_blinded(page.content())


def test_enlarge_and_synchronized_zoom(page, app_url, e2e_study, shots):
    page.goto(app_url)
    wait_app_idle(page)
    sign_in(page, e2e_study.codes["reader-3"])
    wait_for_text(page, r"Practice 1 of 1")
    wait_app_idle(page)
    imgs = page.locator(GRID_IMGS)
    assert imgs.count() == 5
    box = imgs.nth(1).bounding_box()
    page.mouse.move(box["x"] + box["width"] / 3, box["y"] + box["height"] / 3)
    page.mouse.wheel(0, -400)
    page.wait_for_function("() => document.querySelectorAll('.r2c-iv-grid img[style*=\"scale(\"]').length === 5")
    transforms = {imgs.nth(i).evaluate("e => e.style.transform") for i in range(5)}
    assert len(transforms) == 1 and "scale(1)" not in transforms.pop()
    page.mouse.dblclick(box["x"] + box["width"] / 3, box["y"] + box["height"] / 3)
    assert imgs.nth(0).evaluate("e => e.style.transform").endswith("scale(1)")
    cap = page.get_by_text("Image 3", exact=True).bounding_box()
    page.mouse.click(cap["x"] + cap["width"] / 2, cap["y"] - 30)
    page.locator("#r2c-lightbox").wait_for()
    assert "Image 3 of 5" in page.locator("#r2c-lightbox").inner_text()
    page.keyboard.press("ArrowRight")
    assert "Image 4 of 5" in page.locator("#r2c-lightbox").inner_text()
    page.screenshot(path=str(shots / "e2e-enlarged.png"))
    assert_blinded(page.content())
    page.keyboard.press("Escape")
    page.locator("#r2c-lightbox").wait_for(state="detached")


def test_researcher_dashboard_matches_the_database(page, app_url, e2e_study, shots):
    vote_through(e2e_study.url, "reader-2", lambda view: 1 + view.index % view.n_slots)
    with connect(e2e_study.url).begin() as s:
        tidy = tidy_votes(s, e2e_study.study_id)
    answered = int(tidy["chosen_method"].notna().sum())
    assert answered >= 4
    page.goto(app_url)
    wait_app_idle(page)
    sign_in(page, e2e_study.codes["researcher-1"])
    wait_for_text(page, r"Researcher dashboard")
    wait_app_idle(page)
    metric = page.locator('[data-testid="stMetric"]').filter(has_text="Answered")
    assert metric.locator('[data-testid="stMetricValue"]').inner_text().strip() == str(answered)
    table = page.locator('[data-testid="stTable"]').first
    text = table.inner_text()
    counts = tidy.dropna(subset=["chosen_method"]).groupby(["reader", "chosen_method"]).size()
    for (reader, method), n in counts.items():
        row = table.locator("tr").filter(has_text=reader).first.inner_text()
        assert method in text and str(n) in row
    page.screenshot(path=str(shots / "e2e-dashboard.png"), full_page=True)


def test_demo_restores_a_real_xray_and_reports_a_corrupt_file(page, app_url, e2e_study, cxr_dir, cxr_manifest, shots):
    mhh = cxr_manifest[cxr_manifest["source"] == "mhh"].iloc[0]
    # a study database (R2C_PUBLIC_DEMO unset): visitors who are not signed in get no demo page
    page.goto(app_url)
    wait_app_idle(page)
    page.get_by_label("Access code").wait_for()
    assert page.get_by_role("link", name="Demo").count() == 0
    # a researcher gets it
    sign_in(page, e2e_study.codes["researcher-1"])
    page.get_by_role("link", name="Demo").click()
    wait_app_idle(page)
    page.get_by_text("Demo: restore and segment").wait_for()
    upload = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
    upload.set_input_files(str(cxr_dir / mhh["file"]))
    page.get_by_text("COVID-19 probability").wait_for(timeout=120_000)
    wait_app_idle(page)
    captions = page.locator('[data-testid="stImageCaption"]').all_inner_texts()
    assert captions == ["Original", "Restored (op-q1, 3 passes)"]
    page.screenshot(path=str(shots / "e2e-demo.png"), full_page=True)
    upload.set_input_files(files=[{"name": "corrupt.png", "mimeType": "image/png",
                                   "buffer": b"\x89PNG\r\n\x1a\n-- truncated --"}])
    page.locator('[data-testid="stAlertContentError"]').wait_for()
    assert "corrupt.png" in page.locator('[data-testid="stAlertContentError"]').inner_text()
    page.screenshot(path=str(shots / "e2e-demo-error.png"))
    # the app is still up and works
    upload.set_input_files(str(cxr_dir / mhh["file"]))
    page.get_by_text("COVID-19 probability").wait_for(timeout=120_000)


def test_admin_pages_render(page, app_url, e2e_study, shots):
    page.goto(app_url)
    wait_app_idle(page)
    sign_in(page, e2e_study.codes["admin-1"])
    page.get_by_role("heading", name="Studies").wait_for()
    wait_app_idle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    page.screenshot(path=str(shots / "e2e-admin-studies.png"), full_page=True)
    page.get_by_role("link", name="Readers").click()
    page.get_by_role("heading", name="Readers").wait_for()
    wait_app_idle(page)
    page.screenshot(path=str(shots / "e2e-admin-readers.png"), full_page=True)


def test_a_disabled_admins_open_tab_loses_access_on_its_next_action(page, app_url, e2e_study):
    """Issue 16, finding 1, in the browser: an admin signed in in an open tab is disabled by another admin; the
    tab's very next click ends on the sign-in page, and the admin pages are gone."""
    from study.accounts import add_reader, set_active

    with connect(e2e_study.url).begin() as s:
        code = add_reader(s, "admin-tab", "admin")[1]
    page.goto(app_url)
    wait_app_idle(page)
    sign_in(page, code)
    page.get_by_role("heading", name="Studies").wait_for()
    wait_app_idle(page)
    with connect(e2e_study.url).begin() as s:
        set_active(s, "admin-tab", False)
    page.get_by_role("link", name="Readers").click()  # the next action
    page.get_by_text(re.compile(r"changed by an administrator")).first.wait_for()
    wait_app_idle(page)
    assert page.get_by_label("Access code").count() == 1
    assert page.get_by_role("link", name="Readers").count() == 0 and page.get_by_role("heading", name="Readers").count() == 0
