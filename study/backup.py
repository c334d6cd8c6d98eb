"""Backups of a study database: ``python -m study backup --out FILE`` and ``python -m study restore --from FILE``.

SQLite: SQLite's online backup API copies a consistent snapshot while the app keeps serving readers (votes that
commit during the copy are either in the snapshot or not, never half); the backup file is created 0600 (it holds the
study's secret key and the slot-to-method map) and checked to open at the current schema. Restore copies a backup
into a database file that does not exist yet (``--force`` to replace one: stop the app first).

PostgreSQL: use the server's own tools, which snapshot consistently too:
``pg_dump -Fc -f study.dump "$URL"`` and ``pg_restore --clean -d "$URL" study.dump`` (with the URL's ``+psycopg``
part removed); :func:`backup` says so instead of half-doing it.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from .db import connect, display_url, private_sqlite_file, resolve_url
from .errors import StudyError

PG_HINT = ('PostgreSQL: back up with the server\'s tools, e.g. pg_dump -Fc -f study.dump "postgresql://user@host/db", '
           'and restore with pg_restore --clean -d "postgresql://user@host/db" study.dump')


def _sqlite_path(url: str) -> Path:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        raise StudyError(PG_HINT if parsed.get_backend_name() == "postgresql" else f"backups of {parsed.get_backend_name()} databases: use its own tools")
    if not parsed.database or parsed.database == ":memory:":
        raise StudyError("an in-memory database cannot be backed up")
    return Path(parsed.database).expanduser()


def counts(url: str) -> dict[str, int]:
    """Rows of the main tables (what a backup's check compares)."""
    from .models import Query, Reader, Study, Vote

    with connect(url).begin() as s:
        return {name: int(s.scalar(select(func.count()).select_from(model)) or 0)
                for name, model in (("studies", Study), ("readers", Reader), ("queries", Query), ("votes", Vote))}


def backup(url: str | None, out: str | Path) -> dict[str, int]:
    """Write a consistent copy of the SQLite database at ``url`` to ``out`` (which must not exist); returns its row
    counts after opening it at the current schema."""
    url = resolve_url(url)
    src = _sqlite_path(url)
    if not src.is_file():
        raise StudyError(f"no database at {display_url(url)}")
    out = Path(out)
    if out.exists():
        raise StudyError(f"{out} exists: choose a new file name (a backup never overwrites)")
    out.parent.mkdir(parents=True, exist_ok=True)
    private_sqlite_file(out)
    with sqlite3.connect(f"file:{src}?mode=ro", uri=True) as source, sqlite3.connect(out) as dest:
        source.backup(dest)
    dest_url = f"sqlite:///{out.resolve()}"
    return counts(dest_url)


def restore(backup_file: str | Path, url: str | None, *, force: bool = False) -> dict[str, int]:
    """Copy a backup into the SQLite database at ``url`` (a new file, or an existing one with ``force``: stop the
    app first); returns the restored row counts."""
    backup_file = Path(backup_file)
    if not backup_file.is_file():
        raise StudyError(f"{backup_file}: no such backup file")
    url = resolve_url(url)
    dest = _sqlite_path(url)
    if dest.exists() and not force:
        raise StudyError(f"{display_url(url)} exists: restore into a new file, or pass --force (stop the app first)")
    counts(f"sqlite:///{backup_file.resolve()}")  # a readable study database at the current schema, or an error
    if dest.exists():
        for extra in (dest, dest.with_name(dest.name + "-wal"), dest.with_name(dest.name + "-shm")):
            if extra.exists():
                os.remove(extra)
    private_sqlite_file(dest)
    with sqlite3.connect(f"file:{backup_file}?mode=ro", uri=True) as source, sqlite3.connect(dest) as target:
        source.backup(target)
    return counts(url)
