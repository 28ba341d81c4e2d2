"""Tables the registry owns (created and changed only by ``migrations/``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

__all__ = ["AISystem", "IngestKey", "ModelVersion", "ObjectiveVersion", "ReferenceDataset"]


def _now() -> datetime:
    return datetime.now(UTC)


class AISystem(SQLModel, table=True):
    """A monitored AI system; ``reference_hash`` names its current reference profile."""

    __tablename__ = "registry_system"

    id: str = Field(primary_key=True, max_length=128)
    name: str
    owner: str
    intended_purpose: str = ""
    risk_level: str = Field(default="unassessed", max_length=32)
    task: str
    features: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    prediction: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    attributes: list[str] = Field(sa_column=Column(JSON, nullable=False))
    label_horizon_seconds: int = 7 * 24 * 3600
    status: str = "active"
    reference_hash: str | None = Field(default=None, max_length=80)
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)
    updated_by: str = ""


class ObjectiveVersion(SQLModel, table=True):
    """One version of an objective; a change never edits a row, it adds the next version."""

    __tablename__ = "registry_objective_version"
    __table_args__ = (
        # ids are scoped by system: one template of objectives applies to many systems
        UniqueConstraint(
            "system_id", "objective_id", "version", name="uq_registry_objective_version"
        ),
    )

    pk: int | None = Field(default=None, primary_key=True)
    objective_id: str = Field(index=True, max_length=128)
    version: int
    system_id: str = Field(index=True, foreign_key="registry_system.id", max_length=128)
    metric: str
    parameters: dict[str, str] = Field(sa_column=Column(JSON, nullable=False))
    comparator: str
    threshold: float
    window_seconds: int
    min_samples: int
    severity: str
    pending_windows: int
    clearing_windows: int
    owner: str
    rationale: str
    references: list[str] = Field(sa_column=Column(JSON, nullable=False))
    status: str
    changed_by: str
    changed_at: datetime = Field(default_factory=_now)
    change_reason: str = ""


class ModelVersion(SQLModel, table=True):
    """A model version deployed for a system, optionally with its own reference dataset."""

    __tablename__ = "registry_model_version"
    __table_args__ = (UniqueConstraint("system_id", "version"),)

    pk: int | None = Field(default=None, primary_key=True)
    system_id: str = Field(index=True, foreign_key="registry_system.id", max_length=128)
    version: str = Field(max_length=128)
    notes: str = ""
    artifact_hash: str | None = Field(default=None, max_length=200)
    reference_hash: str | None = Field(default=None, max_length=80)
    registered_by: str
    registered_at: datetime = Field(default_factory=_now)


class ReferenceDataset(SQLModel, table=True):
    """An uploaded reference dataset: where its validated copy lives and its profile."""

    __tablename__ = "registry_reference"
    __table_args__ = (UniqueConstraint("system_id", "profile_hash"),)

    pk: int | None = Field(default=None, primary_key=True)
    system_id: str = Field(index=True, foreign_key="registry_system.id", max_length=128)
    profile_hash: str = Field(index=True, max_length=80)
    data_sha256: str = Field(max_length=64)
    """SHA-256 of the bytes uploaded."""
    filename: str = ""
    format: str = Field(max_length=16)
    size_bytes: int = Field(sa_type=BigInteger)
    n_rows: int = Field(sa_type=BigInteger)
    data_path: str
    """The validated, normalised Parquet copy (relative to the settings' reference_dir)."""
    profile: str = Field(sa_column=Column(Text, nullable=False))
    """``ReferenceProfile.canonical_json()``: the bytes its hash is taken over."""
    model_version: str | None = Field(default=None, max_length=128)
    uploaded_by: str
    uploaded_at: datetime = Field(default_factory=_now)


class IngestKey(SQLModel, table=True):
    """An ingest API key of one system: only its hash is kept; revoked keys stay for audit."""

    __tablename__ = "registry_ingest_key"

    id: str = Field(primary_key=True, max_length=32)
    system_id: str = Field(index=True, foreign_key="registry_system.id", max_length=128)
    name: str = ""
    key_hash: str = Field(unique=True, max_length=64)
    prefix: str = Field(max_length=16)
    """The key's first characters, to recognise it in a list."""
    created_by: str
    created_at: datetime = Field(default_factory=_now)
    revoked_at: datetime | None = None
    revoked_by: str | None = None
