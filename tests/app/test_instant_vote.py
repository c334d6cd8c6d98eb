"""The server side of the instant voting area: what a page gets (header, images once, nothing that names a method,
equal sizes within a query), how an outbox is applied, and the page renders in instant mode."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app import instant_vote as iv
from app.auth import User
from study.accounts import start_sitting
from study.db import connect
from study.models import Reader, Vote, VoteRequest
from tests.app.conftest import app_test
from tests.e2e.test_e2e import FORBIDDEN


@pytest.fixture
def reader(study_env) -> User:
    with connect(study_env.url).begin() as s:
        rid = s.scalar(select(Reader.id).where(Reader.name == "reader-1"))
        sitting = start_sitting(s, rid).id
    return User(id=rid, name="reader-1", role="reader", sitting_id=sitting)


def _data(user: User, state: iv.InstantState) -> tuple[dict, dict[str, list[bytes]]]:
    raw = iv.build_data(user, state, min_dwell_s=0.35, questions={"restoration": "Which?"}, labels={"covid": "C"})
    iv.commit_sent(state)  # as area() does once the render is handed to Streamlit
    return iv.unpack(raw)


def test_pack_round_trip() -> None:
    meta, images = iv.unpack(iv.pack({"a": 1}, {"t1": [b"x" * 5, b"y" * 5], "t2": [b"zz"]}))
    assert meta["a"] == 1 and images == {"t1": [b"x" * 5, b"y" * 5], "t2": [b"zz"]}
    assert [(i["query"], i["slot"], i["length"]) for i in meta["images"]] == [("t1", 1, 5), ("t1", 2, 5), ("t2", 1, 2)]


def test_a_page_gets_its_next_queries_once_and_nothing_that_names_a_method(study_env, reader, monkeypatch) -> None:
    monkeypatch.setenv("R2C_VOTE_AHEAD", "3")
    state = iv.InstantState()
    meta, images = _data(reader, state)
    tokens = [q["token"] for q in meta["queries"]]
    assert len(tokens) == 4 and set(images) == set(tokens)  # 1 practice + 3 ahead, all with images
    assert [q["practice"] for q in meta["queries"]] == [True, False, False, False]
    assert set(meta["queries"][0]) == {"token", "kind", "label", "index", "total", "practice", "no_preference"}  # no slot tokens
    assert meta["settings"]["min_dwell_ms"] == 350 and meta["remaining"] == 5 and meta["nonce"] == 0
    for pngs in images.values():
        assert len(pngs) == 5 and len({len(p) for p in pngs}) == 1 and all(p[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    header = repr(meta).lower()
    assert not [name for name in FORBIDDEN if name.lower() in header]
    assert str(reader.id) not in meta["reader"] and "reader-1" not in meta["reader"]
    # a render that never reached the page (an interrupted rerun): its images go out with the next one
    lost = iv.InstantState()
    iv.build_data(reader, lost, min_dwell_s=0.35, questions={}, labels={})
    assert set(iv.unpack(iv.build_data(reader, lost, min_dwell_s=0.35, questions={}, labels={}))[1]) == set(tokens)
    # the next render sends no image again; an image the page says it lacks comes again
    meta2, images2 = _data(reader, state)
    assert images2 == {} and meta2["render"] == meta["render"] + 1
    iv.handle_outbox(reader, state, {"nonce": 1, "requests": [], "need": [tokens[2]]})
    assert set(_data(reader, state)[1]) == {tokens[2]}


def test_an_outbox_is_applied_once_and_answered(study_env, reader) -> None:
    state = iv.InstantState()
    meta, _ = _data(reader, state)
    first, second = meta["queries"][0]["token"], meta["queries"][1]["token"]
    outbox = {"nonce": 7, "need": [], "requests": [
        {"key": "k-vote-0001", "kind": "vote", "query": first, "slot": 2, "dwell_ms": 900},
        {"key": "k-vote-0002", "kind": "vote", "query": second, "slot": 4, "confidence": 3, "comment": "ok"},
        {"key": "k-bad-00003", "kind": "vote", "query": second, "slot": 99},
    ]}
    iv.handle_outbox(reader, state, outbox)
    iv.handle_outbox(reader, state, outbox)  # the same queue again (merged reruns, resends)
    assert state.nonce == 7 and [a["outcome"] for a in state.acks] == ["refused", "recorded", "recorded"]
    meta, _ = _data(reader, state)
    assert meta["acks"] == state.acks and meta["queries"][0]["index"] == 2  # query 2 of the study is next
    with connect(study_env.url).begin() as s:
        assert s.scalar(select(func.count()).select_from(Vote)) == 2
        assert s.scalar(select(func.count()).select_from(VoteRequest)) == 2  # a malformed one is not stored
    iv.handle_outbox(reader, state, {"nonce": 8, "requests": "not a list"})
    assert "cannot read" in _data(reader, state)[0]["message"]
    iv.handle_outbox(reader, state, None)  # nothing sent yet: nothing happens


def test_the_vote_page_renders_the_instant_area(study_env, monkeypatch) -> None:
    monkeypatch.setenv("R2C_VOTE_UI", "instant")
    at = app_test().run()
    at.text_input(key="access_code").input(study_env.codes["reader-1"])
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert not [b for b in at.button if b.key and b.key.startswith("choose_")]  # the plain grid is not drawn
    assert isinstance(at.session_state[iv.STATE], iv.InstantState) and at.session_state[iv.STATE].sent


def test_settings_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("R2C_VOTE_AHEAD", "1")
    assert iv.ahead() == 3  # at least three ahead
    monkeypatch.setenv("R2C_VOTE_AHEAD", "junk")
    assert iv.ahead() == 4
    monkeypatch.setenv("R2C_VOTE_UI", "plain")
    assert not iv.enabled()
    monkeypatch.setenv("R2C_VOTE_UI", "instant")
    assert iv.enabled()


def test_no_preference_in_both_voting_uis(tmp_path, monkeypatch) -> None:
    from tests.e2e.harness import build_test_study

    ts = build_test_study(tmp_path / "study", no_preference=True)
    for key, value in ts.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("R2C_VOTE_UI", "plain")
    at = app_test().run()
    at.text_input(key="access_code").input(ts.codes["reader-1"])
    at.button[0].click().run()
    at.button(key="choose_none").click().run()  # the practice query
    assert not at.exception, at.exception
    with connect(ts.url).begin() as s:
        vote = s.scalar(select(Vote))
        assert (vote.chosen_slot, vote.no_preference) == (None, True)
        rid = s.scalar(select(Reader.id).where(Reader.name == "reader-1"))
        sitting = start_sitting(s, rid).id
    user = User(id=rid, name="reader-1", role="reader", sitting_id=sitting)
    meta, _ = _data(user, iv.InstantState())
    assert all(q["no_preference"] for q in meta["queries"])  # the instant area offers the button too
