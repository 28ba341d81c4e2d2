"""Evaluator HTTP routes: the evaluations it wrote and the state of each system's stream."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from sqlmodel import col, select

from shared.auth import Principal, require_roles
from shared.contracts import EvaluationResult

from .deps import SessionDep
from .errors import NoStreamState
from .models import EvaluationRow, PartitionCheckpoint
from .windows import to_datetime

__all__ = ["LatePredictions", "LateWindow", "router"]

router = APIRouter(prefix="/v1", tags=["evaluator"])

Reader = Annotated[Principal, Depends(require_roles())]


@router.get("/evaluations", response_model=list[EvaluationResult])
def list_evaluations(
    session: SessionDep,
    _user: Reader,
    system_id: str | None = None,
    objective_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    stmt = select(EvaluationRow)
    if system_id is not None:
        stmt = stmt.where(EvaluationRow.system_id == system_id)
    if objective_id is not None:
        stmt = stmt.where(EvaluationRow.objective_id == objective_id)
    stmt = stmt.order_by(
        col(EvaluationRow.window_end).desc(), col(EvaluationRow.revision).desc()
    ).limit(limit)
    return [row.payload for row in session.exec(stmt).all()]


class LateWindow(BaseModel):
    window_seconds: int
    window_start: datetime
    window_end: datetime
    late_predictions: int


class LatePredictions(BaseModel):
    system_id: str
    late_predictions: int
    """Predictions late for at least one window size since the system was first seen."""
    windows: list[LateWindow]
    """Late predictions per window (the newest windows with late predictions, per size)."""


def _system_state(session: SessionDep, system_id: str) -> tuple[int, dict[str, Any]]:
    for row in session.exec(select(PartitionCheckpoint)).all():
        state = (row.state or {}).get("systems", {}).get(system_id)
        if state is not None:
            return row.partition, state
    raise NoStreamState(f"system_id: no stream state for {system_id!r}")


@router.get("/streams/{system_id}")
def stream_state(session: SessionDep, _user: Reader, system_id: str) -> dict[str, Any]:
    """Watermarks and counts (late predictions, future events refused, duplicates, expired
    and unknown outcomes) of one system's stream, as of the last checkpoint."""
    partition, state = _system_state(session, system_id)
    return {
        "system_id": system_id,
        "partition": partition,
        "prediction_watermark": state.get("P"),
        "outcome_watermark": state.get("O"),
        "counters": state.get("counters", {}),
    }


@router.get("/streams/{system_id}/late", response_model=LatePredictions)
def late_predictions(session: SessionDep, _user: Reader, system_id: str) -> LatePredictions:
    """Predictions that came after their window closed (not in its evaluations), per window,
    as of the last checkpoint."""
    _, state = _system_state(session, system_id)
    windows = [
        LateWindow(
            window_seconds=size,
            window_start=to_datetime(start),
            window_end=to_datetime(start + size),
            late_predictions=n,
        )
        for size, start, n in sorted(state.get("late", []), key=lambda w: (w[1], w[0]))
    ]
    counters: dict[str, int] = state.get("counters", {})
    return LatePredictions(
        system_id=system_id,
        late_predictions=counters.get("late_predictions", 0),
        windows=windows,
    )
