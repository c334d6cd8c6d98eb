"""The append-only audit log: one helper to write entries, and the action names used across the package.

The table itself refuses UPDATE and DELETE (database triggers, see the initial migration)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from .models import AuditEvent, utcnow

SIGN_IN_OK = "sign_in_ok"
SIGN_IN_FAILED = "sign_in_failed"
READER_ADDED = "reader_added"
CODE_RESET = "code_reset"
READER_CHANGED = "reader_changed"
STUDY_CREATED = "study_created"
RENDITIONS_BUILT = "renditions_built"
READERS_ASSIGNED = "readers_assigned"
STUDY_STATUS = "study_status"
VOTE = "vote"
VOTE_UNDONE = "vote_undone"
VOTE_CHANGED = "vote_changed"
EXPORT = "export"
SIGN_IN_LOCKED = "sign_in_rate_limited"  # one row per lockout (address or account), not per refused try
LOCKOUT_LIFTED = "lockout_lifted"
#: marks the auto-created demo database (fixed, publicly known demo codes): no real study may live there
DEMO_DATABASE = "demo_database"

_INSERT = AuditEvent.__table__.insert()


def record(
    session: Session,
    action: str,
    *,
    reader_id: int | None = None,
    study_id: int | None = None,
    client_key: str | None = None,
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> None:
    """Append one audit entry (written now, inside the caller's transaction; pending objects are flushed first
    so that the entry may refer to them)."""
    if session.new or session.dirty or session.deleted:
        session.flush()
    session.execute(
        _INSERT,
        {
            "at": at or utcnow(),
            "action": action,
            "reader_id": reader_id,
            "study_id": study_id,
            "client_key": client_key[:200] if client_key else None,
            "detail": detail or {},
        },
    )


def is_demo_database(session: Session) -> bool:
    """Whether this database is the auto-created demo database (it carries the :data:`DEMO_DATABASE` entry)."""
    from sqlalchemy import select

    return session.scalar(select(AuditEvent.id).where(AuditEvent.action == DEMO_DATABASE).limit(1)) is not None
