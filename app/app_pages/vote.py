"""The blinded voting page (readers only).

By default the voting area is the instant one (:mod:`app.instant_vote`): the next queries are already in the
browser, a vote shows the next query at once and travels to the server in the background. ``R2C_VOTE_UI=plain``
selects the plain Streamlit loop below (one rerun per vote; also the baseline of ``bench/bench_app_vote.py``).

The plain loop shows the reader's current query from :func:`study.voting.next_query` (practice queries first, then the
study; a reload resumes at the first unanswered one): the disease label, "k of n", and the query's images in
that reader's saved order, identified only by slot number. One click on "Choose k" or the number key k records
the vote (optional confidence and comment), and the next query appears; "Undo last vote" withdraws the latest
vote of this sitting. Image bytes are fetched once per (query, slot) and kept in the session; the voting area
is a fragment, so a vote reruns only that area.

Errors: a refusal of the reader (:class:`study.errors.VoteRefused`: account disabled, sitting not theirs) ends the
session; an image that cannot be read or a database that cannot be used is told to the reader in one generic line
(:func:`app.instant_vote.reader_message`; server paths and file hashes go to the server's log only) and the reader
stays signed in.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import streamlit as st

from study import overview as study_overview
from study import voting
from study.errors import StudyError, VoteRefused
from study.voting import Progress, QueryView

from .. import components, instant_vote, services
from ..auth import User, md_escape, require_role, sign_out
from ..instant_vote import ImagesUnavailable, reader_message

STATE = "r2c_vote"
CONFIDENCE, COMMENT = "vote_confidence", "vote_comment"
QUESTION = {
    "restoration": "Which image would you rather read? Choose the one with the best diagnostic quality.",
    "segmentation": "Which lung outline fits the lungs best?",
}
LABEL_TEXT = {"covid": "COVID-19", "control": "Control (no COVID-19)"}


@dataclass
class VoteState:
    """What the voting area keeps between reruns (never a method name: only tokens and slot numbers)."""

    view: QueryView | None = None
    progress: Progress | None = None
    images: dict[tuple[str, int], bytes] = field(default_factory=dict)
    #: increases with every query shown (a counter, never the query itself)
    seq: int = 0
    can_undo: bool = False
    #: the query expected after this one (its images were sent ahead)
    upcoming: str | None = None
    message: str = ""
    loaded: bool = False
    #: why the database refused to serve this reader (then nothing else is shown)
    refused: str = ""
    #: a server-side problem loading the query (generic text; loading is tried again on the next run)
    trouble: str = ""
    #: when (time.monotonic) the current query was put on screen: a vote sooner than min_dwell_s() after it is the
    #: second click of a double click landing on the next query's button, and is ignored
    shown_at: float = 0.0


def _state() -> VoteState:
    if not isinstance(st.session_state.get(STATE), VoteState):
        st.session_state[STATE] = VoteState()
    return st.session_state[STATE]


def min_dwell_s() -> float:
    """``R2C_MIN_DWELL_S`` (default 0.35 s): a vote this soon after its query appeared is taken for the second click
    of a double click (or a key bounce) on the previous query, and ignored. No reader judges five X-rays faster."""
    try:
        return max(0.0, float(os.environ.get("R2C_MIN_DWELL_S", "0.35")))
    except ValueError:
        return 0.35


def _show(state: VoteState, view: QueryView | None, progress: Progress) -> None:
    if view is None or state.view is None or view.query_token != state.view.query_token:
        state.seq += 1
        state.shown_at = time.monotonic()
        keep = {view.query_token} if view is not None else set()
        state.images = {k: v for k, v in state.images.items() if k[0] in keep or k[0] == state.upcoming}
    state.view, state.progress, state.loaded = view, progress, True


def _refresh(user: User, state: VoteState) -> None:
    """Load the reader's current query. If the database refuses the reader (account disabled, sitting no longer
    valid), remember why: the voting area then shows it and asks the reader to sign in again. Any other problem
    (a database that cannot be used) is shown as one generic line and loading is tried again on the next run."""
    state.trouble = ""
    try:
        with services.factory().begin() as session:
            view = voting.next_query(session, user.id, sitting_id=user.sitting_id)
            progress = voting.progress(session, user.id)
    except VoteRefused as exc:
        state.refused = str(exc)
        return
    except StudyError as exc:
        state.trouble = reader_message(exc)
        return
    _show(state, view, progress)


def _clear_inputs() -> None:
    """Empty the optional confidence and comment for the next query (the widgets keep their keys)."""
    st.session_state[CONFIDENCE] = None
    st.session_state[COMMENT] = ""


def _fetch(user: User, state: VoteState, token: str, n_slots: int) -> list[bytes]:
    """The PNG bytes of every slot of one of the reader's queries, fetched once and kept in the session."""
    if any((token, k) not in state.images for k in range(1, n_slots + 1)):
        with services.factory().begin() as session:  # equal sizes, per-reader bytes (study.voting.display_pngs)
            try:
                pngs = voting.display_pngs(session, user.id, token, assets=services.settings().assets,
                                           max_side=components.MAX_IMAGE_SIDE)
            except StudyError as exc:  # a missing or corrupt rendition file: its path is for the server's log only
                raise ImagesUnavailable(str(exc)) from exc
        for k, data in enumerate(pngs, start=1):
            state.images[(token, k)] = data
    return [state.images[(token, k)] for k in range(1, n_slots + 1)]


def _images(user: User, state: VoteState) -> list[bytes]:
    view = state.view
    assert view is not None
    return _fetch(user, state, view.query_token, view.n_slots)


def _prefetch(user: User, state: VoteState) -> None:
    """Send the next query's images to the browser now (hidden), so the next vote only swaps images it has."""
    view = state.view
    assert view is not None
    try:
        with services.factory().begin() as session:
            token = study_overview.upcoming_query_token(session, user.id, view.query_token)
        if token is None:
            return
        state.upcoming = token
        components.prefetch_images(_fetch(user, state, token, view.n_slots))
    except StudyError:  # prefetching is an optimisation only
        return


def _choose(query_token: str, slot: int | str) -> None:
    """Button / number-key callback: record the vote for the query it was shown with, load the next query."""
    user, state = require_role("reader"), _state()
    if state.view is not None and query_token == state.view.query_token and time.monotonic() - state.shown_at < min_dwell_s():
        state.message = "A double click was ignored: the next images had just appeared. Choose again if you meant to."
        return
    confidence = st.session_state.get(CONFIDENCE)
    comment = st.session_state.get(COMMENT) or None
    try:
        with services.factory().begin() as session:
            receipt = voting.submit_vote(session, user.id, query_token, slot, confidence=confidence,
                                         comment=comment, sitting_id=user.sitting_id)
            view = voting.next_query(session, user.id, sitting_id=user.sitting_id)
            progress = voting.progress(session, user.id)
    except StudyError as exc:
        state.message = reader_message(exc)
        _refresh(user, state)
        return
    state.message = ""
    state.can_undo = state.can_undo or not receipt.duplicate
    _show(state, view, progress)
    _clear_inputs()


def _undo() -> None:
    user, state = require_role("reader"), _state()
    try:
        with services.factory().begin() as session:
            view = voting.undo_last_vote(session, user.id, sitting_id=user.sitting_id)
            progress = voting.progress(session, user.id)
    except StudyError as exc:
        state.message, state.can_undo = reader_message(exc), False
        return
    state.message, state.can_undo = "Your last vote was withdrawn: choose again.", False
    _show(state, view, progress)
    _clear_inputs()


def _progress_line(view: QueryView, progress: Progress) -> None:
    if view.is_practice:
        st.info(f"**Practice {view.index} of {view.total}**: practice answers are not counted.")
    else:
        done = progress.answered
        st.progress(done / max(1, progress.total), text=f"Query **{view.index} of {view.total}**")


@st.fragment
def voting_area() -> None:
    user, state = require_role("reader"), _state()
    if not state.loaded:
        _refresh(user, state)
    if state.refused:
        st.error(f"{state.refused} Please sign in again.")
        sign_out()
        return
    if not state.loaded and state.trouble:
        st.error(state.trouble)
        return
    if state.message:
        st.toast(state.message)
        state.message = ""
    view, progress = state.view, state.progress
    if view is None:
        if progress is not None and progress.total:
            st.success(f"All done: you answered all {progress.total} queries. Thank you!")
        else:
            st.info("No open study has queries for you right now. Ask the study administrator.")
        if state.can_undo and st.button("Undo last vote", key="undo", shortcut="U"):
            _undo()
            st.rerun(scope="fragment")
        return
    assert progress is not None
    _progress_line(view, progress)
    label = LABEL_TEXT.get(view.label) or md_escape(view.label)
    st.markdown(f"**Label:** {label} &nbsp;·&nbsp; {QUESTION.get(view.study_kind, '')}")
    try:
        images = _images(user, state)
    except StudyError as exc:  # e.g. the asset folder lost a rendition: one generic line, the details are logged
        st.error(reader_message(exc))
        return
    components.comparison_grid(images, _choose, lambda k: (view.query_token, k), chosen=view.answered_slot)
    if view.no_preference:  # a study option (off by default: the paper forces a choice)
        st.button("No preference", key="choose_none", shortcut="0", on_click=_choose,
                  args=(view.query_token, voting.NO_PREFERENCE), help="Neither image is better (key 0)")
    left, mid, right = st.columns([2, 4, 2], vertical_alignment="bottom")
    left.segmented_control("Confidence (optional)", options=[1, 2, 3, 4, 5], key=CONFIDENCE,
                           help="1 = unsure, 5 = certain")
    mid.text_input("Comment (optional)", key=COMMENT, max_chars=voting.MAX_COMMENT,
                   placeholder="Anything worth noting about this case")
    right.button("Undo last vote", key="undo", shortcut="U", on_click=_undo, disabled=not state.can_undo,
                 help="Withdraw your latest vote of this sitting and choose again")
    st.caption("Click an image to enlarge it; mouse wheel or drag to zoom all images together; double click resets. "
               "Right drag (or shift drag) sets window/level for all images. Press 1 to 5 to choose (0: no preference, where offered), U to undo.")
    _prefetch(user, state)


@st.fragment
def instant_area() -> None:
    """The instant voting area (a fragment: the page's queue updates rerun only this)."""
    user = require_role("reader")
    refused = instant_vote.area(user, min_dwell_s=min_dwell_s(), questions=QUESTION, labels=LABEL_TEXT)
    if refused:
        st.error(f"{refused} Please sign in again.")
        sign_out()


def render() -> None:
    require_role("reader")
    st.subheader("Reader study")
    components.research_notice()
    if instant_vote.enabled():
        instant_area()
    else:
        voting_area()
