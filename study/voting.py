"""The voting service: what a reader sees, and recording their choices.

Everything a reader receives is a :class:`QueryView`: the case label, "k of n", and one opaque token per
display slot in that reader's saved order. Query tokens are random per query; slot tokens are an HMAC of the
query token and slot number under the study's secret key, so nothing a reader gets (ids, tokens, file names,
order) can be correlated with a method or across readers. Images are served by :func:`rendition_png`.

Rules enforced here (the schema enforces the rest, e.g. one vote per query, a vote only for a slot of its
own query):

* :func:`next_query` resumes at the reader's first unanswered query (practice queries come first).
* :func:`submit_vote` is idempotent: a retried submit of the same choice records nothing new. A vote for a
  query of another reader, a slot token of another query, a closed study, or a query other than the reader's
  current one is refused with :class:`~study.errors.VoteRefused`.
* :func:`undo_last_vote` and :func:`change_last_vote` act only on the reader's latest vote, and only within
  the sitting that cast it; both are audited with the old and new values.

All functions take a Session; the caller commits (``with factory.begin() as session: ...``).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, func, literal, select
from sqlalchemy.orm import Session, aliased

from . import audit
from .assets import assets_dir, load_png
from .errors import NotFoundError, VoteRefused
from .models import (
    Case,
    Query,
    QuerySlot,
    Reader,
    Rendition,
    Sitting,
    Study,
    Vote,
    utcnow,
)
from .security import slot_token

MAX_COMMENT = 2000
#: the answer "no preference" (a study option, off by default): pass it as the slot; receipts and views say slot 0
NO_PREFERENCE = "none"


@dataclass(frozen=True)
class QueryView:
    """What the app shows for one query. Contains no method name, rendition id, hash or repeat flag."""

    query_token: str
    study_kind: str
    label: str
    index: int
    total: int
    is_practice: bool
    slot_tokens: tuple[str, ...]
    answered_slot: int | None = None
    #: whether this study offers "no preference" (answered_slot 0 when that was the answer)
    no_preference: bool = False

    @property
    def n_slots(self) -> int:
        return len(self.slot_tokens)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Progress:
    """How far a reader is: counted queries answered of total, and the same for practice queries."""

    answered: int
    total: int
    practice_answered: int
    practice_total: int

    @property
    def done(self) -> bool:
        return self.answered >= self.total and self.practice_answered >= self.practice_total


@dataclass(frozen=True)
class VoteReceipt:
    """The outcome of a submit: ``duplicate`` when the same vote was already stored (a retried submit)."""

    query_token: str
    slot: int
    duplicate: bool = False


# -- helpers -------------------------------------------------------------------------------------------------

_Q2 = aliased(Query)
_QUERIES, _VOTES = Query.__table__, Vote.__table__
#: a vote's slot as the service reads it: 0 for "no preference"
_SLOT = func.coalesce(Vote.chosen_slot, 0)


@dataclass(frozen=True)
class _Row:
    """One query with everything the service needs, read in a single statement."""

    id: int
    token: str
    study_id: int
    position: int
    is_practice: bool
    shown_at: datetime | None
    shown_sitting_id: int | None
    kind: str
    status: str
    study_name: str
    token_key: str
    label: str
    n_slots: int
    vote_slot: int | None
    total: int
    index: int
    behind: bool  # an earlier query of the same study is still unanswered
    settings: dict[str, Any]


def _reader_id(reader: Reader | int) -> int:
    return reader.id if isinstance(reader, Reader) else int(reader)


def _refuse_if_disabled(session: Session, reader_id: int) -> None:
    active = session.scalar(select(Reader.active).where(Reader.id == reader_id))
    if not active:
        raise VoteRefused("this reader is unknown or disabled")


def _unanswered(q: Any) -> Any:
    return ~select(Vote.id).where(Vote.query_id == q.id).exists()


def _row_stmt(with_behind: bool) -> Any:
    """Everything about one query of reader ``:rid`` in one SELECT (filtered further by the callers)."""
    same = [_Q2.study_id == Query.study_id, _Q2.reader_id == Query.reader_id]
    kind = same + [_Q2.is_practice == Query.is_practice]
    behind = (select(_Q2.id).where(*same, _Q2.position < Query.position, _unanswered(_Q2)).exists()
              if with_behind else literal(False))
    return (
        select(
            Query.id, Query.token, Query.study_id, Query.position, Query.is_practice, Query.shown_at,
            Query.shown_sitting_id, Study.kind, Study.status, Study.name, Study.token_key, Case.label,
            select(func.count()).select_from(QuerySlot).where(QuerySlot.query_id == Query.id).scalar_subquery(),
            select(_SLOT).where(Vote.query_id == Query.id).scalar_subquery(),
            select(func.count()).select_from(_Q2).where(*kind).scalar_subquery(),
            select(func.count()).select_from(_Q2).where(*kind, _Q2.position <= Query.position).scalar_subquery(),
            behind,
            Study.settings,
        )
        .join(Study, Study.id == Query.study_id)
        .join(Case, Case.id == Query.case_id)
        .join(Reader, Reader.id == Query.reader_id)
        .where(Query.reader_id == bindparam("rid"), Reader.active.is_(True))
    )


@functools.cache
def _statements() -> dict[str, Any]:
    """The hot-path statements, built once (building a statement costs more than running it on SQLite)."""
    def first(study_filter: bool) -> Any:
        cond = [Query.reader_id == bindparam("rid"), _unanswered(Query),
                Query.study_id.in_(select(Study.id).where(Study.status == "open"))]
        if study_filter:
            cond.append(Query.study_id == bindparam("sid"))
        first_id = select(Query.id).where(*cond).order_by(Query.study_id, Query.position).limit(1).scalar_subquery()
        return _row_stmt(False).where(Query.id == first_id)

    return {
        "by_token": _row_stmt(True).where(Query.token == bindparam("token")),
        "first": first(False),
        "first_in_study": first(True),
        "shown": _QUERIES.update().where(_QUERIES.c.id == bindparam("qid")).values(
            shown_at=bindparam("shown"), shown_sitting_id=bindparam("sitting")),
        "sitting_owner": select(Sitting.reader_id).where(Sitting.id == bindparam("sitting")),
        "vote_slot": select(_SLOT).where(Vote.query_id == bindparam("qid")),
    }


def _fetch(session: Session, stmt: Any, params: dict[str, Any]) -> _Row | None:
    row = session.execute(stmt, params).first()
    if row is None:
        _refuse_if_disabled(session, params["rid"])
        return None
    return _Row(*row)


def _row_by_token(session: Session, reader_id: int, token: str) -> _Row | None:
    return _fetch(session, _statements()["by_token"], {"rid": reader_id, "token": str(token)})


def _first_unanswered(session: Session, reader_id: int, study_id: int | None = None) -> _Row | None:
    """The reader's current query: lowest position without a vote, in an open study (or in ``study_id``)."""
    if study_id is None:
        return _fetch(session, _statements()["first"], {"rid": reader_id})
    return _fetch(session, _statements()["first_in_study"], {"rid": reader_id, "sid": int(study_id)})


def _check_sitting(session: Session, reader_id: int, sitting_id: int | None) -> None:
    if sitting_id is None:
        return
    owner = session.scalar(_statements()["sitting_owner"], {"sitting": int(sitting_id)})
    if owner != reader_id:
        raise VoteRefused("this sitting does not belong to this reader; sign in again")


def _slot_tokens(row: _Row) -> tuple[str, ...]:
    return tuple(slot_token(row.token_key, row.token, k) for k in range(1, row.n_slots + 1))


def _offers_no_preference(row: _Row) -> bool:
    return bool((row.settings or {}).get("no_preference"))


def _resolve_slot(row: _Row, slot: int | str, refuse: type[Exception]) -> int:
    """The slot number (0: "no preference", only where the study offers it)."""
    if slot == NO_PREFERENCE:
        if _offers_no_preference(row):
            return 0
        raise refuse('this study asks for a choice; it does not offer "no preference"')
    if isinstance(slot, bool):
        raise refuse("a slot is a number from 1 to the number of images, or a slot token")
    if isinstance(slot, int):
        if 1 <= slot <= row.n_slots:
            return slot
        raise refuse(f"slot {slot} is out of range (1 to {row.n_slots})")
    for k, tok in enumerate(_slot_tokens(row), start=1):
        if tok == str(slot):
            return k
    raise refuse("that image does not belong to this query")


def _view(row: _Row, answered_slot: int | None = None) -> QueryView:
    return QueryView(
        query_token=row.token,
        study_kind=row.kind,
        label=row.label,
        index=int(row.index),
        total=int(row.total),
        is_practice=bool(row.is_practice),
        slot_tokens=_slot_tokens(row),
        answered_slot=answered_slot,
        no_preference=_offers_no_preference(row),
    )


def _mark_shown(session: Session, row: _Row, sitting_id: int | None, now: datetime) -> None:
    """Record when an unanswered query was (re)shown: first showing, or first showing in a new sitting."""
    if row.vote_slot is not None:
        return
    if row.shown_at is None or (sitting_id is not None and row.shown_sitting_id != sitting_id):
        session.execute(_statements()["shown"], {"qid": row.id, "shown": now, "sitting": sitting_id})


def _clean_vote_values(confidence: int | None, comment: str | None) -> tuple[int | None, str | None]:
    if confidence is not None:
        if isinstance(confidence, bool) or not isinstance(confidence, int) or not 1 <= confidence <= 5:
            raise VoteRefused("confidence must be a whole number from 1 to 5 (or left out)")
    if comment is not None:
        comment = str(comment).strip() or None
        if comment is not None and len(comment) > MAX_COMMENT:
            raise VoteRefused(f"the comment is longer than {MAX_COMMENT} characters")
    return confidence, comment


# -- what the reader sees ------------------------------------------------------------------------------------


def next_query(session: Session, reader: Reader | int, *, study: int | None = None, sitting_id: int | None = None,
               now: datetime | None = None) -> QueryView | None:
    """The reader's first unanswered query in an open study (or in ``study``), marked as shown; None if done."""
    rid = _reader_id(reader)
    row = _first_unanswered(session, rid, study)
    if row is None:
        return None
    _check_sitting(session, rid, sitting_id)
    _mark_shown(session, row, sitting_id, now or utcnow())
    return _view(row)


def get_query(session: Session, reader: Reader | int, query_token: str, *, sitting_id: int | None = None,
              now: datetime | None = None, mark_shown: bool = True) -> QueryView:
    """The view of one of the reader's queries (e.g. on a page reload)."""
    rid = _reader_id(reader)
    row = _row_by_token(session, rid, query_token)
    if row is None:
        raise NotFoundError("no such query for this reader")
    if mark_shown:
        _check_sitting(session, rid, sitting_id)
        _mark_shown(session, row, sitting_id, now or utcnow())
    return _view(row, row.vote_slot)


def rendition_png(session: Session, reader: Reader | int, query_token: str, slot: int | str, *,
                  assets: str | Path | None = None) -> bytes:
    """The PNG bytes shown in ``slot`` (1-based number or slot token) of one of the reader's queries."""
    rid = _reader_id(reader)
    row = _row_by_token(session, rid, query_token)
    if row is None:
        raise NotFoundError("no such image for this reader")
    k = _resolve_slot(row, slot, NotFoundError)
    sha = session.scalar(
        select(Rendition.sha256).join(QuerySlot, QuerySlot.rendition_id == Rendition.id).where(
            QuerySlot.query_id == row.id, QuerySlot.slot == k
        )
    )
    assert sha is not None
    return load_png(assets_dir(assets), sha)


def display_pngs(session: Session, reader: Reader | int, query_token: str, *, assets: str | Path | None = None,
                 max_side: int = 1460) -> list[bytes]:
    """The images of one of the reader's queries exactly as the browser should get them, slot 1 first.

    Blinding (nothing in the bytes, their size or their URL tells a method apart):

    * every image is at most ``max_side`` pixels a side (shrunk here, alike for all slots, so the page's image
      element passes the bytes through untouched instead of re-encoding them);
    * all images of the query have **the same byte size**: each is padded with a private PNG chunk to the largest
      one's size plus a per-query random amount (PNG compression otherwise gives a method away by its size);
    * the padding is keyed by the study's secret key, the reader, the query and the slot, so **every reader gets
      different bytes**, hence different content-hash URLs, for the same rendition, and the same reader gets the
      same bytes again on a reload (browser caching and prefetching keep working).

    The pixels are those of the stored renditions (after the shrink, if any); the padding chunk is ignored by
    every PNG decoder.
    """
    import hashlib
    import hmac

    from .assets import fit_png, pad_png

    rid = _reader_id(reader)
    row = _row_by_token(session, rid, query_token)
    if row is None:
        raise NotFoundError("no such query for this reader")
    shas = dict(session.execute(
        select(QuerySlot.slot, Rendition.sha256).join(Rendition, QuerySlot.rendition_id == Rendition.id).where(QuerySlot.query_id == row.id)
    ).all())
    root = assets_dir(assets)
    pngs = [fit_png(load_png(root, shas[k]), max_side) for k in range(1, row.n_slots + 1)]
    key = str(row.token_key).encode()
    digest = lambda *parts: hmac.new(key, "|".join(map(str, ("display", rid, row.token, *parts))).encode(), hashlib.sha256).digest()  # noqa: E731
    total = max(len(p) for p in pngs) + 16 + int.from_bytes(digest("extra")[:2], "big") % 1024
    return [pad_png(p, total, digest("slot", k) + digest("slot2", k)) for k, p in enumerate(pngs, start=1)]


def progress(session: Session, reader: Reader | int, *, study: int | None = None) -> Progress:
    """Answered / total counted queries, and the same for practice, in open studies (or in ``study``)."""
    rid = _reader_id(reader)
    _refuse_if_disabled(session, rid)
    stmt = (
        select(Query.is_practice, func.count(Query.id), func.count(Vote.id))
        .join(Study, Study.id == Query.study_id)
        .outerjoin(Vote, Vote.query_id == Query.id)
        .where(Query.reader_id == rid)
        .group_by(Query.is_practice)
    )
    stmt = stmt.where(Query.study_id == study) if study is not None else stmt.where(Study.status == "open")
    counts = {bool(p): (int(total), int(answered)) for p, total, answered in session.execute(stmt)}
    total, answered = counts.get(False, (0, 0))
    p_total, p_answered = counts.get(True, (0, 0))
    return Progress(answered=answered, total=total, practice_answered=p_answered, practice_total=p_total)


# -- recording choices ---------------------------------------------------------------------------------------


def submit_vote(session: Session, reader: Reader | int, query_token: str, slot: int | str, *,
                confidence: int | None = None, comment: str | None = None, sitting_id: int | None = None,
                now: datetime | None = None, dwell_s: float | None = None) -> VoteReceipt:
    """Record the reader's choice for their current query (see the module doc for the rules). ``slot`` is a slot
    number or token, or :data:`NO_PREFERENCE` where the study offers it.

    ``dwell_s``: how long the reader looked at the query before choosing, as measured where it was shown (the
    browser); the vote's ``shown_at`` is then ``now - dwell_s`` (a vote that reaches the server late keeps its
    true think time). Without it, ``shown_at`` is when the server last showed the query."""
    rid = _reader_id(reader)
    row = _row_by_token(session, rid, query_token)
    if row is None:
        raise VoteRefused("no such query for this reader")
    k = _resolve_slot(row, slot, VoteRefused)
    confidence, comment = _clean_vote_values(confidence, comment)
    if row.vote_slot is not None:
        return _existing(row.vote_slot, row.token, k)
    if row.status != "open":
        raise VoteRefused(f"the study {row.study_name!r} is not open for voting")
    if row.behind:
        raise VoteRefused("this is not your current query; reload to continue where you left off")
    _check_sitting(session, rid, sitting_id)
    now = now or utcnow()
    shown = row.shown_at or now
    if dwell_s is not None:
        shown = now - timedelta(seconds=min(max(0.0, float(dwell_s)), 6 * 3600.0))
    if row.shown_at is None:
        session.execute(_statements()["shown"], {"qid": row.id, "shown": now, "sitting": sitting_id})
    values = dict(query_id=row.id, chosen_slot=k or None, no_preference=k == 0, confidence=confidence, comment=comment, shown_at=shown,
                  answered_at=now, sitting_id=sitting_id)
    if session.scalar(_insert_once(session.get_bind().dialect.name), values) is None:  # a concurrent submit won
        existing = session.scalar(_statements()["vote_slot"], {"qid": row.id})
        assert existing is not None
        return _existing(existing, row.token, k)
    audit.record(session, audit.VOTE, reader_id=rid, study_id=row.study_id, at=now,
                 detail={"query_id": row.id, "slot": k, "practice": bool(row.is_practice)})
    return VoteReceipt(query_token=row.token, slot=k)


@functools.cache
def _insert_once(dialect: str) -> Any:
    """``INSERT INTO votes ... ON CONFLICT (query_id) DO NOTHING RETURNING id`` for SQLite and PostgreSQL."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        raise VoteRefused(f"unsupported database {dialect}")
    return insert(_VOTES).on_conflict_do_nothing(index_elements=["query_id"]).returning(_VOTES.c.id)


def _existing(vote_slot: int, token: str, slot: int) -> VoteReceipt:
    if vote_slot == slot:
        return VoteReceipt(query_token=token, slot=slot, duplicate=True)
    raise VoteRefused("this query is already answered; undo the last vote to change it")


def _last_vote(session: Session, rid: int, sitting_id: int | None) -> tuple[Vote, Query, Study]:
    _refuse_if_disabled(session, rid)
    row = session.execute(
        select(Vote, Query, Study)
        .join(Query, Query.id == Vote.query_id)
        .join(Study, Study.id == Query.study_id)
        .where(Query.reader_id == rid)
        .order_by(Vote.id.desc())
        .limit(1)
    ).first()
    if row is None:
        raise VoteRefused("there is no vote to undo or change")
    vote, q, study = row
    if sitting_id is None or vote.sitting_id != sitting_id:
        raise VoteRefused("only a vote cast in this sitting can be undone or changed")
    if study.status != "open":
        raise VoteRefused(f"the study {study.name!r} is closed")
    return vote, q, study


def undo_last_vote(session: Session, reader: Reader | int, *, sitting_id: int, now: datetime | None = None) -> QueryView:
    """Withdraw the reader's latest vote (cast in this sitting); that query becomes the current one again."""
    rid = _reader_id(reader)
    vote, q, study = _last_vote(session, rid, sitting_id)
    old = {"slot": vote.chosen_slot, "confidence": vote.confidence, "comment": vote.comment}
    session.delete(vote)
    session.flush()
    audit.record(session, audit.VOTE_UNDONE, reader_id=rid, study_id=study.id, at=now,
                 detail={"query_id": q.id, "old": old})
    row = _row_by_token(session, rid, q.token)
    assert row is not None
    return _view(row)


def change_last_vote(session: Session, reader: Reader | int, slot: int | str, *, sitting_id: int,
                     confidence: int | None = None, comment: str | None = None,
                     now: datetime | None = None) -> VoteReceipt:
    """Change the reader's latest vote (cast in this sitting) to another slot / confidence / comment."""
    rid = _reader_id(reader)
    vote, q, study = _last_vote(session, rid, sitting_id)
    row = _row_by_token(session, rid, q.token)
    assert row is not None
    k = _resolve_slot(row, slot, VoteRefused)
    confidence, comment = _clean_vote_values(confidence, comment)
    old = {"slot": vote.chosen_slot, "confidence": vote.confidence, "comment": vote.comment}
    vote.chosen_slot, vote.no_preference = k or None, k == 0
    vote.confidence, vote.comment, vote.answered_at = confidence, comment, now or utcnow()
    session.flush()
    audit.record(session, audit.VOTE_CHANGED, reader_id=rid, study_id=study.id, at=now,
                 detail={"query_id": q.id, "old": old, "new": {"slot": k, "confidence": confidence, "comment": comment}})
    return VoteReceipt(query_token=q.token, slot=k)


# -- researcher side -----------------------------------------------------------------------------------------


def query_slot_methods(session: Session, query_id: int) -> list[str]:
    """The method shown in each slot of a query, in slot order. Researcher / simulation use only: never send
    this to a reader."""
    return list(
        session.scalars(
            select(Rendition.method)
            .join(QuerySlot, QuerySlot.rendition_id == Rendition.id)
            .where(QuerySlot.query_id == query_id)
            .order_by(QuerySlot.slot)
        )
    )


def query_id_for_token(session: Session, query_token: str) -> int:
    """The database id behind a query token (researcher / simulation use)."""
    qid = session.scalar(select(Query.id).where(Query.token == query_token))
    if qid is None:
        raise NotFoundError("no such query")
    return int(qid)


__all__ = [
    "NO_PREFERENCE", "Progress", "QueryView", "VoteReceipt", "change_last_vote", "get_query", "next_query", "progress",
    "query_id_for_token", "query_slot_methods", "rendition_png", "submit_vote", "undo_last_vote",
]
