"""Sign-in and role gating: who is signed in (kept in the Streamlit session), which pages each role gets.

Sign-in checks the access code against its salted hash in the study database, after the rate limit
(:func:`study.accounts.sign_in_allowed`, counted per client address from the audit log), in three steps so that
no transaction waits on the slow hash: a short transaction that only reads (rate limit, the account the code
names; on SQLite it still takes the write lock for its few milliseconds, as every transaction of ``study.db``
does with ``BEGIN IMMEDIATE``), the scrypt check outside any transaction, then a short write (the audit row, the
sitting; the account re-read there). Every checked attempt is audited; a refusal by a lockout writes one audit row
per lockout. A successful sign-in opens a *sitting*: votes cast in it can be undone within it.

Attempts being checked count as failures of their address and account until their outcome is written, so
attempts arriving together cannot overrun :data:`study.accounts.MAX_FAILURES` (one over the limit is told to wait
a moment, :data:`BUSY_MESSAGE`), and at most :func:`hash_slots` scrypt checks (16 MiB each) run at once in the
server process; the others wait up to :data:`HASH_WAIT_S` seconds.

A signed-in session is re-checked against the database on every run (:func:`revalidate`): an account disabled,
given a new code or another role ends its open sessions at their next action, and a session idle for longer than
``R2C_SESSION_IDLE_MIN`` minutes (default 60) is signed out.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass

import streamlit as st
from sqlalchemy.orm import Session, sessionmaker

from study import audit
from study.accounts import (CodeLookup, account_fingerprint, account_locked, check_code, current_fingerprint,
                            lookup_code, record_lockout, record_sign_in, sign_in_allowed, start_sitting)
from study.errors import StudyError

from .demo_db import resolve_alias

USER_KEY = "r2c_user"
SEEN_KEY = "r2c_last_seen"
ENDED_KEY = "r2c_session_ended"
RATE_LIMITED = audit.SIGN_IN_LOCKED
LOCKED_MESSAGE = "Too many failed attempts. Wait 10 minutes and try again, or ask the study's administrator."
BUSY_MESSAGE = "Other sign-ins are being checked right now. Wait a moment and try again."
ROLES = ("reader", "researcher", "admin")
#: how long a sign-in waits for a free scrypt slot before it is told the server is busy
HASH_WAIT_S = 20.0

log = logging.getLogger(__name__)


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


def hash_slots() -> int:
    """``R2C_SIGN_IN_HASHES`` (default 2, 1 to 16): how many access-code checks (scrypt, 16 MiB and tens of
    milliseconds each) may run at once in this server process; read when the first sign-in is checked."""
    try:
        return min(16, max(1, int(os.environ.get("R2C_SIGN_IN_HASHES", "2"))))
    except ValueError:
        return 2


_GATE: list[threading.BoundedSemaphore] = []
_GATE_LOCK = threading.Lock()
#: attempts being checked now, per ("address", client key) and ("account", reader id): pending failures
_PENDING: Counter[tuple[str, object]] = Counter()
_PENDING_LOCK = threading.Lock()


def _hash_gate() -> threading.BoundedSemaphore:
    with _GATE_LOCK:
        if not _GATE:
            _GATE.append(threading.BoundedSemaphore(hash_slots()))
        return _GATE[0]


def _release(keys: list[tuple[str, object]]) -> None:
    with _PENDING_LOCK:
        _PENDING.subtract(keys)
        for k in keys:
            if _PENDING[k] <= 0:
                del _PENDING[k]


def sign_in(factory: sessionmaker[Session], code: str, client_key: str | None) -> SignInResult:
    """Check an access code (demo aliases resolved in the demo database only); audited either way."""
    if not str(code or "").strip():
        return SignInResult(None, "Enter your access code.")
    try:
        # The rate-limit check and the reservation of this attempt happen under one lock, so that attempts
        # arriving together count each other as pending failures (the limit is never overrun in this process).
        with _PENDING_LOCK:
            with factory.begin() as session:  # short, no hashing (on SQLite: BEGIN IMMEDIATE, see the module doc)
                found = lookup_code(session, resolve_alias(session, code))
                keys: list[tuple[str, object]] = [("address", client_key)]
                if found.reader_id is not None:
                    keys.append(("account", found.reader_id))
                by_address = not sign_in_allowed(session, client_key)
                by_account = account_locked(session, found.reader_id)
                busy = not (by_address or by_account) and (
                    not sign_in_allowed(session, client_key, pending=_PENDING[keys[0]])
                    or account_locked(session, found.reader_id, pending=_PENDING[keys[-1]]))
            if not (by_address or by_account or busy):
                _PENDING.update(keys)  # released below, once the outcome is in the audit log
        if by_address or by_account:  # refused before any hashing; one audit row per lockout, not per try
            with factory.begin() as session:
                record_lockout(session, client_key, found.reader_id if by_account and not by_address else None)
            return SignInResult(None, LOCKED_MESSAGE)
        if busy:  # were the attempts being checked now all wrong, this one would be over the limit: wait for them
            return SignInResult(None, BUSY_MESSAGE)
        try:
            return _check_and_record(factory, found, client_key)
        finally:
            _release(keys)
    except StudyError as exc:
        return SignInResult(None, str(exc))


def _check_and_record(factory: sessionmaker[Session], found: CodeLookup, client_key: str | None) -> SignInResult:
    """The scrypt check (at most :func:`hash_slots` at once, outside any transaction: a sign-in flood never holds
    up a vote), then a short write: the audit row and the sitting."""
    ok = False
    if not found.malformed:  # a malformed code needs no hashing
        gate = _hash_gate()
        if not gate.acquire(timeout=HASH_WAIT_S):
            return SignInResult(None, BUSY_MESSAGE)  # nothing was checked: not a failure
        try:
            ok = check_code(found)
        finally:
            gate.release()
    with factory.begin() as session:
        reader = record_sign_in(session, found, ok, client_key=client_key)
        if reader is None:
            return SignInResult(None, "That access code is not valid (or the account is disabled).")
        sitting = start_sitting(session, reader, client_key=client_key)
        return SignInResult(User(id=reader.id, name=reader.name, role=reader.role, sitting_id=sitting.id,
                                 fingerprint=account_fingerprint(reader)))


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
    (``127.0.0.1`` or ``::1`` for a proxy on this machine). Empty by default: forwarded headers count for nothing.
    Name a proxy here only if it *overwrites* the header with the address it saw (nginx:
    ``proxy_set_header X-Forwarded-For $remote_addr;``), else a client writes its own."""
    return {p.strip() for p in os.environ.get("R2C_TRUSTED_PROXIES", "").split(",") if p.strip()}


LOOPBACK = {"127.0.0.1", "::1", "localhost"}
#: what :func:`client_address` returns for an address that is not an IP address (one shared key for all of them)
INVALID_ADDRESS = "invalid"


def normal_address(text: str | None) -> str | None:
    """``text`` as a canonical IP address (IPv6 in brackets or with a port, IPv4 with a port, accepted), or None
    when it is not one: a client key is only ever an address, never text a client chose."""
    raw = str(text or "").strip()
    if raw.startswith("[") and "]" in raw:  # [v6] or [v6]:port
        raw = raw[1:raw.index("]")]
    elif raw.count(":") == 1:  # v4:port
        raw = raw.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        return None


def _hops(forwarded_for: str | None) -> list[str]:
    return [h.strip() for h in str(forwarded_for or "").split(",") if h.strip()]


def _among(address: str, hops: list[str]) -> bool:
    """Whether ``address`` is one of ``hops`` (as written, or as the same IP address without a port)."""
    norm = normal_address(address)
    return address in hops or (norm is not None and norm in {normal_address(h) for h in hops})


def client_address(peer: str | None, forwarded_for: str | None, trusted: set[str]) -> str:
    """The client's address for the rate limit: the peer (``None`` = loopback), unless the peer is a trusted proxy;
    then the right-most address in ``X-Forwarded-For`` that is not itself a trusted proxy (what a client writes into
    the header further left is never believed). Always an IP address in canonical form, ``local`` (loopback, no
    trusted proxy) or :data:`INVALID_ADDRESS` (a hop or peer that is not an address).

    ``peer`` is what Streamlit reports (``st.context.ip_address``): its web server (uvicorn) has already replaced
    the TCP peer with an address from ``X-Forwarded-For`` when the TCP peer is in ``FORWARDED_ALLOW_IPS``
    (uvicorn's default: ``127.0.0.1,::1``). ``scripts/run_app.sh`` and ``scripts/run_study.sh`` set it empty, so
    that this function alone decides; :func:`client_key` also guards against a server started without that."""
    def is_trusted(a: str) -> bool:
        return a in trusted or (a in LOOPBACK and bool(trusted & LOOPBACK))

    peer_name = peer or "127.0.0.1"
    if not is_trusted(peer_name) or not forwarded_for:
        return (normal_address(peer) or INVALID_ADDRESS) if peer else "local"
    for hop in reversed(_hops(forwarded_for)):
        if not is_trusted(hop):
            return normal_address(hop) or INVALID_ADDRESS
    return normal_address(peer_name) or INVALID_ADDRESS


def server_believes_forwarded() -> bool:
    """Whether Streamlit's web server (uvicorn) may have taken the peer address from ``X-Forwarded-For``: it does
    for TCP peers in ``FORWARDED_ALLOW_IPS`` (read from this process's environment; ``127.0.0.1,::1`` when unset).
    Both scripts set it empty."""
    return bool(os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1").strip())


def client_key() -> str:
    """The rate-limit key of this connection: ``ip:<address>`` (see :func:`client_address`).

    Without ``R2C_TRUSTED_PROXIES`` the forwarded header must count for nothing; when the server may have taken
    the peer from it (:func:`server_believes_forwarded`) and the peer is one of its hops, the peer is not known, and
    the connection gets the key of the proxy in front (``local``), shared, as every connection through it has."""
    try:
        peer = st.context.ip_address
        forwarded = ", ".join(st.context.headers.get_all("X-Forwarded-For")) or None
    except Exception:  # pragma: no cover - outside a script run
        peer, forwarded = None, None
    peer = peer if isinstance(peer, str) and peer else None
    trusted = trusted_proxies()
    if peer and forwarded and not trusted and server_believes_forwarded() and _among(peer, _hops(forwarded)):
        _warn_forwarded_once()
        peer = None
    return f"ip:{client_address(peer, forwarded, trusted)}"


_WARNED: list[bool] = []


def _warn_forwarded_once() -> None:
    if not _WARNED:
        _WARNED.append(True)
        log.warning("a request carried X-Forwarded-For and FORWARDED_ALLOW_IPS is not set empty: Streamlit's server "
                    "(uvicorn) believes that header from 127.0.0.1; start the app with scripts/run_study.sh, or set "
                    "FORWARDED_ALLOW_IPS= and R2C_TRUSTED_PROXIES as docs/APP.md says")


_MD_SPECIAL = frozenset("\\`*_{}[]()<>#+.!|~$:&=\"'")


def md_escape(text: object) -> str:
    """``text`` (a name, a study name, a client key: anything a user or a client chose) as literal text inside
    ``st.markdown`` and the other calls that render Markdown: every character Markdown or Streamlit's extensions
    (links, images, emphasis, code, ``:red[...]`` colours, ``$`` maths, autolinks) could read is escaped with a
    backslash, and line breaks become spaces."""
    return "".join("\\" + ch if ch in _MD_SPECIAL else (" " if ch in "\r\n" else ch) for ch in str(text))


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
        st.warning(ended or st.session_state.get(ENDED_KEY) or "Please sign in first.")
        st.stop()
    if user.role not in roles:
        st.error("This page is not available for your role.")
        st.stop()
    return user
