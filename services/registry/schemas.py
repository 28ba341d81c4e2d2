"""HTTP models of the registry API (an objective's shared fields are ``models.ObjectiveBase``)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.contracts import (
    DEFAULT_LABEL_HORIZON_SECONDS,
    FeatureSpec,
    Identifier,
    ModelVersionName,
    Task,
)

from .models import ObjectiveBase

__all__ = [
    "MAX_ALERT_WINDOWS",
    "MAX_LABEL_HORIZON_SECONDS",
    "MAX_MIN_SAMPLES",
    "MAX_WINDOW_SECONDS",
    "ApplyResult",
    "Declaration",
    "DeclaredObjective",
    "IngestKeyCreate",
    "IngestKeyCreated",
    "IngestKeyPublic",
    "ModelVersionCreate",
    "ModelVersionPublic",
    "ObjectiveCreate",
    "ObjectiveInput",
    "ObjectivePublic",
    "ObjectiveUpdate",
    "PredictionSchema",
    "ReferencePublic",
    "ReferenceSelect",
    "RiskLevel",
    "SystemCreate",
    "SystemInput",
    "SystemPublic",
    "SystemStatus",
    "SystemUpdate",
]

Name = Annotated[str, Field(min_length=1, max_length=200)]
Actor = Annotated[str, Field(min_length=1, max_length=200)]

DAY_SECONDS = 86_400
MAX_WINDOW_SECONDS = 366 * DAY_SECONDS
"""An objective's evaluation window: at most a (leap) year."""
MAX_LABEL_HORIZON_SECONDS = 731 * DAY_SECONDS
"""How long outcomes may follow their predictions: at most two years."""
MAX_MIN_SAMPLES = 1_000_000_000
MAX_ALERT_WINDOWS = 1_000
"""Consecutive windows before raising (``pending_windows``) or clearing (``clearing_windows``)."""

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class RiskLevel(StrEnum):
    """Risk classification of the system (EU AI Act tiers; ``unassessed`` until assessed)."""

    UNASSESSED = "unassessed"
    MINIMAL = "minimal"
    LIMITED = "limited"
    HIGH = "high"


class SystemStatus(StrEnum):
    ACTIVE = "active"
    RETIRED = "retired"


class PredictionSchema(BaseModel):
    """What the model outputs: its class labels and which of them carry a probability score.

    Labels are category keys (``"1"`` for the integer 1). A reference dataset holds the
    prediction in a ``prediction`` column and each scored class's probability in
    ``score_<label>``.
    """

    model_config = ConfigDict(extra="forbid")

    classes: Annotated[list[Name], Field(min_length=2)] | None = None
    scores: list[Name] = Field(default_factory=list)

    @model_validator(mode="after")
    def _scores_are_classes(self) -> Self:
        if len(set(self.scores)) != len(self.scores):
            raise ValueError("scores: a class is listed twice")
        if self.classes is not None:
            if len(set(self.classes)) != len(self.classes):
                raise ValueError("classes: a class is listed twice")
            unknown = [s for s in self.scores if s not in self.classes]
            if unknown:
                raise ValueError(f"scores: {', '.join(unknown)} not among the classes")
        return self


class SystemBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    owner: Name
    intended_purpose: Annotated[str, Field(max_length=4000)] = ""
    risk_level: RiskLevel = RiskLevel.UNASSESSED
    task: Task
    features: Annotated[list[FeatureSpec], Field(min_length=1)]
    prediction: PredictionSchema = Field(default_factory=PredictionSchema)
    attributes: list[Identifier] = Field(default_factory=list)
    """Prediction attributes naming segments and fairness groups (not model inputs)."""
    label_horizon_seconds: Annotated[int, Field(ge=1)] = DEFAULT_LABEL_HORIZON_SECONDS

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        names = [f.name for f in self.features]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"features: {', '.join(twice)} declared more than once")
        if len(set(self.attributes)) != len(self.attributes):
            raise ValueError("attributes: an attribute is listed twice")
        if self.task is Task.REGRESSION and (self.prediction.classes or self.prediction.scores):
            raise ValueError("prediction: a regression has no classes or scores")
        classes = self.prediction.classes
        if self.task is Task.BINARY_CLASSIFICATION and classes is not None and len(classes) != 2:
            raise ValueError("prediction.classes: a binary classification has two classes")
        for feature in self.features:
            if feature.min is not None and feature.max is not None and feature.min > feature.max:
                raise ValueError(f"features: {feature.name} has min > max")
        return self


class SystemInput(SystemBase):
    """What a client sends: the stored shape, with numbers bounded (records stored before a
    bound existed stay readable through ``SystemBase``)."""

    label_horizon_seconds: Annotated[int, Field(ge=1, le=MAX_LABEL_HORIZON_SECONDS)] = (
        DEFAULT_LABEL_HORIZON_SECONDS
    )


class SystemCreate(SystemInput):
    id: Identifier


class SystemUpdate(SystemInput):
    """The whole new definition (PUT); ``status: retired`` retires the system."""

    status: SystemStatus = SystemStatus.ACTIVE


class SystemPublic(SystemBase):
    id: str
    status: SystemStatus
    reference_hash: str | None
    created_at: datetime
    updated_at: datetime
    updated_by: str


class ObjectiveInput(ObjectiveBase):
    """What a client sends: finite threshold, bounded counts and durations (versions stored
    before a bound existed stay readable through ``ObjectiveBase``)."""

    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]
    metric: Annotated[str, Field(min_length=1, max_length=64)]
    parameters: dict[str, Annotated[str, Field(max_length=200)]] = Field(default_factory=dict)
    threshold: FiniteFloat
    window_seconds: Annotated[int, Field(ge=1, le=MAX_WINDOW_SECONDS)]
    min_samples: Annotated[int, Field(ge=1, le=MAX_MIN_SAMPLES)] = 1
    pending_windows: Annotated[int, Field(ge=1, le=MAX_ALERT_WINDOWS)] = 1
    clearing_windows: Annotated[int, Field(ge=1, le=MAX_ALERT_WINDOWS)] = 1
    owner: Name
    rationale: Annotated[str, Field(max_length=4000)] = ""
    references: Annotated[list[Name], Field(max_length=100)] = Field(default_factory=list)


class ObjectiveCreate(ObjectiveInput):
    id: Identifier
    changed_by: Actor | None = None
    """Who: required without authentication; else the token's subject (must match if given)."""
    change_reason: str = "created"


class ObjectiveUpdate(ObjectiveInput):
    changed_by: Actor | None = None
    change_reason: Annotated[str, Field(min_length=1)]


class ObjectivePublic(ObjectiveBase):
    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]

    id: str
    version: int
    system_id: str
    changed_by: str
    changed_at: datetime
    change_reason: str


class ModelVersionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: ModelVersionName
    notes: Annotated[str, Field(max_length=4000)] = ""
    artifact_hash: Annotated[str, Field(min_length=1, max_length=200)] | None = None


class ModelVersionPublic(ModelVersionCreate):
    system_id: str
    reference_hash: str | None
    registered_by: str
    registered_at: datetime


class ReferencePublic(BaseModel):
    hash: str
    """Content hash of the profile (``GET /v1/references/{hash}``), as on the snapshot."""
    system_id: str
    model_version: str | None
    filename: str
    format: Literal["csv", "parquet"]
    size_bytes: int
    data_sha256: str
    n_rows: int
    uploaded_by: str
    uploaded_at: datetime
    current: bool
    """The system's current reference (the one on its snapshot)."""


class ReferenceSelect(BaseModel):
    """Make an uploaded reference current, for the system or for one model version."""

    model_config = ConfigDict(extra="forbid")

    hash: Annotated[str, Field(min_length=1, max_length=80)]
    model_version: ModelVersionName | None = None


class IngestKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(max_length=200)] = ""


class IngestKeyPublic(BaseModel):
    id: str
    system_id: str
    name: str
    prefix: str
    created_by: str
    created_at: datetime
    revoked_at: datetime | None
    revoked_by: str | None
    active: bool


class IngestKeyCreated(IngestKeyPublic):
    key: str
    """The key itself: shown in this response only, never again."""


class DeclaredObjective(ObjectiveInput):
    id: Identifier
    reason: Annotated[str, Field(min_length=1)] | None = None
    """Why this version: recorded as the change reason when the objective changes."""


class Declaration(BaseModel):
    """Monitoring as code: a system and its objectives as one YAML/JSON document."""

    model_config = ConfigDict(extra="forbid")

    system: SystemCreate
    objectives: list[DeclaredObjective] = Field(default_factory=list)
    changed_by: Actor | None = None
    reason: Annotated[str, Field(min_length=1)] | None = None
    """Default change reason for every change this document makes."""

    @model_validator(mode="after")
    def _unique_objectives(self) -> Self:
        ids = [o.id for o in self.objectives]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"objectives: {', '.join(twice)} declared more than once")
        return self


Outcome = Literal["created", "updated", "unchanged"]


class ApplyResult(BaseModel):
    system: Outcome
    objectives: dict[str, Outcome]
    versions: dict[str, int]
    """Each declared objective's current version after the apply."""
