"""alerts: numbered action plans. A record starts with plan 1; an effectiveness review that
finds the actions not effective opens the next plan, and each corrective action belongs to the
plan it was created in, so the old plan's actions no longer satisfy the guards.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TABLES = ("alerts_nonconformity", "alerts_corrective_action")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("action_plan", sa.Integer(), nullable=False, server_default="1")
            )
        with op.batch_alter_table(table) as batch:
            batch.alter_column("action_plan", server_default=None)


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("action_plan")
