"""Evaluator HTTP routes: read the evaluations it wrote."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlmodel import col, select

from shared.contracts import EvaluationResult
from shared.db import SessionDep

from .models import EvaluationRow

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["evaluator"])


@router.get("/evaluations", response_model=list[EvaluationResult])
def list_evaluations(
    session: SessionDep,
    system_id: str | None = None,
    objective_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    stmt = select(EvaluationRow)
    if system_id is not None:
        stmt = stmt.where(EvaluationRow.system_id == system_id)
    if objective_id is not None:
        stmt = stmt.where(EvaluationRow.objective_id == objective_id)
    stmt = stmt.order_by(col(EvaluationRow.window_end).desc()).limit(limit)
    return [row.payload for row in session.exec(stmt).all()]
