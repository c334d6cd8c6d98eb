"""The instant voting area in real Chromium: fast votes while the server is paused and resumed lose none and double
none; a reload with votes still pending sends them once (and a stale copy of the queue sent again changes nothing);
what the page holds ahead reveals no method (blob URLs, equal byte sizes per query, no names)."""

from __future__ import annotations

import json
import os
import re
import signal
import time

import pytest
from sqlalchemy import func, select

from study.db import connect
from study.models import AuditEvent, Query, Reader, Vote, VoteRequest
from tests.e2e.harness import (
    build_test_study,
    has_chromium,
    run_app_process,
    sign_in,
    wait_app_idle,
    wait_votes_sent,
)
from tests.e2e.test_e2e import FORBIDDEN, assert_blinded

pytestmark = pytest.mark.e2e

N_CASES = 34
STATE_JS = """() => { const S = window.__r2cVote; return {current: S.current && S.current.index, waiting: S.waiting,
  list: S.serverList.map((q) => q.index), decoded: S.decoded.size, imgs: S.imgs.size, queue: S.queue.length,
  status: document.querySelector('.r2c-iv-status').textContent}; }"""
HOLDS_AHEAD = ("() => { const S = window.__r2cVote; return !!(S && S.current && !S.waiting && S.serverList.length >= 4"
               " && S.serverList.every((q) => S.decoded.has(q.token))); }")
CURRENT = "k => { const S = window.__r2cVote; return !!(S && S.current && !S.waiting && S.current.index === k); }"


@pytest.fixture(scope="module")
def iv_app(tmp_path_factory):
    if not has_chromium():
        pytest.skip("end-to-end tests need Chromium (scripts/setup_system.sh installs it)")
    ts = build_test_study(tmp_path_factory.mktemp("instant"), n_cases=N_CASES, n_practice=0,
                          accounts={"reader-a": "reader", "reader-b": "reader", "reader-c": "reader", "reader-d": "reader"},
                          no_preference=True)
    with run_app_process(ts.env) as (url, proc):
        yield ts, url, proc


def _signed_in(page, url: str, code: str) -> None:
    page.goto(url)
    wait_app_idle(page)
    sign_in(page, code)
    page.wait_for_function(CURRENT, arg=1)


def _votes(ts, reader: str) -> tuple[list[int], int, int]:
    """The reader's chosen slots in query order, their stored request keys, and their audited votes."""
    with connect(ts.url).begin() as s:
        rid = s.scalar(select(Reader.id).where(Reader.name == reader))
        slots = list(s.scalars(select(Vote.chosen_slot).join(Query, Query.id == Vote.query_id)
                               .where(Query.reader_id == rid).order_by(Query.position)))
        requests = int(s.scalar(select(func.count()).select_from(VoteRequest).where(VoteRequest.reader_id == rid)))
        audited = int(s.scalar(select(func.count()).select_from(AuditEvent)
                               .where(AuditEvent.reader_id == rid, AuditEvent.action == "vote")))
    return slots, requests, audited


def _pending(page) -> int:
    return int(page.locator(".r2c-iv-status").get_attribute("data-pending") or 0)


def test_fast_votes_with_the_server_paused_and_resumed_lose_none_and_double_none(page, iv_app):
    ts, url, proc = iv_app
    _signed_in(page, url, ts.codes["reader-a"])
    chosen: list[int] = []
    k = 1
    while k <= 30:
        if k == 8:  # the server stops answering: the page goes on with the queries it holds
            wait_votes_sent(page)
            page.wait_for_function(HOLDS_AHEAD)  # everything it was sent is decoded (a reader would be looking)
            os.kill(proc.pid, signal.SIGSTOP)
            paused = 0
            try:
                while True:
                    try:
                        page.wait_for_function(CURRENT, arg=k, timeout=6000)  # generous: a loaded CI machine
                    except Exception:  # noqa: BLE001 - no further query held: the page waits
                        break
                    slot = 1 + (3 * k) % 5
                    page.keyboard.press(str(slot))
                    chosen.append(slot)
                    paused += 1
                    k += 1
                assert paused >= 3, page.evaluate(STATE_JS)  # at least three queries were held ahead
                assert _pending(page) == paused, page.evaluate(STATE_JS)
                assert page.locator(".r2c-iv-wait").is_visible(), page.evaluate(STATE_JS)  # nothing more until the server answers
                page.get_by_text(re.compile("The server is not answering")).wait_for(timeout=15_000)
            finally:
                os.kill(proc.pid, signal.SIGCONT)
            continue
        page.wait_for_function(CURRENT, arg=k, timeout=60_000)  # the next query: waits for the page, not the server
        slot = 1 + (3 * k) % 5
        page.keyboard.press(str(slot))
        chosen.append(slot)
        k += 1
    wait_votes_sent(page)
    page.wait_for_function(CURRENT, arg=31)
    slots, requests, audited = _votes(ts, "reader-a")
    assert slots == chosen and len(chosen) == 30
    assert requests == 30 and audited == 30


def test_a_reload_sends_pending_votes_once(page, iv_app):
    ts, url, _proc = iv_app
    hold = {"on": False}
    dropped: list[object] = []

    def route(ws) -> None:  # the page's connection to the server, with a switch that drops what the page sends
        server = ws.connect_to_server()
        ws.on_message(lambda m: dropped.append(m) if hold["on"] else server.send(m))

    page.route_web_socket(re.compile(r"/_stcore/stream"), route)
    _signed_in(page, url, ts.codes["reader-b"])
    for k, slot in ((1, 2), (2, 4)):
        page.wait_for_function(CURRENT, arg=k)
        page.keyboard.press(str(slot))
    wait_votes_sent(page)
    hold["on"] = True  # from now on the server gets nothing from this page
    for k, slot in ((3, 1), (4, 5), (5, 3)):
        page.wait_for_function(CURRENT, arg=k)
        page.keyboard.press(str(slot))
    page.wait_for_function(CURRENT, arg=6)
    for _ in range(150):  # the page sends its queue a moment after the vote: wait until the switch has dropped it
        if dropped:
            break
        page.wait_for_timeout(100)  # playwright dispatches the socket's messages while it waits
    assert _pending(page) == 3 and dropped
    saved = page.evaluate("() => Object.entries(localStorage).filter(([k]) => k.startsWith('r2c-vote-queue:'))")
    assert len(saved) == 1 and len(json.loads(saved[0][1])) == 3
    assert _votes(ts, "reader-b")[0] == [2, 4]  # the three votes never reached the server
    hold["on"] = False
    page.reload()
    wait_app_idle(page)
    sign_in(page, ts.codes["reader-b"])
    page.wait_for_function(CURRENT, arg=6)  # the pending votes are not asked again
    wait_votes_sent(page)
    assert _votes(ts, "reader-b") == ([2, 4, 1, 5, 3], 5, 5)
    assert json.loads(page.evaluate(f"() => localStorage.getItem({json.dumps(saved[0][0])})")) == []
    # a stale copy of the queue (another tab, a backup) sent again: answered from the log, nothing doubled
    page.evaluate("([k, v]) => localStorage.setItem(k, v)", saved[0])
    page.reload()
    wait_app_idle(page)
    sign_in(page, ts.codes["reader-b"])
    page.wait_for_function(CURRENT, arg=6)
    wait_votes_sent(page)
    assert _votes(ts, "reader-b") == ([2, 4, 1, 5, 3], 5, 5)


def test_undo_confidence_comment_and_no_preference_travel_with_the_queue(page, iv_app):
    ts, url, _proc = iv_app
    _signed_in(page, url, ts.codes["reader-c"])
    page.locator('.r2c-iv-conf [data-conf="4"]').click()
    page.locator(".r2c-iv-comment input").fill("sharp ribs")
    page.get_by_role("button", name="Choose 3").click()
    page.wait_for_function(CURRENT, arg=2)
    assert page.locator(".r2c-iv-comment input").input_value() == ""  # fresh inputs for the next query
    page.keyboard.press("u")  # undo: query 1 again at once
    page.wait_for_function(CURRENT, arg=1)
    page.keyboard.press("5")
    page.wait_for_function(CURRENT, arg=2)
    page.get_by_role("button", name="No preference").click()  # the study offers it
    page.wait_for_function(CURRENT, arg=3)
    page.keyboard.press("0")  # and its key
    page.wait_for_function(CURRENT, arg=4)
    wait_votes_sent(page)
    with connect(ts.url).begin() as s:
        rid = s.scalar(select(Reader.id).where(Reader.name == "reader-c"))
        votes = s.execute(select(Vote.chosen_slot, Vote.confidence, Vote.comment).join(Query)
                          .where(Query.reader_id == rid).order_by(Query.position)).all()
        outcomes = sorted(s.scalars(select(VoteRequest.outcome).where(VoteRequest.reader_id == rid)))
    assert [tuple(v) for v in votes] == [(5, None, None), (None, None, None), (None, None, None)]
    assert outcomes == ["recorded"] * 4 + ["undone"]


def test_what_the_page_holds_ahead_reveals_no_method(page, iv_app):
    ts, url, _proc = iv_app
    _signed_in(page, url, ts.codes["reader-d"])
    page.wait_for_function("() => window.__r2cVote.decoded.size >= 4")
    held = page.evaluate("""async () => {
      const out = {};
      for (const [token, imgs] of window.__r2cVote.imgs) {
        out[token] = [];
        for (const img of imgs) out[token].push({src: img.src.slice(0, 5), size: (await (await fetch(img.src)).blob()).size});
      }
      return out;
    }""")
    assert len(held) >= 4  # the current query and at least three ahead
    for token, imgs in held.items():
        assert len(imgs) == 5 and {i["src"] for i in imgs} == {"blob:"}
        assert len({i["size"] for i in imgs}) == 1, f"query {token}: image sizes differ"
    assert_blinded(page.content())
    storage = page.evaluate("() => JSON.stringify(Object.entries(localStorage))").lower()
    assert not [name for name in FORBIDDEN if name.lower() in storage]
    # no request for an image by URL: everything came with the component's data
    urls = []
    page.on("request", lambda r: urls.append(r.url))
    page.keyboard.press("1")
    page.wait_for_function(CURRENT, arg=2)
    wait_votes_sent(page)
    time.sleep(0.5)
    assert not [u for u in urls if "/media/" in u or (u.endswith(".png") and "favicon" not in u)], urls
