"""Registry HTTP routes: thin; the records' rules live in crud."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError

from shared.contracts import SystemSnapshot
from shared.db import SessionDep
from shared.outbox import OutboxRelay

from . import crud
from .models import AISystem, ObjectiveVersion
from .schemas import ObjectiveCreate, ObjectivePublic, ObjectiveUpdate, SystemCreate, SystemPublic

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["registry"])


def registry_topic(request: Request) -> str:
    topic: str = request.app.state.bus.topics.registry
    return topic


def relay(request: Request) -> OutboxRelay:
    outbox: OutboxRelay = request.app.state.relay
    return outbox


TopicDep = Annotated[str, Depends(registry_topic)]
RelayDep = Annotated[OutboxRelay, Depends(relay)]


def _system_or_404(session: Any, system_id: str) -> AISystem:
    system = crud.get_system(session=session, system_id=system_id)
    if system is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no AI system {system_id!r}")
    return system


def _public(row: ObjectiveVersion) -> ObjectivePublic:
    return ObjectivePublic.model_validate(
        row.model_dump(exclude={"pk", "objective_id"}) | {"id": row.objective_id}
    )


def _problem(exc: crud.ObjectiveProblem) -> JSONResponse:
    loc: list[str] = ["body", *exc.field.split(".")]
    return JSONResponse(
        {"detail": [{"loc": loc, "msg": exc.reason, "type": "objective_invalid"}]},
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


@router.post("/systems", status_code=status.HTTP_201_CREATED, response_model=SystemPublic)
def create_system(
    data: SystemCreate, session: SessionDep, topic: TopicDep, outbox: RelayDep
) -> AISystem:
    if crud.get_system(session=session, system_id=data.id) is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"AI system {data.id!r} already exists")
    system = crud.create_system(session=session, data=data, topic=topic)
    outbox.notify()
    return system


@router.get("/systems", response_model=list[SystemPublic])
def list_systems(session: SessionDep) -> list[AISystem]:
    return list(crud.list_systems(session=session))


@router.get("/systems/{system_id}", response_model=SystemPublic)
def get_system(system_id: str, session: SessionDep) -> AISystem:
    return _system_or_404(session, system_id)


@router.get("/systems/{system_id}/snapshot", response_model=SystemSnapshot)
def get_snapshot(system_id: str, session: SessionDep) -> SystemSnapshot:
    return crud.snapshot(session=session, system=_system_or_404(session, system_id))


@router.post(
    "/systems/{system_id}/objectives",
    status_code=status.HTTP_201_CREATED,
    response_model=ObjectivePublic,
)
def create_objective(
    system_id: str, data: ObjectiveCreate, session: SessionDep, topic: TopicDep, outbox: RelayDep
) -> Any:
    system = _system_or_404(session, system_id)
    if crud.objective_history(session=session, objective_id=data.id):
        raise HTTPException(status.HTTP_409_CONFLICT, f"objective {data.id!r} already exists")
    try:
        row = crud.create_objective(session=session, system=system, data=data, topic=topic)
    except crud.ObjectiveProblem as exc:
        session.rollback()
        return _problem(exc)
    except IntegrityError as exc:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, f"objective {data.id!r} exists") from exc
    outbox.notify()
    return _public(row)


@router.put("/systems/{system_id}/objectives/{objective_id}", response_model=ObjectivePublic)
def update_objective(
    system_id: str,
    objective_id: str,
    data: ObjectiveUpdate,
    session: SessionDep,
    topic: TopicDep,
    outbox: RelayDep,
) -> Any:
    system = _system_or_404(session, system_id)
    history = crud.objective_history(session=session, objective_id=objective_id)
    if not history or history[-1].system_id != system_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no objective {objective_id!r}")
    try:
        row = crud.update_objective(
            session=session, system=system, current=history[-1], data=data, topic=topic
        )
    except crud.ObjectiveProblem as exc:
        session.rollback()
        return _problem(exc)
    outbox.notify()
    return _public(row)


@router.get("/systems/{system_id}/objectives", response_model=list[ObjectivePublic])
def list_objectives(system_id: str, session: SessionDep) -> list[ObjectivePublic]:
    _system_or_404(session, system_id)
    return [_public(o) for o in crud.current_objectives(session=session, system_id=system_id)]


@router.get(
    "/systems/{system_id}/objectives/{objective_id}/history",
    response_model=list[ObjectivePublic],
)
def objective_history(system_id: str, objective_id: str, session: SessionDep) -> Any:
    history = crud.objective_history(session=session, objective_id=objective_id)
    if not history or history[0].system_id != system_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no objective {objective_id!r}")
    return [_public(o) for o in history]
