"""Tables the alerts service owns."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Field, SQLModel

__all__ = ["AlertState", "Nonconformity", "ProcessedEvaluation"]


def _now() -> datetime:
    return datetime.now(UTC)


class Nonconformity(SQLModel, table=True):
    __tablename__ = "alerts_nonconformity"

    id: str = Field(primary_key=True, max_length=64)
    fingerprint: str = Field(index=True, max_length=64)
    system_id: str = Field(index=True, max_length=128)
    objective_id: str = Field(max_length=128)
    objective_version: int
    metric: str
    severity: str
    status: str = "raised"
    open: bool = True
    condition_cleared: bool = False
    occurrences: int = 1
    first_evaluation_id: str
    last_evaluation_id: str
    last_value: float | None = None
    threshold: float
    comparator: str
    raised_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)


class AlertState(SQLModel, table=True):
    __tablename__ = "alerts_state"

    fingerprint: str = Field(primary_key=True, max_length=64)
    consecutive_breaches: int = 0
    consecutive_passes: int = 0


class ProcessedEvaluation(SQLModel, table=True):
    """Evaluations already applied, so a redelivered one changes nothing."""

    __tablename__ = "alerts_processed_evaluation"

    evaluation_id: str = Field(primary_key=True, max_length=255)
    processed_at: datetime = Field(default_factory=_now)
