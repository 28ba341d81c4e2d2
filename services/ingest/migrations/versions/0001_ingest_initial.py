"""ingest: the duplicate store (event ids seen within their label horizon, ingest instances).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ingest_seen_event",
        sa.Column("system_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("owner", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("system_id", "kind", "event_id"),
    )
    op.create_index(
        "ix_ingest_seen_event_expires_at",
        "ingest_seen_event",
        ["expires_at"],
        postgresql_using="brin",
    )
    op.create_table(
        "ingest_instance",
        sa.Column("owner", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("resolved_seq", sa.BigInteger(), nullable=False),
        sa.Column("alive_until", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("owner"),
    )


def downgrade() -> None:
    op.drop_table("ingest_instance")
    op.drop_index("ix_ingest_seen_event_expires_at", table_name="ingest_seen_event")
    op.drop_table("ingest_seen_event")
