"""Readers and sign-in: adding readers (the plain access code is returned once), code resets, authentication
with an audited success / failure, a rate limit counted from the audit log, and sittings."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

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


@dataclass(frozen=True)
class CodeLookup:
    """What a sign-in needs from the database before the (slow, CPU-bound) hash check: read in one short read-only
    transaction, checked with :func:`check_code` outside any transaction, recorded with :func:`record_sign_in`."""

    malformed: bool
    secret: str = ""
    reader_id: int | None = None
    code_hash: str = ""
    active: bool = False


def lookup_code(session: Session, code: str) -> CodeLookup:
    """Read the account an access code names (no writes, no hashing)."""
    parts = split_code(code or "")
    if parts is None:
        return CodeLookup(malformed=True)
    selector, secret = parts
    r = session.execute(select(Reader.id, Reader.code_hash, Reader.active).where(Reader.code_selector == selector)).first()
    if r is None:
        return CodeLookup(malformed=False, secret=secret)
    return CodeLookup(malformed=False, secret=secret, reader_id=int(r.id), code_hash=r.code_hash, active=bool(r.active))


def check_code(found: CodeLookup) -> bool:
    """The constant-time scrypt check of :func:`lookup_code`'s result; no database. Unknown selectors burn the
    same time, so timing does not tell which selectors exist."""
    if found.malformed:
        return False
    if found.reader_id is None:
        burn_time(found.secret)
        return False
    return verify_secret(found.secret, found.code_hash) and found.active


def record_sign_in(session: Session, found: CodeLookup, ok: bool, *, client_key: str | None = None,
                   now: datetime | None = None) -> Reader | None:
    """Write the audit row of a checked sign-in and return the reader, re-reading the account in this (short)
    write transaction: a code reset or a disabled account between the check and now refuses the sign-in."""
    reader = None
    if ok and found.reader_id is not None:
        cand = session.get(Reader, found.reader_id)
        if cand is not None and cand.active and cand.code_hash == found.code_hash:
            reader = cand
    if reader is None:  # the account a well-formed code names is recorded, so that its own failures can be counted
        audit.record(session, audit.SIGN_IN_FAILED, client_key=client_key, reader_id=found.reader_id, at=now,
                     detail={"malformed": found.malformed})
    else:
        audit.record(session, audit.SIGN_IN_OK, reader_id=reader.id, client_key=client_key, at=now)
    return reader


def authenticate(session: Session, code: str, *, client_key: str | None = None,
                 now: datetime | None = None) -> Reader | None:
    """The active reader whose access code this is, or None. Both outcomes are written to the audit log
    (never the code itself). Callers check :func:`sign_in_allowed` first."""
    found = lookup_code(session, code)
    return record_sign_in(session, found, check_code(found), client_key=client_key, now=now)


def account_fingerprint(reader: Reader) -> str:
    """A short digest of what a signed-in session must still match: role, active flag and the code (a reset or a
    role change gives another fingerprint, so open sessions of that account end at their next action)."""
    raw = f"{reader.role}|{bool(reader.active)}|{reader.code_selector}|{reader.code_hash}"
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:24]


def current_fingerprint(session: Session, reader_id: int) -> str | None:
    """:func:`account_fingerprint` of the account now, or None when it is gone or disabled."""
    reader = session.get(Reader, int(reader_id))
    if reader is None or not reader.active:
        return None
    return account_fingerprint(reader)


def _key_cond(client_key: str | None):
    key = client_key[:200] if client_key else None
    return AuditEvent.client_key.is_(None) if key is None else AuditEvent.client_key == key


def _since(session: Session, cond, now: datetime, window: timedelta) -> datetime:
    """The start of the counting window: ``now - window``, or the last lift of this lockout (or of all) if later."""
    lifted = session.scalar(select(func.max(AuditEvent.at)).where(
        AuditEvent.action == audit.LOCKOUT_LIFTED, AuditEvent.at <= now,
        cond | (AuditEvent.client_key.is_(None) & AuditEvent.reader_id.is_(None))))
    start = now - window
    return max(start, _aware(lifted)) if lifted is not None else start


def _aware(t: datetime) -> datetime:
    from datetime import timezone

    return t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)


def _failures(session: Session, cond, now: datetime, window: timedelta) -> int:
    since = _since(session, cond, now, window)
    return int(session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == audit.SIGN_IN_FAILED, cond, AuditEvent.at > since, AuditEvent.at <= now)) or 0)


def sign_in_allowed(session: Session, client_key: str | None, now: datetime | None = None, *,
                    max_failures: int = MAX_FAILURES, window: timedelta = FAILURE_WINDOW, pending: int = 0) -> bool:
    """Whether ``client_key`` may try to sign in: fewer than ``max_failures`` failures in the last ``window``
    (counted since an administrator last lifted its lockout, if that is later). ``pending``: attempts from this key
    being checked right now, counted as failures (the app's sign-in does, so simultaneous tries cannot overrun)."""
    now = now or utcnow()
    return _failures(session, _key_cond(client_key), now, window) + max(0, int(pending)) < max_failures


def account_locked(session: Session, reader_id: int | None, now: datetime | None = None, *,
                   max_failures: int = MAX_FAILURES, window: timedelta = FAILURE_WINDOW, pending: int = 0) -> bool:
    """Whether the account a code's selector names had ``max_failures`` wrong secrets in the last ``window``,
    from any address (guessing one account's secret through many addresses or a shared proxy is stopped here).
    ``pending``: attempts on this account being checked right now, counted as failures (see :func:`sign_in_allowed`)."""
    if reader_id is None:
        return False
    now = now or utcnow()
    return _failures(session, AuditEvent.reader_id == int(reader_id), now, window) + max(0, int(pending)) >= max_failures


def record_lockout(session: Session, client_key: str | None, reader_id: int | None = None, now: datetime | None = None, *,
                   window: timedelta = FAILURE_WINDOW) -> bool:
    """Write the audit row of a lockout once per lockout (not once per refused try); True when written."""
    now = now or utcnow()
    cond = AuditEvent.reader_id == int(reader_id) if reader_id is not None else _key_cond(client_key)
    since = _since(session, cond, now, window)
    exists = session.scalar(select(AuditEvent.id).where(
        AuditEvent.action == audit.SIGN_IN_LOCKED, cond, AuditEvent.at > since, AuditEvent.at <= now).limit(1))
    if exists is not None:
        return False
    audit.record(session, audit.SIGN_IN_LOCKED, client_key=client_key, reader_id=reader_id, at=now,
                 detail={"by": "account" if reader_id is not None else "address"})
    return True


def lockouts(session: Session, now: datetime | None = None, *, max_failures: int = MAX_FAILURES,
             window: timedelta = FAILURE_WINDOW) -> list[dict[str, Any]]:
    """The lockouts in force now: ``{"kind": "address"|"account", "key": client key or account name, ...}``."""
    now = now or utcnow()
    rows = session.execute(select(AuditEvent.client_key, AuditEvent.reader_id).where(
        AuditEvent.action == audit.SIGN_IN_LOCKED, AuditEvent.at > now - window, AuditEvent.at <= now).distinct()).all()
    out = []
    for key, rid in rows:
        if rid is not None:
            if account_locked(session, rid, now, max_failures=max_failures, window=window):
                out.append({"kind": "account", "key": get_reader(session, rid).name, "reader_id": rid, "client_key": None})
        elif not sign_in_allowed(session, key, now, max_failures=max_failures, window=window):
            out.append({"kind": "address", "key": key or "unknown", "reader_id": None, "client_key": key})
    return out


def lift_lockout(session: Session, *, client_key: str | None = None, reader_id: int | None = None, everything: bool = False,
                 actor: int | None = None, now: datetime | None = None) -> None:
    """Lift a lockout (one address, one account, or ``everything``): failures before now stop counting. Audited."""
    if not everything and client_key is None and reader_id is None:
        raise StudyError("say which lockout to lift (an address or an account), or everything")
    audit.record(session, audit.LOCKOUT_LIFTED, client_key=None if everything else client_key,
                 reader_id=None if everything else reader_id, at=now or utcnow(),
                 detail={"all": everything, "actor": actor})


def start_sitting(session: Session, reader: Reader | int, *, client_key: str | None = None,
                  now: datetime | None = None) -> Sitting:
    """Open a sitting for a signed-in reader; votes cast in it can be undone or changed within it."""
    reader = get_reader(session, reader)
    sitting = Sitting(reader_id=reader.id, started_at=now or utcnow(), client_key=client_key[:200] if client_key else None)
    session.add(sitting)
    session.flush()
    return sitting
