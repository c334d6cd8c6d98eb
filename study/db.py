"""Database connection: URL resolution, engines (SQLite and PostgreSQL), migrations and the schema check.

* URL: the argument, else ``$R2C_DB_URL``, else ``sqlite:///<repo>/var/study.db``. ``postgresql://`` URLs use
  the psycopg 3 driver.
* SQLite: WAL journal, ``foreign_keys=ON``, ``synchronous=NORMAL`` and a busy timeout
  (``$R2C_DB_BUSY_TIMEOUT_MS``, default 15 s) on every connection. SQLAlchemy emits ``BEGIN IMMEDIATE``
  itself, so every transaction takes the write lock up front (waiting up to the busy timeout, polling evenly)
  instead of failing half-way when a read turns into a write, and savepoints work.
* Schema: created and upgraded only by the Alembic migrations shipped in ``study/migrations``
  (:func:`init_db`); :func:`connect` refuses a database whose ``alembic_version`` is not the code's head.

Callers own transactions::

    factory = connect(url)
    with factory.begin() as session:
        ...
"""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from .errors import DatabaseError, DatabaseLockedError, SchemaError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
DEFAULT_BUSY_TIMEOUT_MS = 15_000
#: SQLite's own busy wait inside one BEGIN attempt, and the pause between attempts (seconds).
_BEGIN_BUSY_MS = 5
_BEGIN_POLL_S = (0.0005, 0.003)


def default_url() -> str:
    """``$R2C_DB_URL``, else the SQLite file ``<repo>/var/study.db``."""
    env = os.environ.get("R2C_DB_URL")
    if env:
        return env
    return f"sqlite:///{REPO_ROOT / 'var' / 'study.db'}"


def resolve_url(url: str | None = None) -> str:
    """The database URL to use, with ``postgresql://`` mapped to the psycopg 3 driver."""
    raw = url or default_url()
    try:
        parsed = make_url(raw)
    except Exception as exc:  # sqlalchemy raises ArgumentError with a long message
        raise DatabaseError(f"not a database URL: {raw!r}") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def display_url(url: str) -> str:
    """The URL with any password masked, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def _busy_timeout_ms() -> int:
    env = os.environ.get("R2C_DB_BUSY_TIMEOUT_MS")
    try:
        return int(env) if env else DEFAULT_BUSY_TIMEOUT_MS
    except ValueError:
        return DEFAULT_BUSY_TIMEOUT_MS


def _setup_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    """Connection settings, and a ``BEGIN IMMEDIATE`` that waits for the write lock by polling at short random
    intervals up to the busy timeout. SQLite's own busy handler backs off to 100 ms polls, so with many
    writers a long waiter keeps losing the lock to fresh ones and can time out; even polling avoids that."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself (see module doc)
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute(f"PRAGMA busy_timeout = {min(int(busy_timeout_ms), _BEGIN_BUSY_MS)}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        raw = conn.connection.dbapi_connection
        deadline = time.monotonic() + busy_timeout_ms / 1000.0
        while time.monotonic() < deadline:
            try:
                raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not is_locked_error(exc):
                    break
                time.sleep(random.uniform(*_BEGIN_POLL_S))
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # last try; raises the wrapped error if still locked


def private_sqlite_file(path: Path) -> None:
    """Create a SQLite database file (and its folder) readable by this user only: the database holds the study's
    secret key and the slot-to-method map. The folder is made 0700 when this creates it; the file is created 0600,
    and an existing one is tightened to 0600 (SQLite gives its -wal and -shm files the database file's mode)."""
    import os
    import stat

    if not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    try:
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            os.chmod(path, 0o600)
    except OSError:  # not ours to change (read-only mount, another owner): SQLite will say what it can do
        pass


def make_engine(url: str | None = None, *, busy_timeout_ms: int | None = None, **kwargs: Any) -> Engine:
    """An engine for ``url`` (see :func:`resolve_url`), with the SQLite settings of the module doc."""
    resolved = resolve_url(url)
    parsed = make_url(resolved)
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database
        if db and db != ":memory:" and not db.startswith("file:"):
            private_sqlite_file(Path(db).expanduser())
        engine = create_engine(resolved, **kwargs)
        _setup_sqlite(engine, busy_timeout_ms if busy_timeout_ms is not None else _busy_timeout_ms())
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(resolved, **kwargs)


def _alembic_config(connection: Any = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest migration revision shipped with this code."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships migrations
        raise SchemaError("no migrations found in the study package")
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision recorded in ``alembic_version``, or None for a database without the study schema."""
    with translate_errors(engine.url.render_as_string()):
        with engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def init_db(url: str | Engine | None = None) -> Engine:
    """Create or upgrade the study schema to the newest revision; returns the engine. Safe to run again."""
    from alembic import command

    engine = url if isinstance(url, Engine) else make_engine(url)
    with translate_errors(engine.url.render_as_string()):
        with engine.begin() as conn:
            command.upgrade(_alembic_config(conn), "head")
    log.info("study schema at revision %s in %s", head_revision(), display_url(engine.url.render_as_string()))
    return engine


def check_schema(engine: Engine) -> None:
    """Raise :class:`SchemaError` with a one-line fix unless the database is at the code's head revision."""
    where = display_url(engine.url.render_as_string())
    rev, head = current_revision(engine), head_revision()
    if rev is None:
        raise SchemaError(f"{where} has no study schema; run: python -m study init --db URL")
    if rev != head:
        raise SchemaError(f"{where} has schema revision {rev}, this code needs {head}; run: python -m study init")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit (``expire_on_commit=False``)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def connect(url: str | None = None, *, migrate: bool = False) -> sessionmaker[Session]:
    """A session factory for a database at the current schema (``migrate=True`` upgrades it first)."""
    engine = init_db(url) if migrate else make_engine(url)
    check_schema(engine)
    return session_factory(engine)


def is_locked_error(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's 'database is locked' / 'busy' error."""
    msg = str(getattr(exc, "orig", exc)).lower()
    return "database is locked" in msg or "database is busy" in msg or "database table is locked" in msg


@contextmanager
def translate_errors(url: str | None = None) -> Iterator[None]:
    """Turn driver errors that users cause (locked file, refused connection) into one-line StudyErrors."""
    try:
        yield
    except OperationalError as exc:
        where = display_url(url) if url else "the database"
        if is_locked_error(exc):
            raise DatabaseLockedError(
                f"{where} is locked by another process (waited {_busy_timeout_ms() / 1000:g} s); try again later"
            ) from exc
        first = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc).splitlines()[0]
        raise DatabaseError(f"cannot use {where}: {first}") from exc
