"""Initial study schema: studies, cases, renditions, readers, sittings, queries, query slots, votes, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)

_PG_APPEND_ONLY = """
CREATE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$ LANGUAGE plpgsql
"""


def _append_only_triggers() -> None:
    """The audit log refuses UPDATE and DELETE at the database level."""
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for what in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{what.lower()} BEFORE {what} ON audit_log "
                "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
            )
    elif dialect == "postgresql":
        op.execute(_PG_APPEND_ONLY)
        op.execute(
            "CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
        )


def upgrade() -> None:
    op.create_table(
        "readers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=12), nullable=False),
        sa.Column("code_selector", sa.String(length=16), nullable=False),
        sa.Column("code_hash", sa.String(length=255), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint("role IN ('reader', 'researcher', 'admin')", name=op.f("ck_readers_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_readers")),
        sa.UniqueConstraint("code_selector", name=op.f("uq_readers_code_selector")),
        sa.UniqueConstraint("name", name=op.f("uq_readers_name")),
    )
    op.create_table(
        "studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("allocation", sa.String(length=10), nullable=False),
        sa.Column("methods", sa.JSON(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("token_key", sa.String(length=64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint("allocation IN ('split', 'overlap')", name=op.f("ck_studies_allocation")),
        sa.CheckConstraint("kind IN ('restoration', 'segmentation')", name=op.f("ck_studies_kind")),
        sa.CheckConstraint("status IN ('building', 'open', 'closed')", name=op.f("ck_studies_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_studies")),
        sa.UniqueConstraint("name", name=op.f("uq_studies_name")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("reader_id", sa.Integer(), nullable=True),
        sa.Column("study_id", sa.Integer(), nullable=True),
        sa.Column("client_key", sa.String(length=200), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["reader_id"], ["readers.id"], name=op.f("fk_audit_log_reader_id_readers")),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], name=op.f("fk_audit_log_study_id_studies")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_action_client_key_at", "audit_log", ["action", "client_key", "at"])
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("label", sa.String(length=20), nullable=False),
        sa.Column("source", sa.String(length=50), nullable=False),
        sa.Column("split", sa.String(length=20), nullable=False),
        sa.Column("file", sa.String(length=500), nullable=False),
        sa.Column("role", sa.String(length=10), nullable=False),
        sa.CheckConstraint("label IN ('covid', 'control')", name=op.f("ck_cases_label")),
        sa.CheckConstraint("role IN ('study', 'practice')", name=op.f("ck_cases_role")),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name=op.f("fk_cases_study_id_studies"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cases")),
        sa.UniqueConstraint("study_id", "key", name=op.f("uq_cases_study_id_key")),
    )
    op.create_index(op.f("ix_cases_study_id"), "cases", ["study_id"])
    op.create_table(
        "sittings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reader_id", sa.Integer(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("client_key", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["reader_id"], ["readers.id"], name=op.f("fk_sittings_reader_id_readers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sittings")),
    )
    op.create_index(op.f("ix_sittings_reader_id"), "sittings", ["reader_id"])
    op.create_table(
        "queries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("reader_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("is_practice", sa.Boolean(), nullable=False),
        sa.Column("is_repeat", sa.Boolean(), nullable=False),
        sa.Column("repeat_of_id", sa.Integer(), nullable=True),
        sa.Column("token", sa.String(length=43), nullable=False),
        sa.Column("assigned_at", TS, nullable=False),
        sa.Column("shown_at", TS, nullable=True),
        sa.Column("shown_sitting_id", sa.Integer(), nullable=True),
        sa.CheckConstraint("NOT (is_practice AND is_repeat)", name=op.f("ck_queries_practice_or_repeat")),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_queries_case_id_cases"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["reader_id"], ["readers.id"], name=op.f("fk_queries_reader_id_readers")),
        sa.ForeignKeyConstraint(["repeat_of_id"], ["queries.id"], name=op.f("fk_queries_repeat_of_id_queries")),
        sa.ForeignKeyConstraint(
            ["shown_sitting_id"], ["sittings.id"], name=op.f("fk_queries_shown_sitting_id_sittings")
        ),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name=op.f("fk_queries_study_id_studies"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queries")),
        sa.UniqueConstraint("study_id", "reader_id", "position", name=op.f("uq_queries_study_id_reader_id_position")),
        sa.UniqueConstraint("token", name=op.f("uq_queries_token")),
    )
    op.create_index(op.f("ix_queries_case_id"), "queries", ["case_id"])
    op.create_index("ix_queries_reader_id_study_id_position", "queries", ["reader_id", "study_id", "position"])
    op.create_table(
        "renditions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=50), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_renditions_case_id_cases"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_renditions")),
        sa.UniqueConstraint("case_id", "method", name=op.f("uq_renditions_case_id_method")),
    )
    op.create_index(op.f("ix_renditions_sha256"), "renditions", ["sha256"])
    op.create_table(
        "query_slots",
        sa.Column("query_id", sa.Integer(), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("rendition_id", sa.Integer(), nullable=False),
        sa.CheckConstraint("slot >= 1", name=op.f("ck_query_slots_slot_positive")),
        sa.ForeignKeyConstraint(
            ["query_id"], ["queries.id"], name=op.f("fk_query_slots_query_id_queries"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["rendition_id"], ["renditions.id"], name=op.f("fk_query_slots_rendition_id_renditions")
        ),
        sa.PrimaryKeyConstraint("query_id", "slot", name=op.f("pk_query_slots")),
        sa.UniqueConstraint("query_id", "rendition_id", name=op.f("uq_query_slots_query_id_rendition_id")),
    )
    op.create_table(
        "votes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("query_id", sa.Integer(), nullable=False),
        sa.Column("chosen_slot", sa.Integer(), nullable=False),
        sa.Column("confidence", sa.Integer(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("shown_at", TS, nullable=False),
        sa.Column("answered_at", TS, nullable=False),
        sa.Column("sitting_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "confidence IS NULL OR (confidence >= 1 AND confidence <= 5)", name=op.f("ck_votes_confidence")
        ),
        sa.ForeignKeyConstraint(
            ["query_id", "chosen_slot"],
            ["query_slots.query_id", "query_slots.slot"],
            name=op.f("fk_votes_query_id_chosen_slot_query_slots"),
        ),
        sa.ForeignKeyConstraint(["query_id"], ["queries.id"], name=op.f("fk_votes_query_id_queries")),
        sa.ForeignKeyConstraint(["sitting_id"], ["sittings.id"], name=op.f("fk_votes_sitting_id_sittings")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_votes")),
        sa.UniqueConstraint("query_id", name=op.f("uq_votes_query_id")),
    )
    _append_only_triggers()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_change ON audit_log")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    for table in ("votes", "query_slots", "renditions", "queries", "sittings", "cases", "audit_log", "studies", "readers"):
        op.drop_table(table)
