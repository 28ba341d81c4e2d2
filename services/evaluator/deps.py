"""What the evaluator's routes depend on, as ``Annotated`` FastAPI dependencies: the one place
that reads what ``create_app`` put on ``app.state``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from shared.db import Database, SessionDep
from shared.deps import FromState
from shared.outbox import OutboxRelay

from .metrics import EvaluatorMetrics
from .settings import Settings

__all__ = ["DatabaseDep", "MetricsDep", "RelayDep", "SessionDep", "SettingsDep"]

SettingsDep = Annotated[Settings, Depends(FromState[Settings]("settings"))]
DatabaseDep = Annotated[Database, Depends(FromState[Database]("db"))]
RelayDep = Annotated[OutboxRelay, Depends(FromState[OutboxRelay]("relay"))]
MetricsDep = Annotated[EvaluatorMetrics, Depends(FromState[EvaluatorMetrics]("metrics"))]
