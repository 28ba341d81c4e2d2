"""Tables the registry owns."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

__all__ = ["AISystem", "ObjectiveVersion"]


def _now() -> datetime:
    return datetime.now(UTC)


class AISystem(SQLModel, table=True):
    __tablename__ = "registry_system"

    id: str = Field(primary_key=True, max_length=128)
    name: str
    owner: str
    task: str
    features: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    label_horizon_seconds: int = 7 * 24 * 3600
    status: str = "active"
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)


class ObjectiveVersion(SQLModel, table=True):
    """One version of an objective; a change never edits a row, it adds the next version."""

    __tablename__ = "registry_objective_version"
    __table_args__ = (UniqueConstraint("objective_id", "version"),)

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
