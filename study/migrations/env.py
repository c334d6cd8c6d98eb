"""Alembic environment for the study schema. Run programmatically by :func:`study.db.init_db`, which passes an
open connection in ``config.attributes['connection']``; the ``alembic`` command line works too with
``alembic -c study/alembic.ini -x url=sqlite:///var/study.db upgrade head``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import pool

from study.db import make_engine
from study.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    engine = make_engine(url, poolclass=pool.NullPool)
    with engine.begin() as conn:
        _run(conn)


if context.is_offline_mode():  # pragma: no cover - offline SQL generation is not supported
    raise SystemExit("offline migrations are not supported; pass a database URL")
run_migrations_online()
