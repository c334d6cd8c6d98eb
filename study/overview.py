"""Read-only overviews of a study database (studies, readers, a reader's upcoming query) for the app's admin page,
dashboard and voting page, so that pages never query the database themselves."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .models import Case, Query, Reader, Study, Vote

STUDY_COLUMNS = ["id", "name", "kind", "allocation", "status", "methods", "cases", "practice_cases", "readers",
                 "queries", "answered", "simulated"]
READER_COLUMNS = ["id", "name", "role", "active", "created", "votes"]


def studies(session: Session) -> pd.DataFrame:
    """One row per study with its case, reader, query and vote counts (practice queries included)."""
    cases = dict(session.execute(
        select(Case.study_id, func.count()).where(Case.role == "study").group_by(Case.study_id)).all())
    practice = dict(session.execute(
        select(Case.study_id, func.count()).where(Case.role == "practice").group_by(Case.study_id)).all())
    q = {sid: (int(r), int(n), int(a)) for sid, r, n, a in session.execute(
        select(Query.study_id, func.count(func.distinct(Query.reader_id)), func.count(Query.id), func.count(Vote.id))
        .outerjoin(Vote, Vote.query_id == Query.id).group_by(Query.study_id))}
    rows = []
    for s in session.scalars(select(Study).order_by(Study.id)):
        readers, queries, answered = q.get(s.id, (0, 0, 0))
        rows.append({"id": s.id, "name": s.name, "kind": s.kind, "allocation": s.allocation, "status": s.status,
                     "methods": len(s.methods), "cases": int(cases.get(s.id, 0)),
                     "practice_cases": int(practice.get(s.id, 0)), "readers": readers, "queries": queries,
                     "answered": answered, "simulated": s.simulated})
    return pd.DataFrame(rows, columns=STUDY_COLUMNS)


def readers(session: Session) -> pd.DataFrame:
    """One row per account (never its code or hash) with the number of votes cast."""
    votes = dict(session.execute(
        select(Query.reader_id, func.count(Vote.id)).join(Vote, Vote.query_id == Query.id).group_by(Query.reader_id)).all())
    rows = [{"id": r.id, "name": r.name, "role": r.role, "active": bool(r.active),
             "created": r.created_at.strftime("%Y-%m-%d %H:%M"), "votes": int(votes.get(r.id, 0))}
            for r in session.scalars(select(Reader).order_by(Reader.id))]
    return pd.DataFrame(rows, columns=READER_COLUMNS)


def study_methods(session: Session, study_id: int) -> list[str]:
    """The methods of a study, in its own order."""
    study = session.get(Study, int(study_id))
    return list(study.methods) if study is not None else []


def upcoming_query_token(session: Session, reader_id: int, current_token: str) -> str | None:
    """The token of the reader's next unanswered query after ``current_token`` in the same study (what the
    voting page shows after this vote, barring an undo), so its images can be sent to the browser ahead of time.
    None at the end of a study."""
    current = session.scalar(select(Query).where(Query.token == current_token, Query.reader_id == reader_id))
    if current is None:
        return None
    return session.scalar(
        select(Query.token)
        .outerjoin(Vote, Vote.query_id == Query.id)
        .where(Query.reader_id == reader_id, Query.study_id == current.study_id, Query.position > current.position,
               Vote.id.is_(None))
        .order_by(Query.position)
        .limit(1)
    )
