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

import contextlib
import os
import sqlite3
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DatabaseError as SADatabaseError

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


def _copy_checked(src: Path, dest: Path) -> dict[str, int]:
    """SQLite's backup API from ``src`` into a new private file ``dest``, opened at the current schema; returns its
    counts. On any failure ``dest`` is removed, so nothing half-written is left behind."""
    private_sqlite_file(dest)
    try:
        with contextlib.closing(sqlite3.connect(f"file:{src}?mode=ro", uri=True)) as source, \
                contextlib.closing(sqlite3.connect(dest)) as target:
            source.backup(target)
        return counts(f"sqlite:///{dest.resolve()}")
    except (sqlite3.DatabaseError, SADatabaseError) as exc:
        dest.unlink(missing_ok=True)
        raise StudyError(f"{src}: not a readable SQLite study database ({exc})") from exc
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


def _temp_beside(path: Path, what: str) -> Path:
    return path.with_name(f".{path.name}.{what}-{os.getpid()}")


def backup(url: str | None, out: str | Path) -> dict[str, int]:
    """Write a consistent copy of the SQLite database at ``url`` to ``out`` (which must not exist); returns its row
    counts after opening it at the current schema. The copy is made under a temporary name beside ``out`` and
    renamed when it checks out, so a failed backup leaves no file (and the retry is not refused)."""
    url = resolve_url(url)
    src = _sqlite_path(url)
    if not src.is_file():
        raise StudyError(f"no database at {display_url(url)}")
    out = Path(out)
    if out.exists():
        raise StudyError(f"{out} exists: choose a new file name (a backup never overwrites)")
    tmp = _temp_beside(out, "backup")
    result = _copy_checked(src, tmp)
    os.replace(tmp, out)
    return result


def restore(backup_file: str | Path, url: str | None, *, force: bool = False) -> dict[str, int]:
    """Copy a backup into the SQLite database at ``url`` (a new file, or an existing one with ``force``: stop the
    app first); returns the restored row counts.

    The backup is checked, then copied to a temporary file beside the database and checked again; only then is the
    old database replaced (one rename; its -wal/-shm files are moved aside first and deleted after), so a failure at
    any step leaves the old database as it was."""
    backup_file = Path(backup_file)
    if not backup_file.is_file():
        raise StudyError(f"{backup_file}: no such backup file")
    url = resolve_url(url)
    dest = _sqlite_path(url)
    if dest.exists() and not force:
        raise StudyError(f"{display_url(url)} exists: restore into a new file, or pass --force (stop the app first)")
    try:
        counts(f"sqlite:///{backup_file.resolve()}")  # a readable study database at the current schema, or an error
    except (sqlite3.DatabaseError, SADatabaseError) as exc:
        raise StudyError(f"{backup_file}: not a readable SQLite study database ({exc})") from exc
    tmp = _temp_beside(dest, "restore")
    _copy_checked(backup_file, tmp)
    aside = [(p, p.with_name(p.name + ".pre-restore")) for p in (dest.with_name(dest.name + "-wal"),
                                                                  dest.with_name(dest.name + "-shm")) if p.exists()]
    for p, q in aside:
        os.replace(p, q)
    try:
        os.replace(tmp, dest)
    except BaseException:
        for p, q in aside:
            os.replace(q, p)
        tmp.unlink(missing_ok=True)
        raise
    for _, q in aside:
        q.unlink(missing_ok=True)
    return counts(url)
