"""alerts: nonconformities, alert counters per fingerprint, processed evaluations.

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


def _timestamp(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "alerts_nonconformity",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("system_id", sa.String(length=128), nullable=False),
        sa.Column("objective_id", sa.String(length=128), nullable=False),
        sa.Column("objective_version", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(), nullable=False),
        sa.Column("severity", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("open", sa.Boolean(), nullable=False),
        sa.Column("condition_cleared", sa.Boolean(), nullable=False),
        sa.Column("occurrences", sa.Integer(), nullable=False),
        sa.Column("first_evaluation_id", sa.String(), nullable=False),
        sa.Column("last_evaluation_id", sa.String(), nullable=False),
        sa.Column("last_value", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("comparator", sa.String(), nullable=False),
        _timestamp("raised_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_alerts_nonconformity_fingerprint", "alerts_nonconformity", ["fingerprint"])
    op.create_index("ix_alerts_nonconformity_system_id", "alerts_nonconformity", ["system_id"])
    op.create_table(
        "alerts_processed_evaluation",
        sa.Column("evaluation_id", sa.String(length=255), nullable=False),
        _timestamp("processed_at"),
        sa.PrimaryKeyConstraint("evaluation_id"),
    )
    op.create_table(
        "alerts_state",
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("consecutive_breaches", sa.Integer(), nullable=False),
        sa.Column("consecutive_passes", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("fingerprint"),
    )


def downgrade() -> None:
    op.drop_table("alerts_state")
    op.drop_table("alerts_processed_evaluation")
    op.drop_index("ix_alerts_nonconformity_system_id", "alerts_nonconformity")
    op.drop_index("ix_alerts_nonconformity_fingerprint", "alerts_nonconformity")
    op.drop_table("alerts_nonconformity")
