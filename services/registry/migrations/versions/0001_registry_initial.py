"""registry: systems, objective versions, model versions, reference datasets, ingest keys.

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


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "registry_system",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("owner", sa.String(), nullable=False),
        sa.Column("intended_purpose", sa.String(), nullable=False),
        sa.Column("risk_level", sa.String(length=32), nullable=False),
        sa.Column("task", sa.String(), nullable=False),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("prediction", sa.JSON(), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("label_horizon_seconds", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("reference_hash", sa.String(length=80), nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.Column("updated_by", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "registry_objective_version",
        sa.Column("pk", sa.Integer(), nullable=False),
        sa.Column("objective_id", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("system_id", sa.String(length=128), nullable=False),
        sa.Column("metric", sa.String(), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("comparator", sa.String(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("window_seconds", sa.Integer(), nullable=False),
        sa.Column("min_samples", sa.Integer(), nullable=False),
        sa.Column("severity", sa.String(), nullable=False),
        sa.Column("pending_windows", sa.Integer(), nullable=False),
        sa.Column("clearing_windows", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(), nullable=False),
        sa.Column("rationale", sa.String(), nullable=False),
        sa.Column("references", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("changed_by", sa.String(), nullable=False),
        _timestamp("changed_at"),
        sa.Column("change_reason", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("objective_id", "version"),
        sa.ForeignKeyConstraint(["system_id"], ["registry_system.id"]),
    )
    op.create_index(
        "ix_registry_objective_version_objective_id",
        "registry_objective_version",
        ["objective_id"],
    )
    op.create_index(
        "ix_registry_objective_version_system_id", "registry_objective_version", ["system_id"]
    )
    op.create_table(
        "registry_model_version",
        sa.Column("pk", sa.Integer(), nullable=False),
        sa.Column("system_id", sa.String(length=128), nullable=False),
        sa.Column("version", sa.String(length=128), nullable=False),
        sa.Column("notes", sa.String(), nullable=False),
        sa.Column("artifact_hash", sa.String(length=200), nullable=True),
        sa.Column("reference_hash", sa.String(length=80), nullable=True),
        sa.Column("registered_by", sa.String(), nullable=False),
        _timestamp("registered_at"),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("system_id", "version"),
        sa.ForeignKeyConstraint(["system_id"], ["registry_system.id"]),
    )
    op.create_index("ix_registry_model_version_system_id", "registry_model_version", ["system_id"])
    op.create_table(
        "registry_reference",
        sa.Column("pk", sa.Integer(), nullable=False),
        sa.Column("system_id", sa.String(length=128), nullable=False),
        sa.Column("profile_hash", sa.String(length=80), nullable=False),
        sa.Column("data_sha256", sa.String(length=64), nullable=False),
        sa.Column("filename", sa.String(), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("n_rows", sa.BigInteger(), nullable=False),
        sa.Column("data_path", sa.String(), nullable=False),
        sa.Column("profile", sa.Text(), nullable=False),
        sa.Column("model_version", sa.String(length=128), nullable=True),
        sa.Column("uploaded_by", sa.String(), nullable=False),
        _timestamp("uploaded_at"),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("system_id", "profile_hash"),
        sa.ForeignKeyConstraint(["system_id"], ["registry_system.id"]),
    )
    op.create_index("ix_registry_reference_system_id", "registry_reference", ["system_id"])
    op.create_index("ix_registry_reference_profile_hash", "registry_reference", ["profile_hash"])
    op.create_table(
        "registry_ingest_key",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("system_id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.String(), nullable=False),
        _timestamp("created_at"),
        _timestamp("revoked_at", nullable=True),
        sa.Column("revoked_by", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
        sa.ForeignKeyConstraint(["system_id"], ["registry_system.id"]),
    )
    op.create_index("ix_registry_ingest_key_system_id", "registry_ingest_key", ["system_id"])


def downgrade() -> None:
    op.drop_table("registry_ingest_key")
    op.drop_table("registry_reference")
    op.drop_table("registry_model_version")
    op.drop_table("registry_objective_version")
    op.drop_table("registry_system")
