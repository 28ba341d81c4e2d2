"""alerts: the clause 10.2 record, corrective actions, occurrences, window verdicts,
inhibitions, silences, reference numbers, the hash-chained continual improvement log and
webhook notifications.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _text(name: str, *, nullable: bool = False, length: int | None = None) -> sa.Column[object]:
    return sa.Column(name, sa.String(length=length), nullable=nullable)


_NONCONFORMITY_COLUMNS: list[tuple[str, sa.types.TypeEngine[Any], bool, str | None]] = [
    ("reference", sa.String(length=32), True, None),
    ("source", sa.String(), False, "monitoring"),
    ("title", sa.String(), False, ""),
    ("description", sa.String(), False, ""),
    ("classification", sa.String(), False, "minor"),
    ("owner", sa.String(), True, None),
    ("due_at", sa.DateTime(timezone=True), True, None),
    ("created_by", sa.String(), False, "alerts"),
    ("recurrence_of", sa.String(length=64), True, None),
    ("triage_decision", sa.String(), True, None),
    ("rejection_reason", sa.String(), True, None),
    ("duplicate_of", sa.String(), True, None),
    ("containment", sa.String(), True, None),
    ("consequences", sa.String(), True, None),
    ("root_cause_method", sa.String(), True, None),
    ("root_cause", sa.String(), True, None),
    ("contributing_causes", sa.JSON(), True, None),
    ("review_method", sa.String(), True, None),
    ("review_criteria", sa.String(), True, None),
    ("review_windows", sa.Integer(), True, None),
    ("reviewer", sa.String(), True, None),
    ("review_result", sa.String(), True, None),
    ("review_evidence", sa.JSON(), True, None),
    ("closed_at", sa.DateTime(timezone=True), True, None),
]


def upgrade() -> None:
    with op.batch_alter_table("alerts_nonconformity") as batch:
        for name, type_, nullable, default in _NONCONFORMITY_COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=nullable, server_default=default))
    op.execute("UPDATE alerts_nonconformity SET classification = severity")
    with op.batch_alter_table("alerts_nonconformity") as batch:
        for name, _type, _nullable, default in _NONCONFORMITY_COLUMNS:
            if default is not None:
                batch.alter_column(name, server_default=None)
        batch.create_index("ix_alerts_nonconformity_reference", ["reference"])
    op.create_table(
        "alerts_corrective_action",
        _text("id", length=64),
        _text("nonconformity_id", length=64),
        _text("description"),
        _text("type"),
        _text("owner"),
        _timestamp("due_at"),
        _text("status"),
        sa.Column("evidence_links", sa.JSON(), nullable=True),
        _text("created_by"),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        _timestamp("reminded_at", nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_alerts_corrective_action_nonconformity_id",
        "alerts_corrective_action",
        ["nonconformity_id"],
    )
    op.create_table(
        "alerts_occurrence",
        sa.Column("id", sa.Integer(), nullable=False),
        _text("nonconformity_id", length=64),
        _text("evaluation_id", length=255),
        sa.Column("objective_version", sa.Integer(), nullable=False),
        _timestamp("window_start"),
        _timestamp("window_end"),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("withdrawn", sa.Boolean(), nullable=False),
        _timestamp("recorded_at"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_alerts_occurrence_nonconformity_id", "alerts_occurrence", ["nonconformity_id"]
    )
    op.create_table(
        "alerts_window_verdict",
        _text("fingerprint", length=64),
        _timestamp("window_start"),
        _text("evaluation_id", length=255),
        sa.Column("revision", sa.Integer(), nullable=False),
        _text("status"),
        sa.PrimaryKeyConstraint("fingerprint", "window_start"),
    )
    op.create_table(
        "alerts_inhibition",
        _text("system_id", length=128),
        _timestamp("window_start"),
        _text("evaluation_id", length=255),
        _text("reason"),
        sa.PrimaryKeyConstraint("system_id", "window_start"),
    )
    op.create_table(
        "alerts_silence",
        _text("id", length=64),
        sa.Column("matchers", sa.JSON(), nullable=True),
        _text("author"),
        _text("reason"),
        _timestamp("starts_at"),
        _timestamp("expires_at"),
        _text("expired_by", nullable=True),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "alerts_reference_counter",
        sa.Column("year", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("year"),
    )
    op.create_table(
        "alerts_log_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        _text("hash", length=64),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "alerts_log",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        _timestamp("at"),
        _text("actor"),
        _text("kind", length=64),
        _text("subject", length=255),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        _text("prev_hash", length=64),
        _text("hash", length=64),
        sa.PrimaryKeyConstraint("seq"),
    )
    head = sa.table(
        "alerts_log_head",
        sa.column("id", sa.Integer()),
        sa.column("seq", sa.Integer()),
        sa.column("hash", sa.String()),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": "0" * 64}])  # the chain's genesis
    op.create_index("ix_alerts_log_kind", "alerts_log", ["kind"])
    op.create_index("ix_alerts_log_subject", "alerts_log", ["subject"])
    op.create_table(
        "alerts_notification",
        sa.Column("id", sa.Integer(), nullable=False),
        _text("receiver"),
        _text("url"),
        sa.Column("payload", sa.JSON(), nullable=True),
        _text("status", length=16),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _timestamp("next_attempt_at"),
        _text("last_error", nullable=True),
        sa.Column("log_seq", sa.Integer(), nullable=True),
        _timestamp("created_at"),
        _timestamp("delivered_at", nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_alerts_notification_status", "alerts_notification", ["status"])
    op.create_table(
        "alerts_notify_cursor",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "alerts_seen_objective",
        _text("system_id", length=128),
        _text("objective_id", length=128),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("system_id", "objective_id"),
    )


def downgrade() -> None:
    op.drop_table("alerts_notify_cursor")
    op.drop_index("ix_alerts_notification_status", "alerts_notification")
    op.drop_table("alerts_notification")
    op.drop_table("alerts_seen_objective")
    op.drop_index("ix_alerts_log_subject", "alerts_log")
    op.drop_index("ix_alerts_log_kind", "alerts_log")
    op.drop_table("alerts_log")
    op.drop_table("alerts_log_head")
    op.drop_table("alerts_reference_counter")
    op.drop_table("alerts_silence")
    op.drop_table("alerts_inhibition")
    op.drop_table("alerts_window_verdict")
    op.drop_index("ix_alerts_occurrence_nonconformity_id", "alerts_occurrence")
    op.drop_table("alerts_occurrence")
    op.drop_index("ix_alerts_corrective_action_nonconformity_id", "alerts_corrective_action")
    op.drop_table("alerts_corrective_action")
    with op.batch_alter_table("alerts_nonconformity") as batch:
        batch.drop_index("ix_alerts_nonconformity_reference")
        for name, _type, _nullable, _default in reversed(_NONCONFORMITY_COLUMNS):
            batch.drop_column(name)
