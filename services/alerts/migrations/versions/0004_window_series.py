"""alerts: what the evidence charts draw per window — the system and objective, the window's
end, the evaluated value and threshold and the objective version of each window verdict
(nullable: verdicts stored before this revision have none).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts_window_verdict") as batch:
        batch.add_column(sa.Column("system_id", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("objective_id", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("objective_version", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("window_end", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("value", sa.Float(), nullable=True))
        batch.add_column(sa.Column("threshold", sa.Float(), nullable=True))
        batch.create_index("ix_alerts_window_verdict_system_id", ["system_id"])


def downgrade() -> None:
    with op.batch_alter_table("alerts_window_verdict") as batch:
        batch.drop_index("ix_alerts_window_verdict_system_id")
        for name in (
            "threshold",
            "value",
            "window_end",
            "objective_version",
            "objective_id",
            "system_id",
        ):
            batch.drop_column(name)
