"""Alerts HTTP routes: nonconformity records, their lifecycle and actions, silences and the
continual improvement log. Quality managers and admins write; every role reads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response, status
from sqlmodel import Session, col, select

from shared.auth import Principal, Role, require_roles

from . import crud
from .deps import SessionDep, SettingsDep, TopicDep, WritesDep
from .errors import NotFound
from .models import CorrectiveAction, LogEntry, Nonconformity, Occurrence, Silence
from .schemas import (
    ActionCreate,
    ActionUpdate,
    ClassificationChange,
    NonconformityCreate,
    SilenceCreate,
    TransitionRequest,
)
from .semantics import State

__all__ = ["router"]

router = APIRouter(tags=["alerts"])

Reader = Annotated[Principal, Depends(require_roles())]
"""Every role may read nonconformities (auditors and SREs included)."""
Writer = Annotated[Principal, Depends(require_roles(Role.QUALITY_MANAGER, Role.ADMIN))]
"""Only quality managers and admins change records, actions and silences."""
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0)]


def _actor(user: Principal) -> str:
    return user.subject or "anonymous"


def _detail(session: Session, nc: Nonconformity) -> dict[str, Any]:
    occurrences = session.exec(
        select(Occurrence)
        .where(Occurrence.nonconformity_id == nc.id)
        .order_by(col(Occurrence.window_start))
    ).all()
    return {
        **nc.model_dump(),
        "actions": [a.model_dump() for a in crud.actions_of(session=session, nc_id=nc.id)],
        "occurrence_evidence": [o.model_dump() for o in occurrences],
    }


# --- nonconformities ------------------------------------------------------------------------


@router.get("/v1/nonconformities", response_model=list[Nonconformity])
def list_nonconformities(
    response: Response,
    session: SessionDep,
    _user: Reader,
    system_id: str | None = None,
    state: State | None = None,
    classification: str | None = None,
    owner: str | None = None,
    source: str | None = None,
    open_only: bool = False,
    overdue: bool = False,
    min_age_days: Annotated[float | None, Query(ge=0)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[Nonconformity]:
    """Newest first; ``X-Total-Count`` gives the number of matches for paging."""
    stmt = select(Nonconformity).where(
        *crud.nonconformity_filters(
            system_id=system_id,
            state=state.value if state else None,
            classification=classification,
            owner=owner,
            source=source,
            open_only=open_only,
            overdue=overdue,
            min_age_days=min_age_days,
        )
    )
    response.headers["X-Total-Count"] = str(crud.count(session, stmt))
    stmt = stmt.order_by(col(Nonconformity.raised_at).desc(), col(Nonconformity.id))
    return list(session.exec(stmt.offset(offset).limit(limit)).all())


@router.post("/v1/nonconformities", status_code=status.HTTP_201_CREATED)
def create_nonconformity(
    body: NonconformityCreate,
    session: SessionDep,
    writes: WritesDep,
    topic: TopicDep,
    settings: SettingsDep,
    user: Writer,
) -> dict[str, Any]:
    with writes.transaction(session):
        nc = crud.create_nonconformity(
            session=session,
            data=body.model_dump(),
            actor=_actor(user),
            topic=topic,
            due_days=settings.due_days(),
        )
    return _detail(session, nc)


@router.get("/v1/nonconformities/{nc_id}")
def get_nonconformity(nc_id: str, session: SessionDep, _user: Reader) -> dict[str, Any]:
    """One record by id or reference number, with its actions and occurrence evidence."""
    return _detail(session, crud.find(session=session, nc_id=nc_id))


@router.post("/v1/nonconformities/{nc_id}/transitions")
def transition(
    nc_id: str,
    body: TransitionRequest,
    session: SessionDep,
    writes: WritesDep,
    topic: TopicDep,
    user: Writer,
) -> dict[str, Any]:
    with writes.transaction(session):
        nc = crud.transition(
            session=session,
            nc=crud.find(session=session, nc_id=nc_id),
            target=State(body.to),
            data=body.model_dump(),
            actor=_actor(user),
            topic=topic,
        )
    return _detail(session, nc)


@router.post("/v1/nonconformities/{nc_id}/classification")
def reclassify(
    nc_id: str,
    body: ClassificationChange,
    session: SessionDep,
    writes: WritesDep,
    topic: TopicDep,
    user: Writer,
) -> dict[str, Any]:
    with writes.transaction(session):
        nc = crud.reclassify(
            session=session,
            nc=crud.find(session=session, nc_id=nc_id),
            classification=body.classification,
            reason=body.reason,
            actor=_actor(user),
            topic=topic,
        )
    return _detail(session, nc)


# --- corrective actions ---------------------------------------------------------------------


@router.post(
    "/v1/nonconformities/{nc_id}/actions",
    response_model=CorrectiveAction,
    status_code=status.HTTP_201_CREATED,
)
def add_action(
    nc_id: str, body: ActionCreate, session: SessionDep, writes: WritesDep, user: Writer
) -> CorrectiveAction:
    with writes.transaction(session):
        action = crud.add_action(
            session=session,
            nc=crud.find(session=session, nc_id=nc_id),
            data=body.model_dump(),
            actor=_actor(user),
        )
    return action


@router.patch("/v1/actions/{action_id}", response_model=CorrectiveAction)
def update_action(
    action_id: str,
    body: ActionUpdate,
    session: SessionDep,
    writes: WritesDep,
    settings: SettingsDep,
    user: Writer,
) -> CorrectiveAction:
    with writes.transaction(session):
        action = session.get(CorrectiveAction, action_id)
        if action is None:
            raise NotFound(f"no corrective action {action_id!r}")
        crud.update_action(
            session=session,
            action=action,
            data=body.model_dump(),
            actor=_actor(user),
            effectiveness_windows=settings.effectiveness_windows,
        )
    return action


@router.get("/v1/actions", response_model=list[CorrectiveAction])
def list_actions(
    response: Response,
    session: SessionDep,
    _user: Reader,
    nonconformity_id: str | None = None,
    owner: str | None = None,
    status_: Annotated[str | None, Query(alias="status")] = None,
    overdue: bool = False,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[CorrectiveAction]:
    stmt = select(CorrectiveAction)
    for column, value in (
        (CorrectiveAction.nonconformity_id, nonconformity_id),
        (CorrectiveAction.owner, owner),
        (CorrectiveAction.status, status_),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if overdue:
        stmt = stmt.where(
            col(CorrectiveAction.due_at) < datetime.now(UTC),
            col(CorrectiveAction.status).in_(("planned", "in_progress")),
        )
    response.headers["X-Total-Count"] = str(crud.count(session, stmt))
    stmt = stmt.order_by(col(CorrectiveAction.due_at), col(CorrectiveAction.id))
    return list(session.exec(stmt.offset(offset).limit(limit)).all())


# --- silences -------------------------------------------------------------------------------


@router.get("/v1/silences", response_model=list[Silence])
def list_silences(session: SessionDep, _user: Reader, active_only: bool = False) -> list[Silence]:
    stmt = select(Silence)
    if active_only:
        stmt = stmt.where(col(Silence.expires_at) > datetime.now(UTC))
    return list(session.exec(stmt.order_by(col(Silence.created_at).desc())).all())


@router.post("/v1/silences", response_model=Silence, status_code=status.HTTP_201_CREATED)
def create_silence(
    body: SilenceCreate, session: SessionDep, writes: WritesDep, user: Writer
) -> Silence:
    with writes.transaction(session):
        silence = crud.create_silence(session=session, data=body.model_dump(), actor=_actor(user))
    return silence


@router.post("/v1/silences/{silence_id}/expire", response_model=Silence)
def expire_silence(
    silence_id: str, session: SessionDep, writes: WritesDep, user: Writer
) -> Silence:
    with writes.transaction(session):
        silence = session.get(Silence, silence_id)
        if silence is None:
            raise NotFound(f"no silence {silence_id!r}")
        crud.expire_silence(session=session, silence=silence, actor=_actor(user))
    return silence


# --- the continual improvement log ----------------------------------------------------------


@router.get("/v1/log", response_model=list[LogEntry])
def read_log(
    session: SessionDep,
    _user: Reader,
    subject: str | None = None,
    kind: str | None = None,
    actor: str | None = None,
    after_seq: Annotated[int, Query(ge=0)] = 0,
    limit: Limit = 100,
) -> list[LogEntry]:
    """Oldest first; page with ``after_seq`` = the last ``seq`` you have."""
    stmt = select(LogEntry).where(col(LogEntry.seq) > after_seq)
    for column, value in (
        (LogEntry.subject, subject),
        (LogEntry.kind, kind),
        (LogEntry.actor, actor),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    return list(session.exec(stmt.order_by(col(LogEntry.seq)).limit(limit)).all())


@router.get("/v1/log/verify")
def verify_log(session: SessionDep, _user: Reader) -> dict[str, Any]:
    """Recompute the hash chain; ``first_broken_seq`` names the first entry that fails."""
    found = crud.verify_log(session=session)
    return {
        "ok": found.ok,
        "entries": found.entries,
        "first_broken_seq": found.first_broken_seq,
        "reason": found.reason,
    }
