"""outbox_message: records waiting to be published (shared.outbox).

Created only if missing: services that still build it with ``Database.create_tables`` may have
made it already, and it must be the same table either way.

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
    if sa.inspect(op.get_bind()).has_table("outbox_message"):
        return
    op.create_table(
        "outbox_message",
        sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
        sa.Column("service", sa.String(length=32), nullable=False),
        sa.Column("topic", sa.String(length=255), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=True),
        sa.Column("value", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_outbox_message_service", "outbox_message", ["service"])


def downgrade() -> None:
    op.drop_index("ix_outbox_message_service", table_name="outbox_message")
    op.drop_table("outbox_message")
