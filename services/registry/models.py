"""Tables the registry owns (created and changed only by ``migrations/``), and
``ObjectiveBase``, the fields of an objective the table and the HTTP schemas share."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

from sqlalchemy import JSON, BigInteger, Column, Dialect, Text, TypeDecorator, UniqueConstraint
from sqlmodel import AutoString, Field, SQLModel

from shared.contracts import (
    DEFAULT_LABEL_HORIZON_SECONDS,
    IDENTIFIER_MAX_LENGTH,
    MODEL_VERSION_MAX_LENGTH,
    Comparator,
    ObjectiveStatus,
    Severity,
)

__all__ = [
    "AISystem",
    "IngestKey",
    "ModelVersion",
    "ObjectiveBase",
    "ObjectiveKey",
    "ObjectiveVersion",
    "ReferenceDataset",
]


E = TypeVar("E", bound=StrEnum)


def _now() -> datetime:
    return datetime.now(UTC)


class EnumText(TypeDecorator[E], Generic[E]):
    """An enumeration stored as its text (a plain VARCHAR column) and read back as the
    enumeration."""

    impl = AutoString
    cache_ok = True

    def __init__(self, enum: type[E]) -> None:
        super().__init__()
        self.enum = enum

    def process_bind_param(self, value: E | str | None, dialect: Dialect) -> str | None:
        return None if value is None else self.enum(value).value

    def process_result_value(self, value: Any, dialect: Dialect) -> E | None:
        return None if value is None else self.enum(value)


class AISystem(SQLModel, table=True):
    """A monitored AI system; ``reference_hash`` names its current reference profile."""

    __tablename__ = "registry_system"

    id: str = Field(primary_key=True, max_length=IDENTIFIER_MAX_LENGTH)
    name: str
    owner: str
    intended_purpose: str = ""
    risk_level: str = Field(default="unassessed", max_length=32)
    task: str
    features: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    prediction: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    attributes: list[str] = Field(sa_column=Column(JSON, nullable=False))
    label_horizon_seconds: int = DEFAULT_LABEL_HORIZON_SECONDS
    status: str = "active"
    reference_hash: str | None = Field(default=None, max_length=80)
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)
    updated_by: str = ""


class ObjectiveBase(SQLModel):
    """What an objective asks (the contract's ``Objective`` without its identity and change
    record): stored in ``ObjectiveVersion``, sent in ``ObjectiveCreate``/``ObjectiveUpdate``,
    answered in ``ObjectivePublic``. Enumerations are stored as their text."""

    metric: str = Field(min_length=1)
    parameters: dict[str, str] = Field(default_factory=dict, sa_type=JSON)
    comparator: Comparator = Field(sa_type=EnumText(Comparator))
    threshold: float
    window_seconds: int = Field(ge=1)
    min_samples: int = Field(default=1, ge=1)
    severity: Severity = Field(default=Severity.MINOR, sa_type=EnumText(Severity))
    pending_windows: int = Field(default=1, ge=1)
    clearing_windows: int = Field(default=1, ge=1)
    owner: str = Field(min_length=1)
    rationale: str = ""
    references: list[str] = Field(default_factory=list, sa_type=JSON)
    """Clauses and controls the objective is evidence for (``"ISO/IEC 42001 6.2"``)."""
    status: ObjectiveStatus = Field(
        default=ObjectiveStatus.ACTIVE, sa_type=EnumText(ObjectiveStatus)
    )


class ObjectiveKey(SQLModel):
    """Which objective version a row is: the table's leading columns, declared in a base of
    their own so that they come first, where the migrations put them."""

    pk: int | None = Field(default=None, primary_key=True)
    objective_id: str = Field(index=True, max_length=IDENTIFIER_MAX_LENGTH)
    version: int
    system_id: str = Field(
        index=True, foreign_key="registry_system.id", max_length=IDENTIFIER_MAX_LENGTH
    )


class ObjectiveVersion(ObjectiveBase, ObjectiveKey, table=True):
    """One version of an objective; a change never edits a row, it adds the next version."""

    __tablename__ = "registry_objective_version"
    __table_args__ = (
        # ids are scoped by system: one template of objectives applies to many systems
        UniqueConstraint(
            "system_id", "objective_id", "version", name="uq_registry_objective_version"
        ),
    )

    changed_by: str
    changed_at: datetime = Field(default_factory=_now)
    change_reason: str = ""

    @property
    def id(self) -> str:
        """The objective's id, as the contract's ``Objective`` and ``ObjectivePublic`` name it:
        both read a row by attribute (``model_validate(row, from_attributes=True)``)."""
        return self.objective_id


class ModelVersion(SQLModel, table=True):
    """A model version deployed for a system, optionally with its own reference dataset."""

    __tablename__ = "registry_model_version"
    __table_args__ = (UniqueConstraint("system_id", "version"),)

    pk: int | None = Field(default=None, primary_key=True)
    system_id: str = Field(
        index=True, foreign_key="registry_system.id", max_length=IDENTIFIER_MAX_LENGTH
    )
    version: str = Field(max_length=MODEL_VERSION_MAX_LENGTH)
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
    system_id: str = Field(
        index=True, foreign_key="registry_system.id", max_length=IDENTIFIER_MAX_LENGTH
    )
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
    model_version: str | None = Field(default=None, max_length=MODEL_VERSION_MAX_LENGTH)
    uploaded_by: str
    uploaded_at: datetime = Field(default_factory=_now)


class IngestKey(SQLModel, table=True):
    """An ingest API key of one system: only its hash is kept; revoked keys stay for audit."""

    __tablename__ = "registry_ingest_key"

    id: str = Field(primary_key=True, max_length=32)
    system_id: str = Field(
        index=True, foreign_key="registry_system.id", max_length=IDENTIFIER_MAX_LENGTH
    )
    name: str = ""
    key_hash: str = Field(unique=True, max_length=64)
    prefix: str = Field(max_length=16)
    """The key's first characters, to recognise it in a list."""
    created_by: str
    created_at: datetime = Field(default_factory=_now)
    revoked_at: datetime | None = None
    revoked_by: str | None = None
