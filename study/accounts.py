"""Readers and sign-in: adding readers (the plain access code is returned once), code resets, authentication
with an audited success / failure, a rate limit counted from the audit log, and sittings."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import audit
from .lookup import get_reader
from .errors import DuplicateReaderError, StudyError
from .models import READER_ROLES, AuditEvent, Reader, Sitting, utcnow
from .security import burn_time, hash_secret, new_access_code, split_code, verify_secret

log = logging.getLogger(__name__)

#: Sign-in rate limit: at most this many failures per client key within the window.
MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=10)


def _clean_name(name: str) -> str:
    clean = " ".join(str(name).split())
    if not clean or len(clean) > 200 or any(ord(ch) < 32 for ch in clean):
        raise StudyError("a reader name must be 1 to 200 printable characters")
    return clean


def _free_selector(session: Session) -> tuple[str, str, str]:
    for _ in range(20):
        display, selector, secret = new_access_code()
        if session.scalar(select(Reader.id).where(Reader.code_selector == selector)) is None:
            return display, selector, secret
    raise StudyError("could not draw a free access code; try again")  # pragma: no cover - 1 in 10^100


def add_reader(session: Session, name: str, role: str = "reader") -> tuple[Reader, str]:
    """Add a reader; returns the reader and their plain access code (shown once, stored only hashed)."""
    name = _clean_name(name)
    if role not in READER_ROLES:
        raise StudyError(f"unknown role {role!r} (expected {', '.join(READER_ROLES)})")
    if session.scalar(select(Reader.id).where(Reader.name == name)) is not None:
        raise DuplicateReaderError(f"a reader named {name!r} already exists")
    display, selector, secret = _free_selector(session)
    reader = Reader(name=name, role=role, code_selector=selector, code_hash=hash_secret(secret), active=True)
    try:
        with session.begin_nested():
            session.add(reader)
            session.flush()
    except IntegrityError as exc:
        raise DuplicateReaderError(f"a reader named {name!r} already exists") from exc
    audit.record(session, audit.READER_ADDED, reader_id=reader.id, detail={"name": name, "role": role})
    return reader, display


def reset_code(session: Session, name: str | int) -> str:
    """Give a reader a new access code (the old one stops working); returns the plain code once."""
    reader = get_reader(session, name)
    display, selector, secret = _free_selector(session)
    reader.code_selector, reader.code_hash = selector, hash_secret(secret)
    audit.record(session, audit.CODE_RESET, reader_id=reader.id)
    return display


def set_active(session: Session, name: str | int, active: bool) -> Reader:
    """Enable or disable a reader's sign-in (audited as a change)."""
    reader = get_reader(session, name)
    reader.active = bool(active)
    audit.record(session, audit.READER_CHANGED, reader_id=reader.id,
                 detail={"active": reader.active})
    return reader


def authenticate(session: Session, code: str, *, client_key: str | None = None,
                 now: datetime | None = None) -> Reader | None:
    """The active reader whose access code this is, or None. Both outcomes are written to the audit log
    (never the code itself). Callers check :func:`sign_in_allowed` first."""
    parts = split_code(code or "")
    reader = None
    if parts is not None:
        selector, secret = parts
        candidate = session.scalar(select(Reader).where(Reader.code_selector == selector))
        if candidate is None:
            burn_time(secret)
        elif verify_secret(secret, candidate.code_hash) and candidate.active:
            reader = candidate
    if reader is None:
        audit.record(session, audit.SIGN_IN_FAILED, client_key=client_key, at=now,
                     detail={"malformed": parts is None})
    else:
        audit.record(session, audit.SIGN_IN_OK, reader_id=reader.id, client_key=client_key, at=now)
    return reader


def sign_in_allowed(session: Session, client_key: str | None, now: datetime | None = None, *,
                    max_failures: int = MAX_FAILURES, window: timedelta = FAILURE_WINDOW) -> bool:
    """Whether ``client_key`` may try to sign in: fewer than ``max_failures`` failures in the last ``window``."""
    now = now or utcnow()
    key = client_key[:200] if client_key else None
    cond = AuditEvent.client_key.is_(None) if key is None else AuditEvent.client_key == key
    failures = session.scalar(
        select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == audit.SIGN_IN_FAILED, cond, AuditEvent.at > now - window, AuditEvent.at <= now
        )
    )
    return int(failures or 0) < max_failures


def start_sitting(session: Session, reader: Reader | int, *, client_key: str | None = None,
                  now: datetime | None = None) -> Sitting:
    """Open a sitting for a signed-in reader; votes cast in it can be undone or changed within it."""
    reader = get_reader(session, reader)
    sitting = Sitting(reader_id=reader.id, started_at=now or utcnow(), client_key=client_key[:200] if client_key else None)
    session.add(sitting)
    session.flush()
    return sitting
