"""HTTP models of the registry API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts import (
    Comparator,
    FeatureSpec,
    Identifier,
    ObjectiveStatus,
    Severity,
    Task,
)

__all__ = [
    "ObjectiveCreate",
    "ObjectivePublic",
    "ObjectiveUpdate",
    "SystemCreate",
    "SystemPublic",
]


class SystemBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=200)]
    owner: Annotated[str, Field(min_length=1, max_length=200)]
    task: Task
    features: Annotated[list[FeatureSpec], Field(min_length=1)]
    label_horizon_seconds: Annotated[int, Field(ge=1)] = 7 * 24 * 3600


class SystemCreate(SystemBase):
    id: Identifier


class SystemPublic(SystemBase):
    id: str
    status: str
    created_at: datetime
    updated_at: datetime


class ObjectiveBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: Annotated[str, Field(min_length=1)]
    parameters: dict[str, str] = Field(default_factory=dict)
    comparator: Comparator
    threshold: float
    window_seconds: Annotated[int, Field(ge=1)]
    min_samples: Annotated[int, Field(ge=1)] = 1
    severity: Severity = Severity.MINOR
    pending_windows: Annotated[int, Field(ge=1)] = 1
    clearing_windows: Annotated[int, Field(ge=1)] = 1
    owner: Annotated[str, Field(min_length=1)]
    rationale: str = ""
    references: list[str] = Field(default_factory=list)
    status: ObjectiveStatus = ObjectiveStatus.ACTIVE


class ObjectiveCreate(ObjectiveBase):
    id: Identifier
    changed_by: Annotated[str, Field(min_length=1)]
    change_reason: str = "created"


class ObjectiveUpdate(ObjectiveBase):
    changed_by: Annotated[str, Field(min_length=1)]
    change_reason: Annotated[str, Field(min_length=1)]


class ObjectivePublic(ObjectiveBase):
    id: str
    version: int
    system_id: str
    changed_by: str
    changed_at: datetime
    change_reason: str
