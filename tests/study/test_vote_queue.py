"""The browser vote queue's server side: requests checked, applied in order and exactly once by key, undo by key,
refusals stored, think time from the browser, and the queries a browser may hold ahead."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from study import vote_queue as vq
from study.accounts import start_sitting
from study.builder import set_status
from study.models import AuditEvent, Query, Vote, VoteRequest
from study.voting import next_query, progress


def _sitting(factory: Any, reader_id: int) -> int:
    with factory.begin() as s:
        return start_sitting(s, reader_id).id


def _tokens(factory: Any, rid: int, n: int) -> list[str]:
    with factory.begin() as s:
        return [v.query_token for v in vq.upcoming(s, rid, count=n)]


def _vote(key: str, token: str, slot: int, **kw: Any) -> dict[str, Any]:
    return {"key": key, "kind": "vote", "query": token, "slot": slot, **kw}


def _apply(factory: Any, rid: int, raw: list[Any], sitting: int | None) -> list[vq.Ack]:
    good, bad = vq.parse_requests(raw)
    return bad + vq.apply_requests(factory, rid, good, sitting_id=sitting)


def _count(factory: Any, model: Any, *where: Any) -> int:
    with factory.begin() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_parse_refuses_bad_shapes() -> None:
    good, bad = vq.parse_requests([
        _vote("key-00001", "tok", 2, confidence=4, comment="fine", dwell_ms=1500),
        {"key": "key-00002", "kind": "undo", "target": "key-00001"},
        _vote("key-00003", "tok", 0),  # slot out of range
        _vote("key-00004", "tok", True),  # a bool is not a slot
        _vote("key-00005", "tok", 2, confidence=9),
        _vote("key-00006", "tok", 2, comment="x" * 5000),
        {"key": "key-00007", "kind": "drop table"},
        {"key": "no", "kind": "vote"},  # key too short: dropped, cannot be acknowledged
        "not an object",
        _vote("key-00001", "tok", 3),  # the same key again in one message: the first counts
    ])
    assert [r.key for r in good] == ["key-00001", "key-00002"]
    assert good[0] == vq.Request(key="key-00001", kind="vote", query_token="tok", slot=2, confidence=4,
                                 comment="fine", dwell_s=1.5)
    assert good[1].target == "key-00001"
    assert [a.key for a in bad] == ["key-00003", "key-00004", "key-00005", "key-00006", "key-00007"]
    assert all(a.outcome == "refused" and a.message for a in bad)
    with pytest.raises(vq.RequestError):
        vq.parse_requests([_vote(f"key-{i:05d}", "t", 1) for i in range(vq.MAX_REQUESTS + 1)])
    with pytest.raises(vq.RequestError):
        vq.parse_requests({"key": "key-00001"})
    assert vq.parse_requests(None) == ([], [])


def test_requests_apply_once_in_order(factory: Any, make_study: Any) -> None:
    built = make_study(factory, n_cases=6)
    rid = built.readers["r1"]
    sitting = _sitting(factory, rid)
    tokens = _tokens(factory, rid, 4)
    assert len(tokens) == 4 and len(set(tokens)) == 4
    batch = [_vote(f"vote-{i:04d}", t, i + 1, dwell_ms=2000 + i) for i, t in enumerate(tokens[:3])]
    acks = _apply(factory, rid, batch, sitting)
    assert [(a.key, a.outcome, a.query_token) for a in acks] == [(f"vote-{i:04d}", "recorded", t)
                                                                 for i, t in enumerate(tokens[:3])]
    # the whole queue sent again (a lost acknowledgement, a reload) plus one new vote: nothing applied twice
    acks = _apply(factory, rid, batch + [_vote("vote-0003", tokens[3], 4)], sitting)
    assert [a.outcome for a in acks] == ["recorded"] * 4
    assert _count(factory, Vote) == 4
    assert _count(factory, VoteRequest) == 4
    assert _count(factory, AuditEvent, AuditEvent.action == "vote") == 4
    with factory.begin() as s:
        votes = {q.token: v for v, q in s.execute(select(Vote, Query).join(Query, Query.id == Vote.query_id))}
        assert [votes[t].chosen_slot for t in tokens] == [1, 2, 3, 4]
        # the think time measured in the browser, whenever the server applied the vote
        v0 = votes[tokens[0]]
        assert (v0.answered_at - v0.shown_at).total_seconds() == pytest.approx(2.0, abs=1e-3)
        assert progress(s, rid).answered == 4


def test_refusals_are_stored_and_answered_alike(factory: Any, make_study: Any) -> None:
    built = make_study(factory, n_cases=4)
    rid, other = built.readers["r1"], built.readers["r2"]
    sitting = _sitting(factory, rid)
    mine, theirs = _tokens(factory, rid, 2), _tokens(factory, other, 1)
    batch = [
        _vote("skip-ahead", mine[1], 1),  # not the current query
        _vote("not-mine-01", theirs[0], 1),  # another reader's query
        _vote("first-vote", mine[0], 2),
        _vote("change-it1", mine[0], 3),  # a different choice for an answered query
    ]
    acks = _apply(factory, rid, batch, sitting)
    assert [a.outcome for a in acks] == ["refused", "refused", "recorded", "refused"]
    assert "current" in acks[0].message and "no such query" in acks[1].message and "already answered" in acks[3].message
    assert _apply(factory, rid, batch, sitting) == acks  # the same answers from the log
    assert _count(factory, Vote) == 1


def test_undo_by_key(factory: Any, make_study: Any) -> None:
    built = make_study(factory, n_cases=4)
    rid = built.readers["r1"]
    sitting = _sitting(factory, rid)
    t = _tokens(factory, rid, 3)
    acks = _apply(factory, rid, [_vote("vote-aaaa", t[0], 1), _vote("vote-bbbb", t[1], 2),
                                 {"key": "undo-aaaa", "kind": "undo", "target": "vote-aaaa"},  # not the latest
                                 {"key": "undo-bbbb", "kind": "undo", "target": "vote-bbbb"},
                                 {"key": "undo-again", "kind": "undo", "target": "vote-bbbb"},  # already undone
                                 {"key": "undo-none", "kind": "undo", "target": "vote-zzzz"},
                                 _vote("vote-cccc", t[1], 3)],  # choose again
                    sitting)
    assert [a.outcome for a in acks] == ["recorded", "recorded", "refused", "undone", "nothing", "nothing", "recorded"]
    assert acks[3].query_token == t[1]
    with factory.begin() as s:
        assert s.scalar(select(Vote.chosen_slot).join(Query).where(Query.token == t[1])) == 3
        assert next_query(s, rid).query_token == t[2]
    # undo outside the sitting that cast the vote is refused
    later = _sitting(factory, rid)
    acks = _apply(factory, rid, [{"key": "undo-cccc", "kind": "undo", "target": "vote-cccc"}], later)
    assert acks[0].outcome == "refused" and "sitting" in acks[0].message
    # a key reused for another kind of request is refused, the first use stands
    acks = _apply(factory, rid, [{"key": "vote-cccc", "kind": "undo", "target": "vote-cccc"}], sitting)
    assert acks[0].outcome == "refused"
    assert _count(factory, Vote) == 2


def test_closed_study_and_keys_are_per_reader(factory: Any, make_study: Any) -> None:
    built = make_study(factory, n_cases=3)
    r1, r2 = built.readers["r1"], built.readers["r2"]
    s1, s2 = _sitting(factory, r1), _sitting(factory, r2)
    a1 = _apply(factory, r1, [_vote("same-key-1", _tokens(factory, r1, 1)[0], 1)], s1)
    a2 = _apply(factory, r2, [_vote("same-key-1", _tokens(factory, r2, 1)[0], 2)], s2)  # another reader's key
    assert [a1[0].outcome, a2[0].outcome] == ["recorded", "recorded"]
    with factory.begin() as s:
        set_status(s, built.study_id, "closed")
    tok = _tokens(factory, r1, 1)
    assert tok == []  # a closed study offers nothing ahead


def test_upcoming_lists_practice_first_and_marks_only_the_current(factory: Any, make_study: Any) -> None:
    built = make_study(factory, n_cases=5, n_practice=2)
    rid = built.readers["r1"]
    with factory.begin() as s:
        views = vq.upcoming(s, rid, count=4)
        assert [v.is_practice for v in views] == [True, True, False, False]
        assert views[0] == next_query(s, rid)
        shown = dict(s.execute(select(Query.token, Query.shown_at).where(Query.reader_id == rid)).all())
    assert shown[views[0].query_token] is not None
    assert all(shown[v.query_token] is None for v in views[1:])
    with factory.begin() as s:  # votes the browser holds but the server has not applied: skipped
        later = vq.upcoming(s, rid, count=2, after=[views[0].query_token])
        assert [v.query_token for v in later] == [v.query_token for v in views[1:3]]
        # nothing in a view names a method
        assert set(views[0].as_dict()) == {"query_token", "study_kind", "label", "index", "total", "is_practice",
                                           "slot_tokens", "answered_slot", "no_preference"}


def test_no_preference_only_where_the_study_offers_it(factory: Any, make_study: Any) -> None:
    forced = make_study(factory, n_cases=2)
    rid = forced.readers["r1"]
    acks = _apply(factory, rid, [_vote("none-forced", _tokens(factory, rid, 1)[0], "none")], _sitting(factory, rid))
    assert acks[0].outcome == "refused" and "no preference" in acks[0].message
    offered = make_study(factory, readers=("r3",), n_cases=3, name="s2", no_preference=True)
    rid = offered.readers["r3"]
    sitting = _sitting(factory, rid)
    with factory.begin() as s:
        view = vq.upcoming(s, rid, count=1)[0]
    assert view.no_preference
    batch = [_vote("none-offer", view.query_token, "none", confidence=2)]
    assert [a.outcome for a in _apply(factory, rid, batch + batch, sitting)] == ["recorded"]
    with factory.begin() as s:
        vote = s.scalar(select(Vote).join(Query).where(Query.token == view.query_token))
        assert (vote.chosen_slot, vote.no_preference, vote.confidence) == (None, True, 2)
        assert next_query(s, rid).query_token != view.query_token  # answered: the next query comes
        assert progress(s, rid).answered == 1
    acks = _apply(factory, rid, [_vote("none-again", view.query_token, 1)], sitting)  # a different answer
    assert acks[0].outcome == "refused"
    acks = _apply(factory, rid, [{"key": "undo-none1", "kind": "undo", "target": "none-offer"}], sitting)
    assert acks[0].outcome == "undone" and _count(factory, Vote, Vote.no_preference.is_(True)) == 0
