"""Versioned event contracts carried on the bus, and the one declaration of the event rules
(identifier, model-version and timestamp forms, the label-horizon default) the fast paths share.

Every value on a topic is one of these models serialised as JSON with orjson. The
``schema_version`` field lets consumers refuse (and dead-letter) a future version they do not
understand instead of misreading it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
)

__all__ = [
    "CONTRACTS",
    "DEFAULT_LABEL_HORIZON_SECONDS",
    "IDENTIFIER_MAX_LENGTH",
    "IDENTIFIER_PATTERN",
    "MODEL_VERSION_MAX_LENGTH",
    "SCHEMA_VERSION",
    "TIMESTAMP_PATTERN",
    "Comparator",
    "Contract",
    "EvaluationResult",
    "EvaluationStatus",
    "Evidence",
    "FeatureSpec",
    "FeatureType",
    "Identifier",
    "ImprovementLogEntry",
    "ModelVersionName",
    "NonconformityChange",
    "NonconformityChanged",
    "Objective",
    "ObjectiveStatus",
    "OffsetRange",
    "OutcomeEvent",
    "Part",
    "PredictionEvent",
    "SamplingBand",
    "Scalar",
    "Severity",
    "SystemSnapshot",
    "Task",
    "decode",
    "decode_nonconformity_message",
    "encode",
]

SCHEMA_VERSION: Literal[1] = 1

# --- the event rules, declared once: ingest's and the evaluator's fast paths and the registry
# derive theirs from these (the SDK keeps a copy, compared with these by tests/sdk) -----------

IDENTIFIER_MAX_LENGTH = 128
"""Characters in an id chosen by a client (event, system, objective, attribute)."""
_IDENTIFIER_FIRST = "[A-Za-z0-9]"
_IDENTIFIER_REST = r"[A-Za-z0-9._:\-]"
IDENTIFIER_PATTERN = rf"{_IDENTIFIER_FIRST}{_IDENTIFIER_REST}{{0,{IDENTIFIER_MAX_LENGTH - 1}}}"
"""A whole identifier, length included, unanchored: ``re.fullmatch`` it, or anchor it as the
regex engine at hand needs (``^…$`` for RE2 and Rust, ``^…\\Z`` for Python's ``re.search``)."""

MODEL_VERSION_MAX_LENGTH = 128
"""Characters in a model version (any characters, at least one)."""

TIMESTAMP_PATTERN = (
    r"[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])[T ]"
    r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
"""The event timestamps the fast paths take as written, unanchored: ISO 8601 with seconds, at
most microseconds and an offset, which pydantic, ``datetime.fromisoformat`` and Arrow read alike.
The contract (``AwareDatetime``) takes more; the day of the month is still to check
(2026-02-30 matches)."""

DEFAULT_LABEL_HORIZON_SECONDS = 7 * 24 * 3600
"""How long outcomes may follow their predictions when a system does not say (7 days)."""

Identifier = Annotated[
    str,
    Field(
        min_length=1,
        max_length=IDENTIFIER_MAX_LENGTH,
        pattern=rf"^{_IDENTIFIER_FIRST}{_IDENTIFIER_REST}*$",
    ),
]
"""Ids chosen by clients: printable, no spaces, safe as a Kafka key and a URL segment."""

ModelVersionName = Annotated[str, Field(min_length=1, max_length=MODEL_VERSION_MAX_LENGTH)]
"""A model version as a client names it."""

Scalar = StrictBool | StrictInt | StrictFloat | StrictStr
"""A feature, attribute, prediction or label value (strict: "1" is not 1)."""


class Part(BaseModel):
    """Base of every contract and of the parts they embed: immutable, strict, finite."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Contract(Part):
    """A top-level bus message; ``schema_version`` lets consumers refuse unknown versions."""

    schema_version: Literal[1] = SCHEMA_VERSION


class PredictionEvent(Contract):
    event_id: Identifier
    system_id: Identifier
    model_version: ModelVersionName
    timestamp: AwareDatetime
    features: dict[str, Scalar | None]
    prediction: Scalar
    scores: dict[str, Annotated[float, Field(ge=0.0, le=1.0)]] | None = None
    attributes: dict[str, Scalar | None] = Field(default_factory=dict)
    latency_ms: Annotated[float, Field(ge=0.0)] | None = None


class OutcomeEvent(Contract):
    event_id: Identifier
    system_id: Identifier
    prediction_id: Identifier
    timestamp: AwareDatetime
    actual: Scalar


class EvaluationStatus(StrEnum):
    PASS = "pass"
    BREACH = "breach"
    INSUFFICIENT_DATA = "insufficient_data"
    ERROR = "error"


class Comparator(StrEnum):
    """How a metric value must relate to the threshold for the objective to be met."""

    LT = "lt"
    LE = "le"
    GT = "gt"
    GE = "ge"

    def met(self, value: float, threshold: float) -> bool:
        match self:
            case Comparator.LT:
                return value < threshold
            case Comparator.LE:
                return value <= threshold
            case Comparator.GT:
                return value > threshold
            case Comparator.GE:
                return value >= threshold


class Severity(StrEnum):
    MAJOR = "major"
    MINOR = "minor"
    OBSERVATION = "observation"


class ObjectiveStatus(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    RETIRED = "retired"


class Task(StrEnum):
    BINARY_CLASSIFICATION = "binary_classification"
    MULTICLASS_CLASSIFICATION = "multiclass_classification"
    REGRESSION = "regression"


class FeatureType(StrEnum):
    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    BOOLEAN = "boolean"


class OffsetRange(Part):
    topic: str
    partition: int
    first: int
    last: int


class SamplingBand(Part):
    """How far the value would typically move on another window of the same size: value +/-
    ``multiplier`` standard errors, clipped to the metric's range (NannyML's confidence band)."""

    sampling_error: Annotated[float, Field(ge=0.0)]
    lower: float
    upper: float
    multiplier: float = 3.0


class Evidence(Part):
    offsets: list[OffsetRange] = Field(default_factory=list)
    reference_hash: str | None = None
    objective_version: int
    band: SamplingBand | None = None
    """The sampling-error band of a performance value (estimated or realised)."""


class EvaluationResult(Contract):
    id: str
    system_id: Identifier
    model_version: str
    objective_id: Identifier
    objective_version: int
    window_start: AwareDatetime
    window_end: AwareDatetime
    metric: str
    parameters: dict[str, str] = Field(default_factory=dict)
    value: float | None
    threshold: float
    comparator: Comparator
    status: EvaluationStatus
    n_samples: int
    label_coverage: float | None = None
    estimated: bool = False
    approximate: bool = False
    """The value is within a stated bound of the metric on every event, not equal to it (a drift
    column beyond the values kept exactly); ``detail`` gives the bound and the sizes."""
    revision: int = 0
    detail: str | None = None
    evidence: Evidence


class FeatureSpec(Part):
    name: Annotated[str, Field(min_length=1, max_length=128)]
    type: FeatureType
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None


class Objective(Part):
    """An AI objective (ISO/IEC 42001 clause 6.2) at one version."""

    id: Identifier
    version: int
    system_id: Identifier
    metric: str
    parameters: dict[str, str] = Field(default_factory=dict)
    comparator: Comparator
    threshold: float
    window_seconds: Annotated[int, Field(ge=1)]
    min_samples: Annotated[int, Field(ge=1)] = 1
    severity: Severity = Severity.MINOR
    pending_windows: Annotated[int, Field(ge=1)] = 1
    clearing_windows: Annotated[int, Field(ge=1)] = 1
    owner: str
    rationale: str = ""
    references: list[str] = Field(default_factory=list)
    status: ObjectiveStatus = ObjectiveStatus.ACTIVE
    changed_by: str
    changed_at: AwareDatetime
    change_reason: str = ""


class SystemSnapshot(Contract):
    """The current definition of one AI system: the value of the compacted registry topic."""

    system_id: Identifier
    name: str
    owner: str
    task: Task
    features: list[FeatureSpec]
    label_horizon_seconds: int = DEFAULT_LABEL_HORIZON_SECONDS
    status: Literal["active", "retired"] = "active"
    objectives: list[Objective] = Field(default_factory=list)
    reference_hash: str | None = None
    """Content hash of the current reference profile (fetched from the registry by hash)."""
    ingest_key_hashes: list[str] = Field(default_factory=list)
    """SHA-256 hashes (shared.auth.hash_api_key) of the system's active ingest API keys."""
    updated_at: AwareDatetime


class NonconformityChange(StrEnum):
    RAISED = "raised"
    OCCURRENCE = "occurrence"
    CLEARED = "cleared"
    STATUS_CHANGED = "status_changed"


class NonconformityChanged(Contract):
    """A nonconformity record changed (value of the ``nonconformities`` topic, key: its id)."""

    message: Literal["nonconformity_changed"] = "nonconformity_changed"
    """Tells it from an :class:`ImprovementLogEntry` on the same topic (absent = this)."""
    nonconformity_id: str
    fingerprint: str
    system_id: Identifier
    objective_id: Identifier
    objective_version: int
    severity: Severity
    status: str
    change: NonconformityChange
    occurrences: int
    evaluation_id: str | None = None
    occurred_at: datetime


class ImprovementLogEntry(Contract):
    """One entry of the alerts service's continual improvement log (ISO/IEC 42001 clause
    10.1), published on the ``nonconformities`` topic for every entry, about a record or not
    (key: ``subject``). ``hash`` = SHA-256(``prev_hash`` || canonical bytes), where the
    canonical bytes are the compact sorted-key JSON of {seq, at (UTC, no offset, microseconds),
    actor, kind, subject, before, after}: a consumer can verify the chain from the topic."""

    message: Literal["improvement_log_entry"] = "improvement_log_entry"
    seq: Annotated[int, Field(ge=1)]
    at: AwareDatetime
    actor: str
    kind: str
    subject: str
    """A record id, ``silence:<id>``, ``fingerprint:<fp>`` or ``objective:<system>/<id>``."""
    nonconformity_id: str | None = None
    """The record the entry is about (None for silences, objectives, held-back raises)."""
    before: Any = None
    after: Any = None
    prev_hash: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    hash: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


C = TypeVar("C", bound=Contract)

CONTRACTS: dict[str, type[Contract]] = {
    "PredictionEvent": PredictionEvent,
    "OutcomeEvent": OutcomeEvent,
    "EvaluationResult": EvaluationResult,
    "SystemSnapshot": SystemSnapshot,
    "NonconformityChanged": NonconformityChanged,
    "ImprovementLogEntry": ImprovementLogEntry,
}


def encode(contract: Contract) -> bytes:
    """Serialise a contract for the bus."""
    return orjson.dumps(contract.model_dump(mode="json"))


def decode_nonconformity_message(data: bytes | None) -> NonconformityChanged | ImprovementLogEntry:
    """A value of the ``nonconformities`` topic, by its ``message`` field (absent: a
    NonconformityChanged, as written before log entries were published)."""
    if data is None:
        raise ValueError("empty message value")
    parsed: Any = orjson.loads(data)
    if isinstance(parsed, dict) and parsed.get("message") == "improvement_log_entry":
        return ImprovementLogEntry.model_validate(parsed)
    return NonconformityChanged.model_validate(parsed)


def decode(model: type[C], data: bytes | None) -> C:
    """Parse bytes from the bus; raises ``ValueError`` (pydantic's ValidationError) if invalid."""
    if data is None:
        raise ValueError("empty message value")
    parsed: Any = orjson.loads(data)
    return model.model_validate(parsed)
