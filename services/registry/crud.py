"""Registry records: keyword-only functions over a session. Every change enqueues the
system's new snapshot in the outbox within the same transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlmodel import Session, col, func, select

from shared.catalog import CATALOG
from shared.contracts import (
    FeatureSpec,
    Objective,
    SystemSnapshot,
    Task,
    encode,
)
from shared.outbox import enqueue

from .models import AISystem, ObjectiveVersion
from .schemas import ObjectiveBase, ObjectiveCreate, ObjectiveUpdate, SystemCreate

__all__ = [
    "ObjectiveProblem",
    "check_objective",
    "create_objective",
    "create_system",
    "current_objectives",
    "get_system",
    "list_systems",
    "objective_history",
    "publish_snapshot",
    "snapshot",
    "update_objective",
]

SERVICE = "registry"


class ObjectiveProblem(ValueError):
    """An objective the metric catalog cannot evaluate; the message names field and reason."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def check_objective(*, data: ObjectiveBase, system: AISystem) -> None:
    spec = CATALOG.get(data.metric)
    if spec is None:
        raise ObjectiveProblem(
            "metric", f"unknown metric {data.metric!r}; known: {', '.join(sorted(CATALOG))}"
        )
    task = Task(system.task)
    if task not in spec.tasks:
        raise ObjectiveProblem("metric", f"{data.metric!r} does not apply to task {task.value}")
    allowed = {p.name: p for p in spec.parameters}
    for name, value in data.parameters.items():
        param = allowed.get(name)
        if param is None:
            raise ObjectiveProblem(
                f"parameters.{name}", f"metric {data.metric!r} takes no parameter {name!r}"
            )
        if param.choices is not None and value not in param.choices:
            raise ObjectiveProblem(
                f"parameters.{name}", f"{value!r} is not one of {', '.join(param.choices)}"
            )
    for param in spec.parameters:
        if param.required and param.name not in data.parameters:
            raise ObjectiveProblem(f"parameters.{param.name}", "required by this metric")
    features = {f["name"] for f in system.features}
    feature = data.parameters.get("feature")
    if feature is not None and feature not in features:
        raise ObjectiveProblem("parameters.feature", f"system has no feature {feature!r}")


def get_system(*, session: Session, system_id: str) -> AISystem | None:
    return session.get(AISystem, system_id)


def list_systems(*, session: Session) -> Sequence[AISystem]:
    return session.exec(select(AISystem).order_by(col(AISystem.id))).all()


def current_objectives(*, session: Session, system_id: str) -> list[ObjectiveVersion]:
    latest = (
        select(ObjectiveVersion.objective_id, func.max(ObjectiveVersion.version).label("v"))
        .where(ObjectiveVersion.system_id == system_id)
        .group_by(col(ObjectiveVersion.objective_id))
        .subquery()
    )
    stmt = (
        select(ObjectiveVersion)
        .join(
            latest,
            (col(ObjectiveVersion.objective_id) == latest.c.objective_id)
            & (col(ObjectiveVersion.version) == latest.c.v),
        )
        .order_by(col(ObjectiveVersion.objective_id))
    )
    return list(session.exec(stmt).all())


def objective_history(*, session: Session, objective_id: str) -> list[ObjectiveVersion]:
    stmt = (
        select(ObjectiveVersion)
        .where(ObjectiveVersion.objective_id == objective_id)
        .order_by(col(ObjectiveVersion.version))
    )
    return list(session.exec(stmt).all())


def _to_contract(row: ObjectiveVersion) -> Objective:
    return Objective.model_validate(
        row.model_dump(exclude={"pk", "objective_id"}) | {"id": row.objective_id}
    )


def snapshot(*, session: Session, system: AISystem) -> SystemSnapshot:
    return SystemSnapshot(
        system_id=system.id,
        name=system.name,
        owner=system.owner,
        task=Task(system.task),
        features=[FeatureSpec.model_validate(f) for f in system.features],
        label_horizon_seconds=system.label_horizon_seconds,
        status="retired" if system.status == "retired" else "active",
        objectives=[
            _to_contract(o) for o in current_objectives(session=session, system_id=system.id)
        ],
        updated_at=system.updated_at,
    )


def publish_snapshot(*, session: Session, system: AISystem, topic: str) -> None:
    """Enqueue the system's current definition for the compacted registry topic."""
    enqueue(
        session,
        service=SERVICE,
        topic=topic,
        key=system.id.encode(),
        value=encode(snapshot(session=session, system=system)),
    )


def create_system(*, session: Session, data: SystemCreate, topic: str) -> AISystem:
    system = AISystem(
        id=data.id,
        name=data.name,
        owner=data.owner,
        task=data.task.value,
        features=[f.model_dump(mode="json") for f in data.features],
        label_horizon_seconds=data.label_horizon_seconds,
    )
    session.add(system)
    session.flush()
    publish_snapshot(session=session, system=system, topic=topic)
    session.commit()
    return system


def _add_version(
    *,
    session: Session,
    system: AISystem,
    objective_id: str,
    version: int,
    data: ObjectiveCreate | ObjectiveUpdate,
    topic: str,
) -> ObjectiveVersion:
    check_objective(data=data, system=system)
    row = ObjectiveVersion(
        objective_id=objective_id,
        version=version,
        system_id=system.id,
        metric=data.metric,
        parameters=dict(data.parameters),
        comparator=data.comparator.value,
        threshold=data.threshold,
        window_seconds=data.window_seconds,
        min_samples=data.min_samples,
        severity=data.severity.value,
        pending_windows=data.pending_windows,
        clearing_windows=data.clearing_windows,
        owner=data.owner,
        rationale=data.rationale,
        references=list(data.references),
        status=data.status.value,
        changed_by=data.changed_by,
        change_reason=data.change_reason,
    )
    session.add(row)
    system.updated_at = datetime.now(UTC)
    session.add(system)
    session.flush()
    publish_snapshot(session=session, system=system, topic=topic)
    session.commit()
    return row


def create_objective(
    *, session: Session, system: AISystem, data: ObjectiveCreate, topic: str
) -> ObjectiveVersion:
    return _add_version(
        session=session, system=system, objective_id=data.id, version=1, data=data, topic=topic
    )


def update_objective(
    *,
    session: Session,
    system: AISystem,
    current: ObjectiveVersion,
    data: ObjectiveUpdate,
    topic: str,
) -> ObjectiveVersion:
    return _add_version(
        session=session,
        system=system,
        objective_id=current.objective_id,
        version=current.version + 1,
        data=data,
        topic=topic,
    )
