"""Registry records: keyword-only functions over a session.

Every change that alters what consumers see (system, objective, current reference, ingest
keys) enqueues the system's new snapshot in the outbox within the same transaction, then
commits; a refused change (:class:`Problem`) leaves the session for the caller to roll back.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, func, select

from shared.auth import generate_api_key
from shared.catalog import CATALOG, Family
from shared.contracts import (
    FeatureSpec,
    FeatureType,
    Objective,
    ObjectiveStatus,
    SystemSnapshot,
    Task,
    encode,
)
from shared.outbox import enqueue
from shared.stats.reference import CategoricalReference, NumericReference, ReferenceProfile

from .errors import Problem
from .models import (
    AISystem,
    IngestKey,
    ModelVersion,
    ObjectiveBase,
    ObjectiveVersion,
    ReferenceDataset,
)
from .schemas import (
    ApplyResult,
    Declaration,
    IngestKeyPublic,
    ModelVersionCreate,
    ObjectiveCreate,
    ObjectiveUpdate,
    Outcome,
    SystemBase,
    SystemCreate,
    SystemPublic,
    SystemUpdate,
)

__all__ = [
    "NewReference",
    "Problem",
    "add_reference",
    "apply_declaration",
    "check_objective",
    "create_ingest_key",
    "create_model_version",
    "create_objective",
    "create_system",
    "current_objectives",
    "get_ingest_key",
    "get_model_version",
    "get_profile",
    "get_system",
    "ingest_key_public",
    "list_ingest_keys",
    "list_model_versions",
    "list_references",
    "list_systems",
    "objective_history",
    "publish_snapshot",
    "revoke_ingest_key",
    "select_reference",
    "snapshot",
    "system_features",
    "system_public",
    "update_objective",
    "update_system",
]

SERVICE = "registry"

_NEEDS_SCORES = frozenset(
    {"roc_auc", "log_loss", "brier", "calibration_error"}
    | {
        m
        for m, s in CATALOG.items()
        if m.startswith("estimated_") and Task.REGRESSION not in s.tasks
    }
)
_NUMERIC_ONLY = frozenset({"ks", "wasserstein", "out_of_range_rate"})
_CATEGORICAL_ONLY = frozenset({"chisquare", "unseen_category_rate"})
_ONE_KIND = _NUMERIC_ONLY | _CATEGORICAL_ONLY


def system_features(system: AISystem) -> list[FeatureSpec]:
    return [FeatureSpec.model_validate(f) for f in system.features]


def _features(system: AISystem) -> dict[str, FeatureSpec]:
    return {f.name: f for f in system_features(system)}


def _float_parameter(name: str, value: str, low: float | None, high: float | None) -> None:
    try:
        number = float(value)
    except ValueError:
        raise Problem(f"parameters.{name}", f"{value!r} is not a number") from None
    if not math.isfinite(number):
        raise Problem(f"parameters.{name}", f"{value!r} is not a finite number")
    if (low is not None and number < low) or (high is not None and number > high):
        raise Problem(f"parameters.{name}", f"{value} is outside [{low}, {high}]")


def _check_segment(segment: str | None, system: AISystem) -> None:
    """``attribute=value`` naming a declared attribute (the value may hold any character)."""
    if segment is None:
        return
    attribute, equals, value = segment.partition("=")
    if not equals or not attribute or not value:
        raise Problem("parameters.segment", f"{segment!r} is not 'attribute=value'")
    if attribute not in system.attributes:
        declared = ", ".join(system.attributes) or "none"
        raise Problem(
            "parameters.segment",
            f"system declares no attribute {attribute!r} (declared: {declared})",
        )


def check_objective(*, data: ObjectiveBase, system: AISystem) -> None:
    """Refuse an objective the evaluator could not judge for this system, naming why."""
    spec = CATALOG.get(data.metric)
    if spec is None:
        raise Problem(
            "metric", f"unknown metric {data.metric!r}; known: {', '.join(sorted(CATALOG))}"
        )
    task = Task(system.task)
    if task not in spec.tasks:
        raise Problem("metric", f"{data.metric!r} does not apply to task {task.value}")
    allowed = {p.name: p for p in spec.parameters}
    for name, value in data.parameters.items():
        param = allowed.get(name)
        if param is None:
            takes = ", ".join(allowed) or "none"
            raise Problem(
                f"parameters.{name}",
                f"metric {data.metric!r} takes no parameter {name!r} (it takes: {takes})",
            )
        if param.choices is not None and value not in param.choices:
            choices = ", ".join(param.choices)
            raise Problem(f"parameters.{name}", f"{value!r} is not one of {choices}")
    for param in spec.parameters:
        if param.required and param.name not in data.parameters:
            raise Problem(f"parameters.{param.name}", f"required by metric {data.metric!r}")
    features = _features(system)
    feature_name = data.parameters.get("feature")
    if feature_name is not None:
        feature = features.get(feature_name)
        if feature is None:
            raise Problem("parameters.feature", f"system has no feature {feature_name!r}")
        if data.metric in _NUMERIC_ONLY and feature.type is not FeatureType.NUMERIC:
            raise Problem("parameters.feature", f"{data.metric!r} needs a numeric feature")
        if data.metric in _CATEGORICAL_ONLY and feature.type is FeatureType.NUMERIC:
            raise Problem("parameters.feature", f"{data.metric!r} needs a categorical feature")
        if data.metric == "out_of_range_rate" and feature.min is None and feature.max is None:
            raise Problem("parameters.feature", f"feature {feature_name!r} declares no min/max")
        if data.metric == "unseen_category_rate" and feature.categories is None:
            raise Problem("parameters.feature", f"feature {feature_name!r} declares no categories")
    _check_segment(data.parameters.get("segment"), system)
    attribute = data.parameters.get("attribute")
    if attribute is not None and attribute not in system.attributes:
        declared = ", ".join(system.attributes) or "none"
        raise Problem(
            "parameters.attribute",
            f"system declares no attribute {attribute!r} (declared: {declared})",
        )
    classes = system.prediction.get("classes")
    label = data.parameters.get("positive_label")
    if label is not None and classes is not None and label not in classes:
        raise Problem("parameters.positive_label", f"{label!r} is not one of the system's classes")
    if spec.family is Family.DRIFT and feature_name is None and data.metric in _ONE_KIND:
        numeric_prediction = task is Task.REGRESSION
        if (data.metric in _NUMERIC_ONLY) != numeric_prediction:
            kind = "numeric" if numeric_prediction else "categorical"
            raise Problem(
                "parameters.feature",
                f"{data.metric!r} cannot compare this task's {kind} prediction; name a feature",
            )
    if data.metric in _NEEDS_SCORES and not system.prediction.get("scores"):
        raise Problem(
            "metric", f"{data.metric!r} needs probability scores: declare prediction.scores"
        )
    if "percentile" in data.parameters:
        _float_parameter("percentile", data.parameters["percentile"], 0.0, 100.0)
    if "min_label_coverage" in data.parameters:
        _float_parameter("min_label_coverage", data.parameters["min_label_coverage"], 0.0, 1.0)
    if "method_threshold" in data.parameters:
        _float_parameter("method_threshold", data.parameters["method_threshold"], None, None)


# --- systems ---------------------------------------------------------------------------


def get_system(*, session: Session, system_id: str) -> AISystem | None:
    return session.get(AISystem, system_id)


def list_systems(*, session: Session) -> Sequence[AISystem]:
    return session.exec(select(AISystem).order_by(col(AISystem.id))).all()


def system_public(system: AISystem) -> SystemPublic:
    return SystemPublic.model_validate(system.model_dump())


def _system_fields(data: SystemCreate | SystemUpdate) -> dict[str, Any]:
    return {
        "name": data.name,
        "owner": data.owner,
        "intended_purpose": data.intended_purpose,
        "risk_level": data.risk_level.value,
        "task": data.task.value,
        "features": [f.model_dump(mode="json") for f in data.features],
        "prediction": data.prediction.model_dump(mode="json"),
        "attributes": list(data.attributes),
        "label_horizon_seconds": data.label_horizon_seconds,
    }


def _active_keys(session: Session, system_id: str) -> list[str]:
    stmt = select(IngestKey.key_hash).where(
        IngestKey.system_id == system_id, col(IngestKey.revoked_at).is_(None)
    )
    return sorted(session.exec(stmt).all())


def snapshot(*, session: Session, system: AISystem) -> SystemSnapshot:
    return SystemSnapshot(
        system_id=system.id,
        name=system.name,
        owner=system.owner,
        task=Task(system.task),
        features=system_features(system),
        label_horizon_seconds=system.label_horizon_seconds,
        status="retired" if system.status == "retired" else "active",
        objectives=[
            _to_contract(o) for o in current_objectives(session=session, system_id=system.id)
        ],
        reference_hash=system.reference_hash,
        ingest_key_hashes=_active_keys(session, system.id),
        updated_at=system.updated_at,
    )


MAX_SNAPSHOT_BYTES = 900 * 1024
"""A snapshot is one Kafka record (``max.message.bytes`` is 1 MiB by default): one larger
would never be published and would hold back every later record of the outbox."""


def publish_snapshot(
    *, session: Session, system: AISystem, topic: str, field: str = "features"
) -> None:
    """Enqueue the system's current definition for the compacted registry topic; refused
    (``Problem`` on ``field``, before anything is committed) when it would not fit a record."""
    session.flush()
    value = encode(snapshot(session=session, system=system))
    if len(value) > MAX_SNAPSHOT_BYTES:
        raise Problem(
            field,
            f"the system's definition (features, current objectives, ingest keys) would be "
            f"{len(value)} bytes on the registry topic, over the limit of {MAX_SNAPSHOT_BYTES}",
        )
    enqueue(session, service=SERVICE, topic=topic, key=system.id.encode(), value=value)


def _touch(system: AISystem, actor: str) -> None:
    system.updated_at = datetime.now(UTC)
    system.updated_by = actor


def _new_system(session: Session, data: SystemCreate, actor: str) -> AISystem:
    system = AISystem(id=data.id, updated_by=actor, **_system_fields(data))
    session.add(system)
    session.flush()
    return system


def create_system(*, session: Session, data: SystemCreate, actor: str, topic: str) -> AISystem:
    system = _new_system(session, data, actor)
    publish_snapshot(session=session, system=system, topic=topic)
    session.commit()
    return system


def _reference_fits(profile_json: str, features: Sequence[dict[str, Any]]) -> bool:
    profile = ReferenceProfile.model_validate_json(profile_json)
    for feature in features:
        column = profile.features.get(feature["name"])
        wanted = NumericReference if feature["type"] == "numeric" else CategoricalReference
        if not isinstance(column, wanted):
            return False
    return True


def _change_system(
    session: Session,
    system: AISystem,
    data: SystemUpdate,
    actor: str,
    replaced: frozenset[str] = frozenset(),
) -> None:
    """Apply the new definition; current objectives must still be judgeable under it, except
    those in ``replaced`` (a declaration gives them a new version, checked on its own)."""
    fields = _system_fields(data)
    if fields["task"] != system.task:
        raise Problem("task", "the task of a registered system cannot change; register a new one")
    for name, value in fields.items():
        setattr(system, name, value)
    system.status = data.status.value
    for objective in current_objectives(session=session, system_id=system.id):
        if objective.status == ObjectiveStatus.RETIRED.value or objective.objective_id in replaced:
            continue
        try:
            check_objective(data=_objective_base(objective), system=system)
        except Problem as exc:
            raise Problem(
                "features", f"objective {objective.objective_id!r} would break: {exc}"
            ) from exc
    if system.reference_hash is not None:
        profile = get_profile(session=session, profile_hash=system.reference_hash)
        if profile is None or not _reference_fits(profile, system.features):
            system.reference_hash = None  # the features changed: the reference no longer fits
    _touch(system, actor)
    session.add(system)


def _system_unchanged(system: AISystem, data: SystemUpdate) -> bool:
    # SystemBase, not SystemUpdate: a definition stored before a bound existed still compares
    current = SystemBase.model_validate(_system_fields_of(system)).model_dump(mode="json")
    wanted = data.model_dump(mode="json", exclude={"status"})
    return system.status == data.status.value and current == wanted


def _system_fields_of(system: AISystem) -> dict[str, Any]:
    return {
        "name": system.name,
        "owner": system.owner,
        "intended_purpose": system.intended_purpose,
        "risk_level": system.risk_level,
        "task": system.task,
        "features": system.features,
        "prediction": system.prediction,
        "attributes": system.attributes,
        "label_horizon_seconds": system.label_horizon_seconds,
    }


def update_system(
    *, session: Session, system: AISystem, data: SystemUpdate, actor: str, topic: str
) -> AISystem:
    if _system_unchanged(system, data):
        return system
    _change_system(session, system, data, actor)
    publish_snapshot(session=session, system=system, topic=topic)
    session.commit()
    return system


# --- objectives ------------------------------------------------------------------------


def current_objectives(*, session: Session, system_id: str) -> list[ObjectiveVersion]:
    latest = (
        select(ObjectiveVersion.objective_id, func.max(ObjectiveVersion.version).label("v"))
        .where(ObjectiveVersion.system_id == system_id)
        .group_by(col(ObjectiveVersion.objective_id))
        .subquery()
    )
    stmt = (
        select(ObjectiveVersion)
        .where(ObjectiveVersion.system_id == system_id)
        .join(
            latest,
            (col(ObjectiveVersion.objective_id) == latest.c.objective_id)
            & (col(ObjectiveVersion.version) == latest.c.v),
        )
        .order_by(col(ObjectiveVersion.objective_id))
    )
    return list(session.exec(stmt).all())


def objective_history(
    *, session: Session, system_id: str, objective_id: str
) -> list[ObjectiveVersion]:
    """The versions of one objective of one system (objective ids are scoped by system, so
    one file of objectives applies to many systems)."""
    stmt = (
        select(ObjectiveVersion)
        .where(ObjectiveVersion.system_id == system_id)
        .where(ObjectiveVersion.objective_id == objective_id)
        .order_by(col(ObjectiveVersion.version))
    )
    return list(session.exec(stmt).all())


def _to_contract(row: ObjectiveVersion) -> Objective:
    return Objective.model_validate(row, from_attributes=True)


_DEFINITION: set[str] = set(ObjectiveBase.model_fields)
"""An objective's definition: what a version asks, without its identity and change record."""


def _objective_base(row: ObjectiveVersion) -> ObjectiveBase:
    return ObjectiveBase.model_validate(row.model_dump(include=_DEFINITION))


def _new_version(
    *,
    session: Session,
    system: AISystem,
    objective_id: str,
    version: int,
    data: ObjectiveBase,
    actor: str,
    reason: str,
) -> ObjectiveVersion:
    check_objective(data=data, system=system)
    row = ObjectiveVersion.model_validate(
        data.model_dump(mode="json", include=_DEFINITION),
        update={
            "objective_id": objective_id,
            "version": version,
            "system_id": system.id,
            "changed_by": actor,
            "change_reason": reason,
        },
    )
    session.add(row)
    _touch(system, system.updated_by)
    session.add(system)
    return row


def _publish_version(
    session: Session,
    system: AISystem,
    objective_id: str,
    version: int,
    data: ObjectiveCreate | ObjectiveUpdate,
    actor: str,
    topic: str,
) -> ObjectiveVersion:
    row = _new_version(
        session=session,
        system=system,
        objective_id=objective_id,
        version=version,
        data=data,
        actor=actor,
        reason=data.change_reason,
    )
    publish_snapshot(session=session, system=system, topic=topic, field="objectives")
    session.commit()
    return row


def create_objective(
    *, session: Session, system: AISystem, data: ObjectiveCreate, actor: str, topic: str
) -> ObjectiveVersion:
    return _publish_version(session, system, data.id, 1, data, actor, topic)


def update_objective(
    *,
    session: Session,
    system: AISystem,
    current: ObjectiveVersion,
    data: ObjectiveUpdate,
    actor: str,
    topic: str,
) -> ObjectiveVersion:
    version = current.version + 1
    return _publish_version(session, system, current.objective_id, version, data, actor, topic)


# --- model versions --------------------------------------------------------------------


def list_model_versions(*, session: Session, system_id: str) -> list[ModelVersion]:
    stmt = (
        select(ModelVersion)
        .where(ModelVersion.system_id == system_id)
        .order_by(col(ModelVersion.registered_at), col(ModelVersion.pk))
    )
    return list(session.exec(stmt).all())


def get_model_version(*, session: Session, system_id: str, version: str) -> ModelVersion | None:
    stmt = select(ModelVersion).where(
        ModelVersion.system_id == system_id, ModelVersion.version == version
    )
    return session.exec(stmt).first()


def create_model_version(
    *, session: Session, system: AISystem, data: ModelVersionCreate, actor: str
) -> ModelVersion:
    row = ModelVersion(
        system_id=system.id,
        version=data.version,
        notes=data.notes,
        artifact_hash=data.artifact_hash,
        registered_by=actor,
    )
    session.add(row)
    session.commit()
    return row


# --- reference datasets ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class NewReference:
    """What an upload produced, ready to be recorded."""

    profile: ReferenceProfile
    data_sha256: str
    filename: str
    format: str
    size_bytes: int
    data_path: str


def get_profile(*, session: Session, profile_hash: str) -> str | None:
    """The profile's canonical JSON, whichever system uploaded it."""
    stmt = select(ReferenceDataset.profile).where(ReferenceDataset.profile_hash == profile_hash)
    return session.exec(stmt.limit(1)).first()


def list_references(*, session: Session, system_id: str) -> list[ReferenceDataset]:
    stmt = (
        select(ReferenceDataset)
        .where(ReferenceDataset.system_id == system_id)
        .order_by(col(ReferenceDataset.uploaded_at), col(ReferenceDataset.pk))
    )
    return list(session.exec(stmt).all())


def _find_reference(session: Session, system_id: str, profile_hash: str) -> ReferenceDataset | None:
    stmt = select(ReferenceDataset).where(
        ReferenceDataset.system_id == system_id, ReferenceDataset.profile_hash == profile_hash
    )
    return session.exec(stmt).first()


def _make_current(
    session: Session,
    system: AISystem,
    profile_hash: str,
    model_version: str | None,
    actor: str,
    topic: str,
) -> None:
    if model_version is not None:
        version = get_model_version(session=session, system_id=system.id, version=model_version)
        if version is None:
            raise Problem("model_version", f"system has no model version {model_version!r}")
        version.reference_hash = profile_hash
        session.add(version)
        return
    system.reference_hash = profile_hash
    _touch(system, actor)
    session.add(system)
    publish_snapshot(session=session, system=system, topic=topic)


def add_reference(
    *,
    session: Session,
    system: AISystem,
    new: NewReference,
    model_version: str | None,
    make_current: bool,
    actor: str,
    topic: str,
) -> tuple[ReferenceDataset, bool]:
    """Record an uploaded reference; returns it and whether it was new (not re-uploaded)."""
    profile_hash = new.profile.content_hash
    row = _find_reference(session, system.id, profile_hash)
    created = row is None
    if row is None:
        row = ReferenceDataset(
            system_id=system.id,
            profile_hash=profile_hash,
            data_sha256=new.data_sha256,
            filename=new.filename,
            format=new.format,
            size_bytes=new.size_bytes,
            n_rows=new.profile.n_rows,
            data_path=new.data_path,
            profile=new.profile.canonical_json().decode(),
            model_version=model_version,
            uploaded_by=actor,
        )
        session.add(row)
    if make_current:
        _make_current(session, system, profile_hash, model_version, actor, topic)
    session.commit()
    return row, created


def select_reference(
    *,
    session: Session,
    system: AISystem,
    profile_hash: str,
    model_version: str | None,
    actor: str,
    topic: str,
) -> ReferenceDataset:
    row = _find_reference(session, system.id, profile_hash)
    if row is None:
        raise Problem("hash", f"system has no reference {profile_hash!r}")
    _make_current(session, system, profile_hash, model_version, actor, topic)
    session.commit()
    return row


# --- ingest keys -----------------------------------------------------------------------


def ingest_key_public(row: IngestKey) -> IngestKeyPublic:
    return IngestKeyPublic.model_validate(
        row.model_dump(exclude={"key_hash"}) | {"active": row.revoked_at is None}
    )


def list_ingest_keys(*, session: Session, system_id: str) -> list[IngestKey]:
    stmt = (
        select(IngestKey)
        .where(IngestKey.system_id == system_id)
        .order_by(col(IngestKey.created_at), col(IngestKey.id))
    )
    return list(session.exec(stmt).all())


def get_ingest_key(*, session: Session, system_id: str, key_id: str) -> IngestKey | None:
    key = session.get(IngestKey, key_id)
    return key if key is not None and key.system_id == system_id else None


def create_ingest_key(
    *, session: Session, system: AISystem, name: str, actor: str, topic: str
) -> tuple[IngestKey, str]:
    """A new key for the system: (its record, the key itself, which is not stored)."""
    key, key_hash = generate_api_key()
    row = IngestKey(
        id="key_" + secrets.token_hex(8),
        system_id=system.id,
        name=name,
        key_hash=key_hash,
        prefix=key[:10],
        created_by=actor,
    )
    session.add(row)
    _touch(system, system.updated_by)
    session.add(system)
    publish_snapshot(session=session, system=system, topic=topic)
    session.commit()
    return row, key


def revoke_ingest_key(
    *, session: Session, system: AISystem, key: IngestKey, actor: str, topic: str
) -> IngestKey:
    if key.revoked_at is None:
        key.revoked_at = datetime.now(UTC)
        key.revoked_by = actor
        session.add(key)
        _touch(system, system.updated_by)
        session.add(system)
        publish_snapshot(session=session, system=system, topic=topic)
        session.commit()
    return key


# --- monitoring as code ----------------------------------------------------------------


def apply_declaration(
    *, session: Session, data: Declaration, actor: str, source: str | None, topic: str
) -> ApplyResult:
    """Make the registry match a declaration; re-applying an unchanged one changes nothing.

    Objectives not in the declaration are left as they are (retire one with ``status``).
    """
    default_reason = data.reason or (f"applied from {source}" if source else "applied")
    declared = SystemUpdate.model_validate(data.system.model_dump(exclude={"id"}))
    current: dict[str, ObjectiveVersion | None] = {}
    bases: dict[str, ObjectiveBase] = {}
    for objective in data.objectives:
        history = objective_history(
            session=session, system_id=data.system.id, objective_id=objective.id
        )
        current[objective.id] = history[-1] if history else None
        bases[objective.id] = ObjectiveBase.model_validate(
            objective.model_dump(exclude={"id", "reason"})
        )
    changing = frozenset(
        oid for oid, row in current.items() if row is None or _objective_base(row) != bases[oid]
    )
    system = get_system(session=session, system_id=data.system.id)
    system_outcome: Outcome
    if system is None:
        system = _new_system(session, data.system, actor)
        system_outcome = "created"
    elif _system_unchanged(system, declared):
        system_outcome = "unchanged"
    else:
        _change_system(session, system, declared, actor, replaced=changing)
        system_outcome = "updated"
    outcomes: dict[str, Outcome] = {}
    versions: dict[str, int] = {}
    for objective in data.objectives:
        row = current[objective.id]
        if objective.id not in changing and row is not None:
            outcomes[objective.id], versions[objective.id] = "unchanged", row.version
            continue
        version = row.version + 1 if row is not None else 1
        try:
            _new_version(
                session=session,
                system=system,
                objective_id=objective.id,
                version=version,
                data=bases[objective.id],
                actor=actor,
                reason=objective.reason or default_reason,
            )
        except Problem as exc:
            raise Problem(f"objectives.{objective.id}.{exc.field}", exc.reason) from exc
        outcomes[objective.id] = "updated" if row is not None else "created"
        versions[objective.id] = version
    if system_outcome != "unchanged" or any(o != "unchanged" for o in outcomes.values()):
        publish_snapshot(session=session, system=system, topic=topic, field="system.features")
        session.commit()
    return ApplyResult(system=system_outcome, objectives=outcomes, versions=versions)
