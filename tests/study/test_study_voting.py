"""Voting service: resume, idempotent submit, refusals, undo / change within a sitting, practice, progress."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from study import audit
from study.accounts import start_sitting
from study.builder import set_status
from study.errors import NotFoundError, VoteRefused
from study.models import AuditEvent, Query, Vote, utcnow
from study.voting import (
    change_last_vote,
    get_query,
    next_query,
    progress,
    query_id_for_token,
    submit_vote,
    undo_last_vote,
)


def _sitting(factory: Any, reader_id: int) -> int:
    with factory.begin() as s:
        return start_sitting(s, reader_id).id


def _vote_next(factory: Any, reader_id: int, slot: int = 1, **kw: Any) -> str:
    with factory.begin() as s:
        view = next_query(s, reader_id, sitting_id=kw.get("sitting_id"))
        assert view is not None
    with factory.begin() as s:
        submit_vote(s, reader_id, view.query_token, slot, **kw)
    return view.query_token


def _count(factory: Any, model: Any, *where: Any) -> int:
    with factory.begin() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_resume_where_left_off(factory: Any, make_study: Any) -> None:
    built = make_study(factory, n_cases=5)
    rid = built.readers["r1"]
    with factory.begin() as s:
        first = next_query(s, rid)
    with factory.begin() as s:
        assert next_query(s, rid) == first  # a reload shows the same query, same slot order
    tokens = [_vote_next(factory, rid, slot=2) for _ in range(3)]
    assert tokens[0] == first.query_token
    with factory.begin() as s:
        view = next_query(s, rid)
        assert view.index == 4 and view.total == 5 and view.label in ("covid", "control")
        assert progress(s, rid) == progress(s, rid, study=built.study_id)
        p = progress(s, rid)
        assert (p.answered, p.total, p.done) == (3, 5, False)


def test_submit_is_idempotent(factory: Any, make_study: Any) -> None:
    built = make_study(factory, n_cases=3)
    rid = built.readers["r1"]
    with factory.begin() as s:
        view = next_query(s, rid)
    with factory.begin() as s:
        assert submit_vote(s, rid, view.query_token, 3).duplicate is False
    with factory.begin() as s:  # a retried submit (e.g. a network retry)
        receipt = submit_vote(s, rid, view.query_token, view.slot_tokens[2])
        assert receipt.duplicate is True and receipt.slot == 3
    with pytest.raises(VoteRefused, match="already answered"):
        with factory.begin() as s:
            submit_vote(s, rid, view.query_token, 1)
    assert _count(factory, Vote) == 1
    assert _count(factory, AuditEvent, AuditEvent.action == audit.VOTE) == 1


def test_refusals(factory: Any, make_study: Any) -> None:
    built = make_study(factory, n_cases=3)
    r1, r2 = built.readers["r1"], built.readers["r2"]
    with factory.begin() as s:
        v1 = next_query(s, r1)
        v2 = next_query(s, r2)
        later = s.scalar(select(Query.token).where(Query.reader_id == r1, Query.position == 2))
    cases: list[tuple[int, str, Any, str]] = [
        (r2, v1.query_token, 1, "no such query for this reader"),  # another reader's query
        (r1, "not-a-token", 1, "no such query"),
        (r1, v1.query_token, v2.slot_tokens[0], "does not belong to this query"),  # image of another query
        (r1, v1.query_token, 6, "out of range"),
        (r1, v1.query_token, 0, "out of range"),
        (r1, v1.query_token, True, "slot is a number"),
        (r1, later, 1, "not your current query"),
    ]
    for reader, token, slot, message in cases:
        with pytest.raises(VoteRefused, match=message):
            with factory.begin() as s:
                submit_vote(s, reader, token, slot)
    for bad in (0, 6, 2.5, True):
        with pytest.raises(VoteRefused, match="confidence"):
            with factory.begin() as s:
                submit_vote(s, r1, v1.query_token, 1, confidence=bad)
    with pytest.raises(VoteRefused, match="longer than"):
        with factory.begin() as s:
            submit_vote(s, r1, v1.query_token, 1, comment="x" * 2001)
    with factory.begin() as s:
        set_status(s, built.study_id, "closed")
    with pytest.raises(VoteRefused, match="not open"):
        with factory.begin() as s:
            submit_vote(s, r1, v1.query_token, 1)
    with factory.begin() as s:
        assert next_query(s, r1) is None
    assert _count(factory, Vote) == 0


def test_undo_and_change_only_within_the_sitting(factory: Any, make_study: Any) -> None:
    built = make_study(factory, n_cases=4)
    rid = built.readers["r1"]
    sit = _sitting(factory, rid)
    t1 = _vote_next(factory, rid, slot=1, sitting_id=sit)
    t2 = _vote_next(factory, rid, slot=2, sitting_id=sit, confidence=4, comment="sharp")
    with factory.begin() as s:
        receipt = change_last_vote(s, rid, 5, sitting_id=sit, confidence=2)
        assert receipt.query_token == t2 and receipt.slot == 5
    with factory.begin() as s:
        view = undo_last_vote(s, rid, sitting_id=sit)
        assert view.query_token == t2 and view.answered_slot is None
    with factory.begin() as s:
        assert next_query(s, rid, sitting_id=sit).query_token == t2
    with factory.begin() as s:  # undo walks back within the sitting
        assert undo_last_vote(s, rid, sitting_id=sit).query_token == t1
    _vote_next(factory, rid, slot=3, sitting_id=sit)
    other = _sitting(factory, rid)
    with pytest.raises(VoteRefused, match="in this sitting"):
        with factory.begin() as s:
            undo_last_vote(s, rid, sitting_id=other)
    with pytest.raises(VoteRefused, match="in this sitting"):
        with factory.begin() as s:
            change_last_vote(s, rid, 1, sitting_id=other)
    with pytest.raises(VoteRefused, match="does not belong"):  # r1's sitting used by r2
        with factory.begin() as s:
            next_query(s, built.readers["r2"], sitting_id=sit)
    with factory.begin() as s:
        actions = [a for a in s.scalars(select(AuditEvent.action).order_by(AuditEvent.id))]
        changed = s.scalar(select(AuditEvent).where(AuditEvent.action == audit.VOTE_CHANGED))
    assert actions.count(audit.VOTE_UNDONE) == 2 and actions.count(audit.VOTE_CHANGED) == 1
    assert changed.detail["old"] == {"slot": 2, "confidence": 4, "comment": "sharp"}
    assert changed.detail["new"]["slot"] == 5
    assert _count(factory, Vote) == 1


def test_nothing_to_undo(factory: Any, make_study: Any) -> None:
    built = make_study(factory, n_cases=2)
    rid = built.readers["r1"]
    sit = _sitting(factory, rid)
    with pytest.raises(VoteRefused, match="no vote"):
        with factory.begin() as s:
            undo_last_vote(s, rid, sitting_id=sit)


def test_practice_first_then_counted_and_progress(factory: Any, make_study: Any) -> None:
    built = make_study(factory, readers=("r1",), n_cases=3, n_practice=2)
    rid = built.readers["r1"]
    seen = []
    while True:
        with factory.begin() as s:
            view = next_query(s, rid)
            if view is None:
                break
            seen.append((view.is_practice, view.index, view.total))
        with factory.begin() as s:
            submit_vote(s, rid, view.query_token, 1)
    assert seen == [(True, 1, 2), (True, 2, 2), (False, 1, 3), (False, 2, 3), (False, 3, 3)]
    with factory.begin() as s:
        p = progress(s, rid)
    assert (p.answered, p.total, p.practice_answered, p.practice_total, p.done) == (3, 3, 2, 2, True)


def test_reading_time_from_shown_to_answered(factory: Any, make_study: Any) -> None:
    built = make_study(factory, n_cases=2)
    rid = built.readers["r1"]
    t0 = utcnow()
    with factory.begin() as s:
        view = next_query(s, rid, now=t0)
    with factory.begin() as s:  # a reload later does not reset the shown time within the same sitting
        get_query(s, rid, view.query_token, now=t0 + timedelta(seconds=3))
    with factory.begin() as s:
        submit_vote(s, rid, view.query_token, 1, now=t0 + timedelta(seconds=7.5))
    with factory.begin() as s:
        vote = s.scalar(select(Vote).where(Vote.query_id == query_id_for_token(s, view.query_token)))
        assert (vote.answered_at - vote.shown_at).total_seconds() == pytest.approx(7.5)


def test_get_query_of_another_reader_is_not_found(factory: Any, make_study: Any) -> None:
    built = make_study(factory, n_cases=2)
    with factory.begin() as s:
        view = next_query(s, built.readers["r1"])
    with pytest.raises(NotFoundError):
        with factory.begin() as s:
            get_query(s, built.readers["r2"], view.query_token)


def test_schema_refuses_double_votes_and_foreign_slots(factory: Any, make_study: Any) -> None:
    from sqlalchemy.exc import IntegrityError

    built = make_study(factory, n_cases=2)
    with factory.begin() as s:
        qid = s.scalar(select(Query.id).where(Query.reader_id == built.readers["r1"], Query.position == 0))
    now = utcnow()
    row = dict(query_id=qid, chosen_slot=1, shown_at=now, answered_at=now)
    with factory.begin() as s:
        s.add(Vote(**row))
    for bad in (row, {**row, "query_id": qid + 1000}):  # a second vote; a vote for a query that does not exist
        with pytest.raises(IntegrityError):
            with factory.begin() as s:
                s.add(Vote(**bad))
    with factory.begin() as s:
        s.query(Vote).delete()
    with pytest.raises(IntegrityError):  # slot 9 is not one of this query's slots (composite foreign key)
        with factory.begin() as s:
            s.add(Vote(**{**row, "chosen_slot": 9}))


def test_display_images_are_equal_in_size_and_distinct_per_reader(factory, make_study, assets):
    """Issue 16, findings 8 and 9: no rendition of a query stands out by its byte size, and the same rendition has
    different bytes (so a different content-hash URL) for every reader, while its pixels are unchanged."""
    import io

    import numpy as np
    from PIL import Image

    from study.voting import display_pngs, next_query, rendition_png

    built = make_study(factory, readers=("a", "b"), n_cases=3)
    views = {}
    with factory.begin() as s:
        for r in ("a", "b"):
            views[r] = next_query(s, built.readers[r])
        pngs = {r: display_pngs(s, built.readers[r], views[r].query_token, assets=assets) for r in ("a", "b")}
        raw = {r: [rendition_png(s, built.readers[r], views[r].query_token, k, assets=assets) for k in range(1, views[r].n_slots + 1)]
               for r in ("a", "b")}
        again = display_pngs(s, built.readers["a"], views["a"].query_token, assets=assets)
    for r in ("a", "b"):
        assert len({len(p) for p in pngs[r]}) == 1, "renditions of a query differ in byte size"
        assert len({len(p) for p in raw[r]}) > 1  # the stored PNGs do differ (so the test can fail)
        for shown, stored in zip(pngs[r], raw[r]):
            a, b = (np.asarray(Image.open(io.BytesIO(x))) for x in (shown, stored))
            assert a.shape == b.shape and np.array_equal(a, b)  # lossless: the padding is a skipped chunk
            assert Image.open(io.BytesIO(shown)).info == Image.open(io.BytesIO(stored)).info  # no metadata added
    assert again == pngs["a"]  # stable per reader: reloads and prefetches hit the browser cache
    # the same rendition seen by both readers (same case, same method): different bytes, so different URLs
    from sqlalchemy import select

    from study.models import Query
    from study.voting import query_id_for_token, query_slot_methods

    with factory.begin() as s:
        qa = s.get(Query, query_id_for_token(s, views["a"].query_token))
        qb = s.scalar(select(Query).where(Query.reader_id == built.readers["b"], Query.case_id == qa.case_id, Query.is_practice == qa.is_practice))
        ma, mb = query_slot_methods(s, qa.id), query_slot_methods(s, qb.id)
        shown_b = display_pngs(s, built.readers["b"], qb.token, assets=assets)
        stored_b = [rendition_png(s, built.readers["b"], qb.token, k, assets=assets) for k in range(1, len(mb) + 1)]
    for k, m in enumerate(ma):
        j = mb.index(m)
        assert raw["a"][k] == stored_b[j] and pngs["a"][k] != shown_b[j]
    assert not set(pngs["a"]) & set(shown_b)


def test_display_images_shrink_alike_when_too_wide(tmp_path):
    import io

    import numpy as np
    from PIL import Image

    from study.assets import encode_png, fit_png, pad_png

    big = encode_png((np.arange(3000 * 2000) % 251).astype(np.uint8).reshape(2000, 3000))
    small = fit_png(big, 1460)
    assert Image.open(io.BytesIO(small)).size == (1460, 973)
    assert fit_png(small, 1460) is small
    padded = pad_png(small, len(small) + 100, b"xyz")
    assert len(padded) == len(small) + 100 and np.array_equal(np.asarray(Image.open(io.BytesIO(padded))), np.asarray(Image.open(io.BytesIO(small))))
