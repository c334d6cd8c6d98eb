"""Integrity under concurrency and crashes, on SQLite and PostgreSQL.

* 20 concurrent readers x 50 votes each, as threads and as separate processes, with retried submits:
  exactly 1,000 votes stored, none lost, none doubled.
* A process killed in the middle of a vote (and one killed at a random moment) leaves the database
  consistent, and the reader resumes at the next unanswered query.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import sqlite3
import threading
import time
from typing import Any

import pytest
from sqlalchemy import func, select

from study import audit
from study.db import make_engine, session_factory
from study.models import AuditEvent, Query, Vote
from study.voting import next_query, progress, submit_vote

N_READERS, N_VOTES = 20, 50
READERS = tuple(f"reader{i:02d}" for i in range(N_READERS))


def _cast_all(url: str, reader_id: int, retry_every: int = 7, limit: int | None = None) -> int:
    """Vote through one reader's queries (each submit retried now and then, as a client would)."""
    engine = make_engine(url) if url.startswith("sqlite") else make_engine(url, pool_size=1, pool_pre_ping=False)
    factory = session_factory(engine)
    n = 0
    try:
        while limit is None or n < limit:
            with factory.begin() as s:
                view = next_query(s, reader_id)
            if view is None:
                break
            slot = 1 + (reader_id + n) % view.n_slots
            with factory.begin() as s:
                submit_vote(s, reader_id, view.query_token, slot, confidence=1 + n % 5)
            if n % retry_every == 0:  # the same submit again: must not double the vote
                with factory.begin() as s:
                    assert submit_vote(s, reader_id, view.query_token, slot).duplicate
            n += 1
    finally:
        engine.dispose()
    return n


def _worker(url: str, reader_id: int) -> None:
    os._exit(0 if _cast_all(url, reader_id) == N_VOTES else 3)


def _check_complete(factory: Any, built: Any) -> None:
    with factory.begin() as s:
        assert s.scalar(select(func.count()).select_from(Vote)) == N_READERS * N_VOTES
        per_query = s.execute(select(Vote.query_id, func.count()).group_by(Vote.query_id)).all()
        assert len(per_query) == N_READERS * N_VOTES and all(c == 1 for _, c in per_query)
        n_audit = s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == audit.VOTE))
        assert n_audit == N_READERS * N_VOTES
        for rid in built.readers.values():
            p = progress(s, rid)
            assert (p.answered, p.total) == (N_VOTES, N_VOTES)


@pytest.fixture
def big_study(factory: Any, make_study: Any) -> Any:
    return make_study(factory, readers=READERS, n_cases=N_VOTES, name="integrity")


def test_concurrent_readers_threads(factory: Any, big_study: Any, db_url: str) -> None:
    errors: list[BaseException] = []

    def run(rid: int) -> None:
        try:
            assert _cast_all(db_url, rid) == N_VOTES
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(rid,)) for rid in big_study.readers.values()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors[0]
    _check_complete(factory, big_study)


def test_concurrent_readers_processes(factory: Any, big_study: Any, db_url: str) -> None:
    factory.kw["bind"].dispose()  # no inherited connections in the children
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_worker, args=(db_url, rid)) for rid in big_study.readers.values()]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * N_READERS
    _check_complete(factory, big_study)


# -- killed mid-vote -----------------------------------------------------------------------------------------


def _vote_then_die(url: str, reader_id: int, before: int) -> None:
    """Cast ``before`` votes, then die (SIGKILL) inside the next vote's transaction, after its writes."""
    _cast_all(url, reader_id, retry_every=10**9, limit=before)
    factory = session_factory(make_engine(url))
    with factory.begin() as s:
        view = next_query(s, reader_id)
    with factory.begin() as s:
        submit_vote(s, reader_id, view.query_token, 1)
        s.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def _vote_forever(url: str, reader_id: int) -> None:
    _cast_all(url, reader_id, retry_every=3)
    os._exit(0)


def _assert_consistent(factory: Any, db_url: str, reader_id: int) -> int:
    """Votes and their audit entries agree, answered queries form a prefix; returns the votes stored."""
    if db_url.startswith("sqlite"):
        con = sqlite3.connect(db_url.removeprefix("sqlite:///"))
        try:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        finally:
            con.close()
    with factory.begin() as s:
        answered = s.scalars(select(Query.position).join(Vote, Vote.query_id == Query.id)
                             .where(Query.reader_id == reader_id).order_by(Query.position)).all()
        n_audit = s.scalar(select(func.count()).select_from(AuditEvent)
                           .where(AuditEvent.action == audit.VOTE, AuditEvent.reader_id == reader_id))
        assert list(answered) == list(range(len(answered)))
        assert n_audit == len(answered)
        view = next_query(s, reader_id)
        pos = s.scalar(select(Query.position).where(Query.token == view.query_token)) if view else None
        assert pos == (len(answered) if view else None)
    return len(answered)


def test_process_killed_mid_vote(factory: Any, make_study: Any, db_url: str) -> None:
    built = make_study(factory, readers=("a",), n_cases=6)
    rid = built.readers["a"]
    factory.kw["bind"].dispose()
    proc = mp.get_context("fork").Process(target=_vote_then_die, args=(db_url, rid, 3))
    proc.start()
    proc.join(timeout=120)
    assert proc.exitcode == -signal.SIGKILL
    assert _assert_consistent(factory, db_url, rid) == 3
    assert _cast_all(db_url, rid) == 3  # the reader resumes at the 4th query and finishes
    assert _assert_consistent(factory, db_url, rid) == 6


def test_process_killed_at_a_random_moment(factory: Any, make_study: Any, db_url: str) -> None:
    built = make_study(factory, readers=("a",), n_cases=60)
    rid = built.readers["a"]
    target = random.randint(3, 30)  # kill once this many votes are in: somewhere in the middle of a cycle
    factory.kw["bind"].dispose()
    proc = mp.get_context("fork").Process(target=_vote_forever, args=(db_url, rid))
    proc.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.is_alive():
        with factory.begin() as s:
            if s.scalar(select(func.count()).select_from(Vote)) >= target:
                break
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(timeout=60)
    factory.kw["bind"].dispose()
    stored = _assert_consistent(factory, db_url, rid)
    assert target <= stored < 60
    assert _cast_all(db_url, rid) == 60 - stored
    assert _assert_consistent(factory, db_url, rid) == 60
