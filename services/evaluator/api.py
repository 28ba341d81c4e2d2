"""Evaluator HTTP routes: the evaluations it wrote and the state of each system's stream."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from sqlmodel import col, select

from shared.auth import Principal, require_roles
from shared.contracts import EvaluationResult
from shared.db import SessionDep

from .models import EvaluationRow, PartitionCheckpoint

__all__ = ["router"]

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


@router.get("/streams/{system_id}")
def stream_state(session: SessionDep, _user: Reader, system_id: str) -> dict[str, Any]:
    """Watermarks and counts (late predictions, duplicates, expired and unknown outcomes) of
    one system's stream, as of the last checkpoint."""
    for row in session.exec(select(PartitionCheckpoint)).all():
        state = (row.state or {}).get("systems", {}).get(system_id)
        if state is not None:
            return {
                "system_id": system_id,
                "partition": row.partition,
                "prediction_watermark": state.get("P"),
                "outcome_watermark": state.get("O"),
                "counters": state.get("counters", {}),
            }
    raise HTTPException(404, f"system_id: no stream state for {system_id!r}")
