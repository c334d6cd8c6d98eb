"""Votes from the browser's queue: requests applied exactly once, by key, and the queries a browser may hold ahead.

The voting page keeps the reader's next queries in the browser and shows the next one the instant a vote is
cast; the vote itself travels to the server afterwards. Until the server has acknowledged it, the browser keeps
every request (a vote or an undo) in a queue that survives a reload, and sends the whole queue again whenever it
talks to the server. This module is the server side of that contract:

* :func:`parse_requests` checks the raw list a browser sent (shape, sizes, types; at most :data:`MAX_REQUESTS`),
  so nothing a browser sends reaches the database unchecked.
* :func:`apply_requests` applies them **in order**, each in its own transaction, each **once**: the outcome is
  stored under the request's key (``vote_requests``, unique per reader), and a request whose key is already
  there is answered from it without being applied again. A vote goes through :func:`study.voting.submit_vote`
  (all of its rules hold: the reader's current query only, an open study, the sitting); an undo names the key of
  the vote it withdraws and goes through :func:`study.voting.undo_last_vote` (only the reader's latest vote, only
  in the sitting that cast it). A refusal (:class:`~study.errors.VoteRefused`, :class:`~study.errors.NotFoundError`)
  is an outcome like any other and is stored; a database that cannot be used (locked, unreachable) stops the
  batch with nothing stored for the remaining requests, which the browser then sends again.
* :func:`upcoming` lists the reader's current query and the ones after it (what the browser may prefetch): the
  same :class:`~study.voting.QueryView` the page shows, so prefetched queries carry no more than a shown one.

Nothing here trusts the browser for who the reader is: the caller passes the signed-in reader and sitting.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from . import voting
from .errors import DatabaseError, NotFoundError, VoteRefused
from .models import Query, Study, Vote, VoteRequest, utcnow

#: the most requests one message may carry (a browser holds a handful; more is a broken or hostile client)
MAX_REQUESTS = 200
#: request keys: what ``crypto.randomUUID()`` or a URL-safe token produces
KEY_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
#: a reader's think time is taken from the browser (the server may see the vote much later); capped here
MAX_DWELL_S = 6 * 3600.0
MAX_SLOTS = 20


class RequestError(VoteRefused):
    """A request the browser sent in the wrong shape (not applied; refused by its key when it has one)."""


@dataclass(frozen=True)
class Request:
    """One checked request: ``kind`` "vote" (``query_token``, ``slot`` (0: "no preference", sent as ``"none"``),
    confidence, comment, ``dwell_s``) or "undo" (``target``: the key of the vote to withdraw)."""

    key: str
    kind: str
    query_token: str = ""
    slot: int = 0
    confidence: int | None = None
    comment: str | None = None
    dwell_s: float | None = None
    target: str = ""


@dataclass(frozen=True)
class Ack:
    """The server's answer to one request: ``outcome`` is one of ``recorded``, ``duplicate`` (the same vote was
    already stored), ``undone``, ``nothing`` (an undo whose vote is not there) or ``refused`` (``message`` says
    why). ``query_token`` is the query the request was about (the browser shows it again after an undo)."""

    key: str
    outcome: str
    message: str = ""
    query_token: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"key": self.key, "outcome": self.outcome, "message": self.message, "query_token": self.query_token}


def _key(raw: Any, what: str = "key") -> str:
    if not isinstance(raw, str) or not KEY_RE.match(raw):
        raise RequestError(f"a request {what} is 8 to 64 letters, digits, '-' or '_'")
    return raw


def _int(raw: Any, lo: int, hi: int, what: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not lo <= raw <= hi:
        raise RequestError(f"{what} must be a whole number from {lo} to {hi}")
    return raw


def parse_request(raw: Any) -> Request:
    """One request from its JSON form (raises :class:`RequestError`)."""
    if not isinstance(raw, dict):
        raise RequestError("a request is an object")
    key = _key(raw.get("key"))
    kind = raw.get("kind")
    if kind == "undo":
        return Request(key=key, kind="undo", target=_key(raw.get("target"), "target"))
    if kind != "vote":
        raise RequestError("a request is a vote or an undo")
    token = raw.get("query")
    if not isinstance(token, str) or not 1 <= len(token) <= 64:
        raise RequestError("a vote names its query")
    confidence = raw.get("confidence")
    if confidence is not None:
        confidence = _int(confidence, 1, 5, "confidence")
    comment = raw.get("comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > voting.MAX_COMMENT):
        raise RequestError(f"a comment is text of at most {voting.MAX_COMMENT} characters")
    dwell = raw.get("dwell_ms")
    dwell_s = None if dwell is None else _int(dwell, 0, int(MAX_DWELL_S * 1000), "dwell_ms") / 1000.0
    slot = 0 if raw.get("slot") == voting.NO_PREFERENCE else _int(raw.get("slot"), 1, MAX_SLOTS, "slot")
    return Request(key=key, kind="vote", query_token=token, slot=slot,
                   confidence=confidence, comment=comment or None, dwell_s=dwell_s)


def parse_requests(raw: Any) -> tuple[list[Request], list[Ack]]:
    """The well-formed requests of a browser's list, and a ``refused`` ack for each malformed one that has a
    usable key (a malformed one without a key cannot be acknowledged and is dropped)."""
    if raw is None:
        return [], []
    if not isinstance(raw, list):
        raise RequestError("the vote queue is a list")
    if len(raw) > MAX_REQUESTS:
        raise RequestError(f"the vote queue holds at most {MAX_REQUESTS} requests")
    good: list[Request] = []
    bad: list[Ack] = []
    seen: set[str] = set()
    for item in raw:
        try:
            req = parse_request(item)
        except RequestError as exc:
            key = item.get("key") if isinstance(item, dict) else None
            if isinstance(key, str) and KEY_RE.match(key) and key not in seen:
                seen.add(key)
                bad.append(Ack(key=key, outcome="refused", message=str(exc)))
            continue
        if req.key not in seen:  # the same key twice in one message: the first one counts
            seen.add(req.key)
            good.append(req)
    return good, bad


# -- applying requests ---------------------------------------------------------------------------------------


def _stored(session: Session, reader_id: int, key: str) -> VoteRequest | None:
    return session.scalar(select(VoteRequest).where(VoteRequest.reader_id == reader_id, VoteRequest.key == key))


def _token(session: Session, query_id: int | None) -> str:
    return "" if query_id is None else str(session.scalar(select(Query.token).where(Query.id == query_id)) or "")


def _apply_vote(session: Session, reader_id: int, req: Request, sitting_id: int | None,
                now: datetime) -> tuple[str, int | None, str]:
    qid = session.scalar(select(Query.id).where(Query.token == req.query_token, Query.reader_id == reader_id))
    try:
        slot = voting.NO_PREFERENCE if req.slot == 0 else req.slot
        receipt = voting.submit_vote(session, reader_id, req.query_token, slot, confidence=req.confidence,
                                     comment=req.comment, sitting_id=sitting_id, now=now, dwell_s=req.dwell_s)
    except (VoteRefused, NotFoundError) as exc:
        return "refused", qid, str(exc)
    return ("duplicate" if receipt.duplicate else "recorded"), qid, ""


def _apply_undo(session: Session, reader_id: int, req: Request, sitting_id: int | None,
                now: datetime) -> tuple[str, int | None, str]:
    target = _stored(session, reader_id, req.target)
    if target is None or target.kind != "vote":
        return "nothing", None, "there is no such vote to undo"
    if target.outcome not in ("recorded", "duplicate") or target.query_id is None:
        return "nothing", target.query_id, "that vote was not recorded"
    vote_id = session.scalar(select(Vote.id).where(Vote.query_id == target.query_id))
    if vote_id is None:
        return "nothing", target.query_id, "that vote was already withdrawn"
    latest = session.scalar(
        select(Vote.id).join(Query, Query.id == Vote.query_id).where(Query.reader_id == reader_id)
        .order_by(Vote.id.desc()).limit(1))
    if latest != vote_id:
        return "refused", target.query_id, "only your latest vote can be undone"
    if sitting_id is None:
        return "refused", target.query_id, "only a vote cast in this sitting can be undone"
    try:
        voting.undo_last_vote(session, reader_id, sitting_id=sitting_id, now=now)
    except (VoteRefused, NotFoundError) as exc:
        return "refused", target.query_id, str(exc)
    return "undone", target.query_id, ""


def apply_request(session: Session, reader_id: int, req: Request, *, sitting_id: int | None,
                  now: datetime | None = None) -> Ack:
    """Apply one request once (its outcome is stored under its key; a stored key is answered from the log)."""
    done = _stored(session, reader_id, req.key)
    if done is not None:
        if done.kind != req.kind:
            return Ack(req.key, "refused", "this request key was used for another request")
        return Ack(req.key, done.outcome, done.message or "", _token(session, done.query_id))
    now = now or utcnow()
    apply = _apply_vote if req.kind == "vote" else _apply_undo
    outcome, qid, message = apply(session, reader_id, req, sitting_id, now)
    session.add(VoteRequest(reader_id=reader_id, key=req.key, kind=req.kind, query_id=qid, outcome=outcome,
                            message=message or None, at=now))
    session.flush()
    return Ack(req.key, outcome, message, _token(session, qid))


def apply_requests(factory: sessionmaker[Session], reader_id: int, requests: Sequence[Request], *,
                   sitting_id: int | None, now: Callable[[], datetime] = utcnow) -> list[Ack]:
    """Apply the requests in order, each in its own transaction; stops at a database that cannot be used (the
    requests not acknowledged are sent again by the browser). Two servers applying the same key at once: the
    unique key makes one of them fail, and that one answers from the other's stored outcome."""
    acks: list[Ack] = []
    for req in requests:
        for attempt in range(2):
            try:
                with factory.begin() as session:
                    acks.append(apply_request(session, reader_id, req, sitting_id=sitting_id, now=now()))
                break
            except IntegrityError:
                if attempt:
                    return acks
            except (DatabaseError, OperationalError):  # locked or gone: the browser sends the rest again
                return acks
    return acks


# -- what the browser may hold ahead ---------------------------------------------------------------------------


def upcoming(session: Session, reader_id: int, *, count: int, sitting_id: int | None = None,
             after: Sequence[str] = ()) -> list[voting.QueryView]:
    """The reader's current query (marked shown, as :func:`study.voting.next_query` does) and up to ``count - 1``
    unanswered queries after it, in the order the reader will get them (study, then position; practice first).
    Queries whose tokens are in ``after`` (votes the browser holds but the server has not applied yet) are
    skipped. Empty when the reader is done."""
    rows = session.execute(
        select(Query.token).join(Study, Study.id == Query.study_id)
        .where(Query.reader_id == reader_id, Study.status == "open", voting._unanswered(Query))
        .order_by(Query.study_id, Query.position).limit(int(count) + len(after))
    ).scalars().all()
    skip = set(after)
    tokens = [t for t in rows if t not in skip][: int(count)]
    views = []
    for i, token in enumerate(tokens):
        views.append(voting.get_query(session, reader_id, token, sitting_id=sitting_id, mark_shown=i == 0))
    return views


__all__ = [
    "MAX_REQUESTS",
    "Ack",
    "Request",
    "RequestError",
    "apply_request",
    "apply_requests",
    "parse_request",
    "parse_requests",
    "upcoming",
]
