"""The study database schema (SQLAlchemy 2.0 typed ORM).

Tables (see ``docs/STUDY-DB.md``):

* ``studies``      one reader study: kind, methods and their settings (JSON), allocation, status, token key.
* ``cases``        one source image of a study (manifest id, label, data source); ``role`` study or practice.
* ``renditions``   one image per method per case, stored by content hash (never by method name).
* ``readers``      name, role, and the access code as selector + salted scrypt hash only.
* ``sittings``     one sign-in of a reader (undo is allowed only within the sitting that cast the vote).
* ``queries``      one showing of a case to a reader, with its position in that reader's sequence, an opaque
                   random token, and practice / repeat flags.
* ``query_slots``  the display order of a query, saved when it is assigned (slot k shows rendition r).
* ``votes``        at most one per query (unique), the chosen slot (composite foreign key into that query's
                   slots, so a vote can only name a rendition of the case shown) or "no preference" (a study
                   option: then the slot is NULL), confidence, comment, times.
* ``vote_requests`` the idempotency log of the voting page's browser queue: one row per request key a reader's
                   browser sent (a vote or an undo) with its outcome, so a request sent again (after a reload, a
                   lost acknowledgement, a second tab) is answered from here and never applied twice.
* ``audit_log``    append-only (database triggers refuse UPDATE and DELETE): sign-ins, votes, changes, exports.

The schema is created and upgraded only by the Alembic migrations in ``study/migrations`` (see
:func:`study.db.init_db`); a test checks that the migrations and these models agree.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

STUDY_KINDS = ("restoration", "segmentation")
ALLOCATIONS = ("split", "overlap")
STUDY_STATUSES = ("building", "open", "closed")
READER_ROLES = ("reader", "researcher", "admin")
#: what became of a request of the voting page's browser queue (see :mod:`study.vote_queue`)
VOTE_REQUEST_OUTCOMES = ("recorded", "duplicate", "undone", "nothing", "refused")
CASE_ROLES = ("study", "practice")
LABELS = ("covid", "control")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (the only kind of time stored)."""
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always returned timezone-aware (SQLite keeps no zone itself)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; pass a timezone-aware time")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class Study(Base):
    __tablename__ = "studies"
    __table_args__ = (
        CheckConstraint(_in("kind", STUDY_KINDS), name="kind"),
        CheckConstraint(_in("allocation", ALLOCATIONS), name="allocation"),
        CheckConstraint(_in("status", STUDY_STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    allocation: Mapped[str] = mapped_column(String(10))
    methods: Mapped[list[Any]] = mapped_column(JSON)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(12), default="building")
    token_key: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    cases: Mapped[list[Case]] = relationship(back_populates="study", order_by="Case.id")

    @property
    def simulated(self) -> bool:
        """Votes cast by simulated readers (``settings["simulated"]``, set by :mod:`study.simstudy`), never doctors."""
        return bool((self.settings or {}).get("simulated"))


class Case(Base):
    __tablename__ = "cases"
    __table_args__ = (
        UniqueConstraint("study_id", "key"),
        CheckConstraint(_in("role", CASE_ROLES), name="role"),
        CheckConstraint(_in("label", LABELS), name="label"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(200))
    label: Mapped[str] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(String(50))
    split: Mapped[str] = mapped_column(String(20))
    file: Mapped[str] = mapped_column(String(500))
    role: Mapped[str] = mapped_column(String(10), default="study")

    study: Mapped[Study] = relationship(back_populates="cases")
    renditions: Mapped[list[Rendition]] = relationship(back_populates="case", order_by="Rendition.id")


class Rendition(Base):
    __tablename__ = "renditions"
    __table_args__ = (UniqueConstraint("case_id", "method"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    method: Mapped[str] = mapped_column(String(50))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    case: Mapped[Case] = relationship(back_populates="renditions")


class Reader(Base):
    __tablename__ = "readers"
    __table_args__ = (CheckConstraint(_in("role", READER_ROLES), name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(12), default="reader")
    code_selector: Mapped[str] = mapped_column(String(16), unique=True)
    code_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Sitting(Base):
    __tablename__ = "sittings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reader_id: Mapped[int] = mapped_column(ForeignKey("readers.id"), index=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    client_key: Mapped[str | None] = mapped_column(String(200))


class Query(Base):
    __tablename__ = "queries"
    __table_args__ = (
        UniqueConstraint("study_id", "reader_id", "position"),
        Index("ix_queries_reader_id_study_id_position", "reader_id", "study_id", "position"),
        CheckConstraint("NOT (is_practice AND is_repeat)", name="practice_or_repeat"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    reader_id: Mapped[int] = mapped_column(ForeignKey("readers.id"))
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    is_practice: Mapped[bool] = mapped_column(Boolean, default=False)
    is_repeat: Mapped[bool] = mapped_column(Boolean, default=False)
    repeat_of_id: Mapped[int | None] = mapped_column(ForeignKey("queries.id"))
    token: Mapped[str] = mapped_column(String(43), unique=True)
    assigned_at: Mapped[datetime] = mapped_column(default=utcnow)
    shown_at: Mapped[datetime | None] = mapped_column()
    shown_sitting_id: Mapped[int | None] = mapped_column(ForeignKey("sittings.id"))

    case: Mapped[Case] = relationship()
    study: Mapped[Study] = relationship()
    repeat_of: Mapped[Query | None] = relationship(remote_side=[id])
    slots: Mapped[list[QuerySlot]] = relationship(order_by="QuerySlot.slot", back_populates="query")
    vote: Mapped[Vote | None] = relationship(back_populates="query", uselist=False)


class QuerySlot(Base):
    __tablename__ = "query_slots"
    __table_args__ = (
        UniqueConstraint("query_id", "rendition_id"),
        CheckConstraint("slot >= 1", name="slot_positive"),
    )

    query_id: Mapped[int] = mapped_column(ForeignKey("queries.id", ondelete="CASCADE"), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True)
    rendition_id: Mapped[int] = mapped_column(ForeignKey("renditions.id"))

    query: Mapped[Query] = relationship(back_populates="slots")
    rendition: Mapped[Rendition] = relationship()


class Vote(Base):
    __tablename__ = "votes"
    __table_args__ = (
        ForeignKeyConstraint(["query_id", "chosen_slot"], ["query_slots.query_id", "query_slots.slot"]),
        CheckConstraint("confidence IS NULL OR (confidence >= 1 AND confidence <= 5)", name="confidence"),
        CheckConstraint("(chosen_slot IS NULL) = no_preference", name="choice"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    query_id: Mapped[int] = mapped_column(ForeignKey("queries.id"), unique=True)
    #: NULL exactly when the reader answered "no preference" (only in a study that offers it)
    chosen_slot: Mapped[int | None] = mapped_column(Integer)
    no_preference: Mapped[bool] = mapped_column(Boolean, default=False)
    confidence: Mapped[int | None] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    shown_at: Mapped[datetime] = mapped_column()
    answered_at: Mapped[datetime] = mapped_column()
    sitting_id: Mapped[int | None] = mapped_column(ForeignKey("sittings.id"))

    query: Mapped[Query] = relationship(back_populates="vote")


class AuditEvent(Base):
    """One append-only audit entry. ``client_key`` (e.g. the client address) feeds the sign-in rate limit."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_action_client_key_at", "action", "client_key", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    action: Mapped[str] = mapped_column(String(40))
    reader_id: Mapped[int | None] = mapped_column(ForeignKey("readers.id"))
    study_id: Mapped[int | None] = mapped_column(ForeignKey("studies.id"))
    client_key: Mapped[str | None] = mapped_column(String(200))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class VoteRequest(Base):
    """One vote or undo request from a reader's browser queue, by the key the browser gave it (idempotency log)."""

    __tablename__ = "vote_requests"
    __table_args__ = (
        UniqueConstraint("reader_id", "key"),
        CheckConstraint(_in("kind", ("vote", "undo")), name="kind"),
        CheckConstraint(_in("outcome", VOTE_REQUEST_OUTCOMES), name="outcome"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reader_id: Mapped[int] = mapped_column(ForeignKey("readers.id"))
    key: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(8))
    query_id: Mapped[int | None] = mapped_column(ForeignKey("queries.id", ondelete="CASCADE"), index=True)
    outcome: Mapped[str] = mapped_column(String(12))
    message: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utcnow)
