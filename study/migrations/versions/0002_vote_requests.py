"""The idempotency log of the voting page's browser queue (vote_requests); "no preference" answers (votes).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "vote_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reader_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("query_id", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(length=12), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("at", TS, nullable=False),
        sa.CheckConstraint("kind IN ('vote', 'undo')", name=op.f("ck_vote_requests_kind")),
        sa.CheckConstraint("outcome IN ('recorded', 'duplicate', 'undone', 'nothing', 'refused')",
                           name=op.f("ck_vote_requests_outcome")),
        sa.ForeignKeyConstraint(["query_id"], ["queries.id"], name=op.f("fk_vote_requests_query_id_queries"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["reader_id"], ["readers.id"], name=op.f("fk_vote_requests_reader_id_readers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vote_requests")),
        sa.UniqueConstraint("reader_id", "key", name=op.f("uq_vote_requests_reader_id_key")),
    )
    op.create_index(op.f("ix_vote_requests_query_id"), "vote_requests", ["query_id"])
    # a study may offer "no preference": such a vote has no slot (batch mode: SQLite rebuilds the table)
    with op.batch_alter_table("votes") as batch:
        batch.add_column(sa.Column("no_preference", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.alter_column("chosen_slot", existing_type=sa.Integer(), nullable=True)
        batch.create_check_constraint(op.f("ck_votes_choice"), "(chosen_slot IS NULL) = no_preference")


def downgrade() -> None:
    op.execute("DELETE FROM votes WHERE no_preference")  # cannot be expressed without it
    with op.batch_alter_table("votes") as batch:
        batch.drop_constraint(op.f("ck_votes_choice"), type_="check")
        batch.alter_column("chosen_slot", existing_type=sa.Integer(), nullable=False)
        batch.drop_column("no_preference")
    op.drop_index(op.f("ix_vote_requests_query_id"), table_name="vote_requests")
    op.drop_table("vote_requests")
