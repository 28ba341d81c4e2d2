"""evaluator: join state, partition and window checkpoints, label windows, evaluations,
cached reference profiles.

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


def _id(name: str, length: int = 128) -> sa.Column[object]:
    return sa.Column(name, sa.String(length=length), nullable=False)


def _window_key() -> list[sa.Column[object]]:
    return [
        _id("stream", 255),
        sa.Column("partition", sa.Integer(), nullable=False),
        _id("system_id"),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("start", sa.Integer(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "evaluator_join",
        _id("system_id"),
        _id("event_id"),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("arrival_wm", sa.Float(), nullable=True),
        sa.Column("prediction", sa.Text(), nullable=False),
        sa.Column("scores", sa.Text(), nullable=True),
        sa.Column("attributes", sa.Text(), nullable=True),
        sa.Column("pred_partition", sa.Integer(), nullable=False),
        sa.Column("pred_offset", sa.BigInteger(), nullable=False),
        sa.Column("labelled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("system_id", "event_id"),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_evaluator_join_system_ts", "evaluator_join", ["system_id", "ts"])
    op.create_table(
        "evaluator_waiting",
        _id("system_id"),
        _id("prediction_id"),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("actual", sa.Text(), nullable=False),
        sa.Column("label_time", sa.Float(), nullable=False),
        sa.Column("out_partition", sa.Integer(), nullable=False),
        sa.Column("out_offset", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("system_id", "prediction_id"),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_evaluator_waiting_system_ts", "evaluator_waiting", ["system_id", "ts"])
    op.create_table(
        "evaluator_partition",
        _id("stream", 255),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("offsets", sa.JSON(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("stream", "partition"),
    )
    for table in ("evaluator_window", "evaluator_label_window"):
        op.create_table(
            table,
            *_window_key(),
            sa.Column("state", sa.Text(), nullable=False),
            sa.PrimaryKeyConstraint("stream", "partition", "system_id", "size", "start"),
        )
    op.create_table(
        "evaluator_evaluation",
        _id("id", 255),
        _id("system_id"),
        _id("objective_id"),
        sa.Column("objective_version", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_s", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("label_cutoff", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_evaluator_evaluation_objective", "evaluator_evaluation", ["objective_id", "window_end"]
    )
    op.create_index("ix_evaluator_evaluation_system_id", "evaluator_evaluation", ["system_id"])
    op.create_index(
        "ix_evaluator_evaluation_window", "evaluator_evaluation", ["system_id", "window_s", "size"]
    )
    op.create_table(
        "evaluator_reference",
        _id("hash"),
        sa.Column("profile", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("hash"),
    )


def downgrade() -> None:
    for table in (
        "evaluator_reference",
        "evaluator_evaluation",
        "evaluator_label_window",
        "evaluator_window",
        "evaluator_partition",
        "evaluator_waiting",
        "evaluator_join",
    ):
        op.drop_table(table)
