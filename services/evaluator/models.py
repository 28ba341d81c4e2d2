"""Tables the evaluator owns: the durable join state and the evaluations it published."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

__all__ = ["EvaluationRow", "OutcomeRow", "PredictionRow"]


class PredictionRow(SQLModel, table=True):
    __tablename__ = "evaluator_prediction"
    __table_args__ = (Index("ix_evaluator_prediction_system_ts", "system_id", "ts"),)

    system_id: str = Field(primary_key=True, max_length=128)
    event_id: str = Field(primary_key=True, max_length=128)
    model_version: str
    ts: datetime
    prediction: Any = Field(sa_column=Column(JSON, nullable=False))
    features: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    partition: int
    offset: int


class OutcomeRow(SQLModel, table=True):
    __tablename__ = "evaluator_outcome"
    __table_args__ = (Index("ix_evaluator_outcome_prediction", "system_id", "prediction_id"),)

    system_id: str = Field(primary_key=True, max_length=128)
    event_id: str = Field(primary_key=True, max_length=128)
    prediction_id: str = Field(max_length=128)
    ts: datetime
    actual: Any = Field(sa_column=Column(JSON, nullable=False))
    partition: int
    offset: int


class EvaluationRow(SQLModel, table=True):
    __tablename__ = "evaluator_evaluation"
    __table_args__ = (Index("ix_evaluator_evaluation_objective", "objective_id", "window_end"),)

    id: str = Field(primary_key=True, max_length=255)
    system_id: str = Field(index=True, max_length=128)
    objective_id: str = Field(max_length=128)
    objective_version: int
    window_start: datetime
    window_end: datetime
    revision: int
    status: str
    value: float | None
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
