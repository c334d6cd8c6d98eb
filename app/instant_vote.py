"""The instant voting area: the reader's next queries already in the browser, votes that never wait for the server.

One component (``st.components.v2``, script in ``app/instant_vote.js``) draws the whole voting area in the page:
progress, label and question, the window/level bar, the images with their "Choose k" buttons, confidence,
comment, undo, and a status line. The protocol between the page and the server:

* **Server to page** (the component's data, raw bytes): a 4-byte length, a JSON header, then PNG bytes. The header
  holds the reader's current query and the next :func:`ahead` ones (:func:`study.vote_queue.upcoming`: the same
  fields a shown query has, no slot tokens at all), their progress, the acknowledgements of the last requests, and
  the layout of the PNG bytes, which are the images of the listed queries this page was not sent yet
  (:func:`study.voting.display_pngs`: equal byte sizes within a query, per-reader bytes). The page turns them into
  ``blob:`` URLs and decodes them at once, so no image URL, file name or total size tells a method apart (the PNG
  chunks still give each image's compressed size, a function of the pixels the reader sees anyway). A render is
  named by a random per-session ``epoch`` and its number.
* **Page to server** (the component's state ``outbox``): the page's whole queue of requests not yet acknowledged
  (votes and undos, each with a random key), the images it lacks, and a counter. The page shows the next query
  the moment a vote is cast, puts the vote in its queue (kept in ``localStorage`` under an opaque per-reader tag,
  so it survives a reload), and sends the queue; it sends it again every 2.5 s while anything waits. Streamlit
  may merge quick updates into one rerun: as every update carries the whole queue, nothing is lost by that.
* The server applies the requests in order, once each, by key (:func:`study.vote_queue.apply_requests`), and
  answers every key it has seen; the page drops answered requests from its queue and reports refusals. A vote
  is therefore never lost (it stays queued until answered) and never doubled (a key is applied once).
* **Only for a session that is still valid.** The outbox is a widget callback, which Streamlit runs before the
  script body, so :func:`_on_outbox` re-checks the session first (:func:`app.auth.revalidate`: idle time, account
  disabled, code reset, role changed) and :func:`handle_outbox` re-checks the account once more: when the session
  has ended, nothing is applied and the app reruns to the sign-in page, which says why. The page keeps its queue
  (``localStorage``, under the reader's tag) and sends it after the same reader signs in again, into the new
  sitting (an undo of a vote from the earlier sitting is refused, as the page then says). Another reader signing in
  in the same browser gets their own tag, hence their own queue; and a request names a query token of the reader
  who queued it, which the server looks up among the signed-in reader's queries only, so a queued vote can never
  be recorded for another reader (it would be refused as "no such query for this reader").
* **Errors.** A rendition that cannot be read (missing or corrupt file) is logged on the server with its details;
  the reader sees one generic line (:data:`IMAGES_UNAVAILABLE`), stays signed in and can try again. Only a refusal
  of the reader (:class:`study.errors.VoteRefused`: account disabled, sitting not theirs) ends the session.

``R2C_VOTE_UI=plain`` switches the voting page back to one Streamlit rerun per vote (``app_pages/vote.py``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import streamlit as st

from study import vote_queue, voting
from study.accounts import current_fingerprint
from study.errors import NotFoundError, StudyError, VoteRefused

from . import auth, components, services
from .auth import current_user

log = logging.getLogger(__name__)
#: what a reader is told when the images of a query cannot be read (the details go to the server's log only)
IMAGES_UNAVAILABLE = ("The images of this query cannot be shown right now (a problem on the server, which has "
                      "been logged). Try again in a moment; if it persists, tell the study's administrator.")
#: what a reader is told for any other server-side problem (a locked or unreachable database, ...)
SERVER_TROUBLE = ("The server cannot serve this page right now (the problem has been logged). Your votes are "
                  "kept; try again in a moment.")


class ImagesUnavailable(StudyError):
    """A query's renditions could not be read (missing or corrupt asset file); the details are logged, not shown."""


def reader_message(exc: StudyError) -> str:
    """What a reader may read about ``exc``: the one line of a refusal of a vote or an undo, or of an unknown query
    token (no paths, no names of methods), else :data:`IMAGES_UNAVAILABLE` or :data:`SERVER_TROUBLE` (the details,
    which may name server paths and file hashes, are logged). Rendition errors must reach here as
    :class:`ImagesUnavailable` (the asset store raises NotFoundError for a missing file)."""
    if isinstance(exc, (VoteRefused, NotFoundError)):  # "no such query for this reader", "the study ... is closed"
        return str(exc)
    log.warning("voting page: %s: %s", type(exc).__name__, exc)
    return IMAGES_UNAVAILABLE if isinstance(exc, ImagesUnavailable) else SERVER_TROUBLE

KEY = "r2c-instant-vote"
STATE = "r2c_instant_vote"
_JS = (Path(__file__).with_name("instant_vote.js")).read_text(encoding="utf-8")
_CSS = """
.r2c-iv { font-family: "Source Sans Pro", sans-serif; }
.r2c-iv-progress { font-weight: 600; margin: 0 0 4px; min-height: 1.4em; }
.r2c-iv-bar { height: 6px; background: rgba(49, 51, 63, 0.12); border-radius: 3px; margin-bottom: 10px; }
.r2c-iv-bar-fill { height: 100%; background: #ff4b4b; border-radius: 3px; }
.r2c-iv-question { margin-bottom: 8px; }
.r2c-iv-wl { margin-bottom: 8px; }
.r2c-iv-stage { position: relative; min-height: 160px; }
.r2c-iv-grid { display: grid; gap: 8px; }
.r2c-iv-pane { display: flex; flex-direction: column; gap: 4px; min-width: 0; }
.r2c-iv-frame { overflow: hidden; background: #000; line-height: 0; }
.r2c-iv-frame img { width: 100%; height: auto; display: block; user-select: none; cursor: zoom-in; }
.r2c-iv-caption { text-align: center; font-size: 14px; opacity: 0.75; }
.r2c-iv button { font: inherit; border: 1px solid rgba(49, 51, 63, 0.25); border-radius: 8px; background: #fff;
  padding: 4px 10px; cursor: pointer; }
.r2c-iv button:hover:not(:disabled) { border-color: #ff4b4b; color: #ff4b4b; }
.r2c-iv button:disabled { opacity: 0.45; cursor: default; }
.r2c-iv-choose { width: 100%; }
.r2c-iv-none { display: flex; justify-content: center; margin-top: 8px; }
.r2c-iv-none[hidden] { display: none; }
.r2c-iv-conf button[aria-pressed="true"] { background: #ff4b4b; color: #fff; border-color: #ff4b4b; }
.r2c-iv-wait { position: absolute; inset: 0; display: flex; align-items: center; justify-content: center;
  background: rgba(255, 255, 255, 0.96); font-weight: 600; }
.r2c-iv-wait[hidden], .r2c-iv-end[hidden], .r2c-iv-stage[hidden], .r2c-iv-controls[hidden], .r2c-iv-bar[hidden] {
  display: none; }
.r2c-iv-end { padding: 12px 16px; border-radius: 8px; background: rgba(33, 195, 84, 0.1); }
.r2c-iv-controls { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-end; margin-top: 12px; }
.r2c-iv-conf { display: flex; gap: 4px; align-items: center; }
.r2c-iv-conf span { margin-right: 6px; font-size: 14px; }
.r2c-iv-comment { flex: 1; display: flex; flex-direction: column; font-size: 14px; min-width: 240px; }
.r2c-iv-comment input { font: inherit; padding: 5px 8px; border: 1px solid rgba(49, 51, 63, 0.25); border-radius: 8px; }
.r2c-iv-status { min-height: 1.4em; margin-top: 8px; font-size: 14px; color: #9a6700; }
.r2c-iv-help { font-size: 13px; opacity: 0.7; margin-top: 4px; }
"""
# the style sheet travels inside the script (a page-level <style>, added once), as the grid lives in the page's DOM
_component = st.components.v2.component("r2c_instant_vote", js=_JS.replace("__R2C_IV_CSS__", json.dumps(_CSS)),
                                        isolate_styles=False)

HELP = ("Click an image to enlarge it; mouse wheel or drag to zoom all images together; double click resets. "
        "Right drag (or shift drag) sets window/level for all images. Press 1 to 5 to choose (0: no preference, where offered), U to undo. "
        "The next images are already here: a vote is saved in this browser at once and sent to the server.")


def ahead() -> int:
    """``R2C_VOTE_AHEAD`` (default 4, at least 3): how many queries after the current one the page holds."""
    try:
        return min(10, max(3, int(os.environ.get("R2C_VOTE_AHEAD", "4"))))
    except ValueError:
        return 4


def enabled() -> bool:
    """The instant voting area is the default; ``R2C_VOTE_UI=plain`` selects one Streamlit rerun per vote."""
    return os.environ.get("R2C_VOTE_UI", "instant").strip().lower() != "plain"


@dataclass
class InstantState:
    """What the server keeps per browser session (tokens and counters only, never a method)."""

    render: int = 0
    #: the outbox counter last applied, and the answers to it (sent with every render until the next outbox)
    nonce: int = 0
    acks: list[dict[str, str]] = field(default_factory=list)
    #: query tokens of votes the page holds that could not be applied yet (skipped in the list it gets)
    unapplied: list[str] = field(default_factory=list)
    #: query tokens whose images this page was sent, and those of the render being built
    sent: set[str] = field(default_factory=set)
    unsent: set[str] = field(default_factory=set)
    message: str = ""
    #: random per session: with ``render`` it names a render, so a page never takes a new session's first render
    #: for one it has already drawn (its store outlives a sign-out in the same tab)
    epoch: str = field(default_factory=lambda: secrets.token_hex(8))


def _state() -> InstantState:
    if not isinstance(st.session_state.get(STATE), InstantState):
        st.session_state[STATE] = InstantState()
    return st.session_state[STATE]


def _on_outbox() -> None:
    """The page sent its queue: apply it (in order, once per key) before the area is drawn again.

    A widget callback runs before the script body, hence before the page's own :func:`app.auth.require_role`: the
    session is re-checked here first. When it has ended (idle, account disabled, code reset, role changed) nothing
    is applied and the whole app reruns (to the sign-in page, which says why); the page keeps its queue."""
    value = st.session_state.get(KEY) or {}
    outbox = value.get("outbox") if hasattr(value, "get") else None
    if auth.revalidate(services.backend().factory) is not None:
        st.rerun()  # from a callback: the interaction becomes a full rerun
        return
    user = current_user()
    if user is not None and user.role == "reader":
        handle_outbox(user, _state(), outbox)


def handle_outbox(user: Any, state: InstantState, outbox: Any) -> bool:
    """Apply a page's outbox for the signed-in ``user``: forget the images it says it lacks, apply its requests
    (:func:`study.vote_queue.apply_requests`) and keep the answers for the next render. Nothing is applied (False)
    when the account no longer matches ``user`` (disabled, deleted, new code or role since the sign-in)."""
    if not isinstance(outbox, dict):
        return False
    with services.factory().begin() as session:
        fingerprint = current_fingerprint(session, user.id)
    if fingerprint is None or (getattr(user, "fingerprint", "") and fingerprint != user.fingerprint):
        state.message = "Your session has ended: sign in again. Your votes are kept in this browser."
        return False
    need = outbox.get("need")
    if isinstance(need, list):
        state.sent.difference_update(t for t in need[:50] if isinstance(t, str))
    try:
        good, bad = vote_queue.parse_requests(outbox.get("requests"))
    except vote_queue.RequestError as exc:
        state.message = f"The page sent votes the server cannot read ({exc}); reload the page."
        return False
    acks = bad + vote_queue.apply_requests(services.factory(), user.id, good, sitting_id=user.sitting_id)
    answered = {a.key for a in acks}
    state.acks = [a.as_dict() for a in acks]
    state.unapplied = [r.query_token for r in good if r.kind == "vote" and r.key not in answered]
    nonce = outbox.get("nonce")
    state.nonce = nonce if isinstance(nonce, int) and not isinstance(nonce, bool) else state.nonce
    if len(answered) < len(good) + len(bad):
        state.message = "The database is busy: some votes wait in your browser and will be sent again."
    return True


def reader_tag(reader_id: int, reader_name: str) -> str:
    """The opaque name of a reader's queue in the browser's storage (no id, no name in clear)."""
    return hashlib.sha256(f"r2c-vote-queue|{reader_id}|{reader_name}".encode()).hexdigest()[:20]


def pack(meta: dict[str, Any], images: dict[str, list[bytes]]) -> bytes:
    """The component's data: 4-byte big-endian header length, the JSON header, then the PNG bytes laid out as the
    header's ``images`` list says (query token, slot, offset, length)."""
    layout, blobs, offset = [], [], 0
    for token, pngs in images.items():
        for slot, data in enumerate(pngs, start=1):
            layout.append({"query": token, "slot": slot, "offset": offset, "length": len(data)})
            blobs.append(data)
            offset += len(data)
    header = json.dumps({**meta, "images": layout}, separators=(",", ":")).encode()
    return struct.pack(">I", len(header)) + header + b"".join(blobs)


def unpack(data: bytes) -> tuple[dict[str, Any], dict[str, list[bytes]]]:
    """The inverse of :func:`pack` (tests and benchmarks read what the page gets)."""
    (n,) = struct.unpack(">I", data[:4])
    meta = json.loads(data[4:4 + n])
    body = data[4 + n:]
    images: dict[str, list[bytes]] = {}
    for im in meta["images"]:
        images.setdefault(im["query"], []).append(body[im["offset"]:im["offset"] + im["length"]])
    return meta, images


def _settings(min_dwell_s: float, questions: dict[str, str], labels: dict[str, str]) -> dict[str, Any]:
    return {"min_dwell_ms": round(min_dwell_s * 1000), "questions": questions, "labels": labels,
            "max_comment": voting.MAX_COMMENT, "help": HELP, "wl_html": components.WL_HTML}


def build_data(user: Any, state: InstantState, *, min_dwell_s: float, questions: dict[str, str],
               labels: dict[str, str]) -> bytes:
    """Everything the page gets in one render (see the module doc); raises StudyError when the reader is refused."""
    with services.factory().begin() as session:
        views = vote_queue.upcoming(session, user.id, count=1 + ahead(), sitting_id=user.sitting_id,
                                    after=state.unapplied)
        progress = voting.progress(session, user.id)
        new = [v for v in views if v.query_token not in state.sent]
        try:
            images = {v.query_token: voting.display_pngs(session, user.id, v.query_token,
                                                         assets=services.settings().assets,
                                                         max_side=components.MAX_IMAGE_SIDE) for v in new}
        except StudyError as exc:  # a missing or corrupt rendition file: its path is for the server's log only
            raise ImagesUnavailable(str(exc)) from exc
    state.render += 1
    remaining = (progress.total - progress.answered) + (progress.practice_total - progress.practice_answered)
    meta = {
        "v": 1, "render": state.render, "epoch": state.epoch, "nonce": state.nonce,
        "reader": reader_tag(user.id, user.name),
        "acks": state.acks, "message": state.message, "remaining": remaining,
        "progress": {"answered": progress.answered, "total": progress.total},
        "queries": [{"token": v.query_token, "kind": v.study_kind, "label": v.label, "index": v.index,
                     "total": v.total, "practice": v.is_practice, "no_preference": v.no_preference} for v in views],
        "settings": _settings(min_dwell_s, questions, labels),
    }
    state.message = ""
    data = pack(meta, images)
    # marked as sent only once the render carrying them is on its way (see area): a rerun interrupted before that
    # (Streamlit stops a run when a newer widget update arrives) must not leave the page without them
    state.unsent = set(images)
    return data


def commit_sent(state: InstantState) -> None:
    """The render built by :func:`build_data` was handed to Streamlit: its images count as sent."""
    state.sent.update(state.unsent)
    state.unsent = set()


def area(user: Any, *, min_dwell_s: float, questions: dict[str, str], labels: dict[str, str]) -> str | None:
    """Draw the instant voting area; returns why the database refused this reader (then nothing is drawn, and the
    caller ends the session). Images that cannot be read and a database that cannot be used are not refusals: the
    reader gets one generic line (:func:`reader_message`; the details are logged) and stays signed in."""
    state = _state()
    try:
        data = build_data(user, state, min_dwell_s=min_dwell_s, questions=questions, labels=labels)
    except ImagesUnavailable as exc:
        st.error(reader_message(exc))
        return None
    except VoteRefused as exc:
        return str(exc)
    except StudyError as exc:
        st.error(reader_message(exc))
        return None
    _component(key=KEY, data=data, default={"outbox": None}, on_outbox_change=_on_outbox)
    commit_sent(state)
    components.zoom_sync()
    return None
