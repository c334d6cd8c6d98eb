"""Sign-in and role gating: who is signed in (kept in the Streamlit session), which pages each role gets.

Sign-in checks the access code against its salted hash in the study database, after the rate limit
(:func:`study.accounts.sign_in_allowed`, counted per client address from the audit log), in three steps so that
no transaction waits on the slow hash: a short read (rate limit, the account the code names), the scrypt check
outside any transaction, then a short write (the audit row, the sitting; the account re-read there). Every attempt
is audited, refused ones included. A successful sign-in opens a *sitting*: votes cast in it can be undone within it.

A signed-in session is re-checked against the database on every run (:func:`revalidate`): an account disabled,
given a new code or another role ends its open sessions at their next action, and a session idle for longer than
``R2C_SESSION_IDLE_MIN`` minutes (default 60) is signed out.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import streamlit as st
from sqlalchemy.orm import Session, sessionmaker

from study import audit
from study.accounts import (account_fingerprint, account_locked, check_code, current_fingerprint, lookup_code,
                            record_lockout, record_sign_in, sign_in_allowed, start_sitting)
from study.errors import StudyError

from .demo_db import resolve_alias

USER_KEY = "r2c_user"
SEEN_KEY = "r2c_last_seen"
ENDED_KEY = "r2c_session_ended"
RATE_LIMITED = audit.SIGN_IN_LOCKED
LOCKED_MESSAGE = "Too many failed attempts. Wait 10 minutes and try again, or ask the study's administrator."
ROLES = ("reader", "researcher", "admin")


@dataclass(frozen=True)
class User:
    """A signed-in account."""

    id: int
    name: str
    role: str
    sitting_id: int
    #: :func:`study.accounts.account_fingerprint` at sign-in (role, active, code): must still match on every run
    fingerprint: str = ""


@dataclass(frozen=True)
class SignInResult:
    user: User | None
    message: str = ""


def sign_in(factory: sessionmaker[Session], code: str, client_key: str | None) -> SignInResult:
    """Check an access code (demo aliases resolved in the demo database only); audited either way."""
    if not str(code or "").strip():
        return SignInResult(None, "Enter your access code.")
    try:
        with factory.begin() as session:  # a short read: no write lock, no hashing
            found = lookup_code(session, resolve_alias(session, code))
            by_address = not sign_in_allowed(session, client_key)
            by_account = account_locked(session, found.reader_id)
        if by_address or by_account:  # refused before any hashing; one audit row per lockout, not per try
            with factory.begin() as session:
                record_lockout(session, client_key, found.reader_id if by_account and not by_address else None)
            return SignInResult(None, LOCKED_MESSAGE)
        ok = check_code(found)  # scrypt, outside any transaction: a sign-in flood never holds up a vote
        with factory.begin() as session:  # a short write: the audit row and the sitting
            reader = record_sign_in(session, found, ok, client_key=client_key)
            if reader is None:
                return SignInResult(None, "That access code is not valid (or the account is disabled).")
            sitting = start_sitting(session, reader, client_key=client_key)
            return SignInResult(User(id=reader.id, name=reader.name, role=reader.role, sitting_id=sitting.id,
                                     fingerprint=account_fingerprint(reader)))
    except StudyError as exc:
        return SignInResult(None, str(exc))


def idle_limit_s() -> float:
    """``R2C_SESSION_IDLE_MIN`` (minutes, default 60) in seconds; 0 or less turns the idle sign-out off."""
    try:
        return 60.0 * float(os.environ.get("R2C_SESSION_IDLE_MIN", "60"))
    except ValueError:
        return 3600.0


def revalidate(factory: sessionmaker[Session] | None, now: float | None = None) -> str | None:
    """Re-check the signed-in account on this run; sign out and return the reason when the session must end.

    Ends the session when the account was disabled or deleted, got a new code or another role (its fingerprint
    changed), or when the session was idle longer than :func:`idle_limit_s`. Cheap: one primary-key read."""
    user = current_user()
    if user is None:
        return None
    now = time.time() if now is None else now
    last = st.session_state.get(SEEN_KEY)
    limit = idle_limit_s()
    reason = None
    if limit > 0 and isinstance(last, (int, float)) and now - last > limit:
        reason = f"You were signed out after {limit / 60:.0f} minutes without activity. Please sign in again."
    elif factory is not None:
        with factory.begin() as session:
            fp = current_fingerprint(session, user.id)
        if fp is None or (user.fingerprint and fp != user.fingerprint):
            reason = "Your account was changed by an administrator (disabled, new code or new role). Please sign in again."
    if reason:
        sign_out()
        st.session_state[ENDED_KEY] = reason
        return reason
    st.session_state[SEEN_KEY] = now
    return None


def trusted_proxies() -> set[str]:
    """``R2C_TRUSTED_PROXIES``: comma-separated addresses of reverse proxies whose ``X-Forwarded-For`` is believed
    (``127.0.0.1`` or ``::1`` for a proxy on this machine). Empty by default: forwarded headers are ignored."""
    return {p.strip() for p in os.environ.get("R2C_TRUSTED_PROXIES", "").split(",") if p.strip()}


LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def client_address(peer: str | None, forwarded_for: str | None, trusted: set[str]) -> str:
    """The client's address for the rate limit: the TCP peer (``None`` = loopback), unless the peer is a trusted
    proxy; then the right-most address in ``X-Forwarded-For`` that is not itself a trusted proxy (what a client
    writes into the header further left is never believed)."""
    def is_trusted(a: str) -> bool:
        return a in trusted or (a in LOOPBACK and bool(trusted & LOOPBACK))

    peer_name = peer or "127.0.0.1"
    if not is_trusted(peer_name) or not forwarded_for:
        return peer_name if peer else "local"
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if not is_trusted(hop):
            return hop
    return peer_name


def client_key() -> str:
    """The rate-limit key of this connection: ``ip:<address>`` (see :func:`client_address`)."""
    try:
        peer = st.context.ip_address
        forwarded = st.context.headers.get("X-Forwarded-For")
    except Exception:  # pragma: no cover - outside a script run
        peer, forwarded = None, None
    return f"ip:{client_address(peer if isinstance(peer, str) and peer else None, forwarded, trusted_proxies())}"


def current_user() -> User | None:
    user = st.session_state.get(USER_KEY)
    return user if isinstance(user, User) else None


def set_user(user: User) -> None:
    st.session_state[USER_KEY] = user
    st.session_state[SEEN_KEY] = time.time()


def sign_out() -> None:
    """Forget the signed-in account and everything cached for it in this session."""
    for key in list(st.session_state.keys()):
        del st.session_state[key]


def require_role(*roles: str) -> User:
    """The signed-in user when their role is one of ``roles``; otherwise stop the page with a message. The account
    is re-checked here too (:func:`revalidate`), so fragment reruns (the voting area) cannot outlive a change."""
    from . import services

    ended = revalidate(services.backend().factory)
    user = current_user()
    if user is None:
        st.warning(ended or "Please sign in first.")
        st.stop()
    if user.role not in roles:
        st.error("This page is not available for your role.")
        st.stop()
    return user
