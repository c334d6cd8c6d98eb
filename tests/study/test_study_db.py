"""Database layer: migrations, schema check, SQLite settings, URL resolution, append-only audit log."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from study import audit
from study.db import (
    check_schema,
    connect,
    current_revision,
    default_url,
    head_revision,
    init_db,
    make_engine,
    resolve_url,
    translate_errors,
)
from study.errors import DatabaseLockedError, SchemaError
from study.models import Base


def test_migrations_match_models_and_rerun(db_url: str) -> None:
    engine = init_db(db_url)  # second run on a migrated database: a no-op
    try:
        assert current_revision(engine) == head_revision()
        check_schema(engine)
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        assert diffs == []
    finally:
        engine.dispose()


def test_fresh_database_needs_init(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    with pytest.raises(SchemaError, match="python -m study init"):
        connect(url)
    factory = connect(url, migrate=True)
    with factory.begin() as session:
        assert session.execute(text("SELECT count(*) FROM studies")).scalar() == 0


def test_outdated_revision_is_refused(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'old0'"))
    with pytest.raises(SchemaError, match="revision old0"):
        check_schema(engine)
    engine.dispose()


def test_sqlite_connection_settings(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_sqlite_transaction_waits_for_the_write_lock(sqlite_url: str) -> None:
    holder = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    threading.Timer(0.3, lambda: holder.execute("COMMIT")).start()
    engine = make_engine(sqlite_url, busy_timeout_ms=5000)
    start = time.monotonic()
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO readers (name, role, code_selector, code_hash, active, created_at) "
                              "VALUES ('x', 'reader', 'AAAA', 'h', 1, '2026-01-01 00:00:00')"))
        assert time.monotonic() - start >= 0.25
    finally:
        engine.dispose()
        holder.close()


def test_url_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("R2C_DB_URL", raising=False)
    assert default_url().endswith("/var/study.db") and default_url().startswith("sqlite:///")
    monkeypatch.setenv("R2C_DB_URL", "postgresql://u:p@h:5432/d")
    assert resolve_url() == "postgresql+psycopg://u:p@h:5432/d"
    assert resolve_url("sqlite:///x.db") == "sqlite:///x.db"


def test_locked_sqlite_gives_one_clear_error(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = sqlite_url.removeprefix("sqlite:///")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    monkeypatch.setenv("R2C_DB_BUSY_TIMEOUT_MS", "100")
    try:
        engine = make_engine(sqlite_url)
        start = time.monotonic()
        with pytest.raises(DatabaseLockedError, match="locked by another process"):
            with translate_errors(sqlite_url):
                with engine.begin() as conn:
                    conn.execute(text("SELECT 1"))
        assert time.monotonic() - start < 5
        engine.dispose()
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_audit_log_is_append_only(factory) -> None:  # type: ignore[no-untyped-def]
    with factory.begin() as session:
        audit.record(session, audit.EXPORT, detail={"x": 1})
    for stmt in ("UPDATE audit_log SET action = 'tampered'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"):
            with factory.begin() as session:
                session.execute(text(stmt))
    with factory.begin() as session:
        assert session.execute(text("SELECT action FROM audit_log")).scalars().all() == [audit.EXPORT]


def test_sqlite_database_and_rendition_files_are_private(tmp_path):
    """Issue 16, finding 3: the database (secret key, slot-to-method map) and the renditions are readable by their
    owner only, whatever the umask."""
    import os
    import stat

    import numpy as np

    from study.assets import encode_png, store_png
    from study.db import connect

    old = os.umask(0o022)
    try:
        url = f"sqlite:///{tmp_path / 'var' / 'study.db'}"
        factory = connect(url, migrate=True)
        with factory.begin() as s:
            s.execute(__import__("sqlalchemy").text("SELECT 1"))
        mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
        assert mode(tmp_path / "var") == 0o700 and mode(tmp_path / "var" / "study.db") == 0o600
        for extra in ("study.db-wal", "study.db-shm"):
            if (tmp_path / "var" / extra).exists():
                assert mode(tmp_path / "var" / extra) & 0o077 == 0
        sha = store_png(tmp_path / "assets", encode_png(np.zeros((4, 4), np.uint8)))
        png = tmp_path / "assets" / sha[:2] / f"{sha}.png"
        assert mode(tmp_path / "assets") == 0o700 and mode(png.parent) == 0o700 and mode(png) == 0o600
        loose = tmp_path / "old.db"  # an existing world-readable database is tightened when opened
        loose.touch(mode=0o644)
        connect(f"sqlite:///{loose}", migrate=True)
        assert mode(loose) == 0o600
    finally:
        os.umask(old)
