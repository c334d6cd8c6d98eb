"""Sign-in and role gating: who is signed in (kept in the Streamlit session), which pages each role gets.

Sign-in checks the access code against its salted hash in the study database (:func:`study.accounts.authenticate`),
after the rate limit (:func:`study.accounts.sign_in_allowed`, counted per client address from the audit log).
Every attempt is audited, refused ones included. A successful sign-in opens a *sitting*: votes cast in it can
be undone within it.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st
from sqlalchemy.orm import Session, sessionmaker

from study import audit
from study.accounts import authenticate, sign_in_allowed, start_sitting
from study.errors import StudyError

from .demo_db import resolve_alias

USER_KEY = "r2c_user"
RATE_LIMITED = "sign_in_rate_limited"
ROLES = ("reader", "researcher", "admin")


@dataclass(frozen=True)
class User:
    """A signed-in account."""

    id: int
    name: str
    role: str
    sitting_id: int


@dataclass(frozen=True)
class SignInResult:
    user: User | None
    message: str = ""


def sign_in(factory: sessionmaker[Session], code: str, client_key: str | None) -> SignInResult:
    """Check an access code (demo aliases resolved in the demo database only); audited either way."""
    if not str(code or "").strip():
        return SignInResult(None, "Enter your access code.")
    try:
        with factory.begin() as session:
            if not sign_in_allowed(session, client_key):
                audit.record(session, RATE_LIMITED, client_key=client_key)
                return SignInResult(None, "Too many failed attempts from this address. Wait 10 minutes and try again.")
            reader = authenticate(session, resolve_alias(session, code), client_key=client_key)
            if reader is None:
                return SignInResult(None, "That access code is not valid (or the account is disabled).")
            sitting = start_sitting(session, reader, client_key=client_key)
            return SignInResult(User(id=reader.id, name=reader.name, role=reader.role, sitting_id=sitting.id))
    except StudyError as exc:
        return SignInResult(None, str(exc))


def client_key() -> str:
    """The client's address as the rate-limit key (``unknown`` when Streamlit does not know it)."""
    try:
        ip = st.context.ip_address
    except Exception:  # pragma: no cover - outside a script run
        ip = None
    return f"ip:{ip}" if isinstance(ip, str) and ip else "ip:unknown"


def current_user() -> User | None:
    user = st.session_state.get(USER_KEY)
    return user if isinstance(user, User) else None


def set_user(user: User) -> None:
    st.session_state[USER_KEY] = user


def sign_out() -> None:
    """Forget the signed-in account and everything cached for it in this session."""
    for key in list(st.session_state.keys()):
        del st.session_state[key]


def require_role(*roles: str) -> User:
    """The signed-in user when their role is one of ``roles``; otherwise stop the page with a message."""
    user = current_user()
    if user is None:
        st.warning("Please sign in first.")
        st.stop()
    if user.role not in roles:
        st.error("This page is not available for your role.")
        st.stop()
    return user
