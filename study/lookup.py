"""Finding studies and readers by object, id or name (one-line errors when unknown)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from .errors import UnknownReaderError, UnknownStudyError
from .models import Reader, Study


def get_study(session: Session, ref: Study | int | str) -> Study:
    """A study by object, id, or name (a numeric string is tried as an id, then as a name)."""
    if isinstance(ref, Study):
        return ref
    study = None
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        study = session.get(Study, int(ref))
    if study is None and isinstance(ref, str):
        study = session.scalar(select(Study).where(Study.name == ref))
    if study is None:
        names = session.scalars(select(Study.name).order_by(Study.id)).all()
        known = f" (studies: {', '.join(names)})" if names else " (no studies yet)"
        raise UnknownStudyError(f"unknown study {ref!r}{known}")
    return study


def get_reader(session: Session, ref: Reader | int | str) -> Reader:
    """A reader by object, id or name."""
    if isinstance(ref, Reader):
        return ref
    reader = session.get(Reader, ref) if isinstance(ref, int) else None
    if reader is None and isinstance(ref, str):
        reader = session.scalar(select(Reader).where(Reader.name == ref))
    if reader is None:
        raise UnknownReaderError(f"unknown reader {ref!r}")
    return reader


__all__ = ["get_reader", "get_study"]
