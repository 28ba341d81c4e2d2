"""Registry HTTP routes: thin; the records' rules live in crud, uploads in uploads.

Roles: every role reads; admins and ML engineers change systems, model versions, reference
datasets and ingest keys; quality managers may also change objectives. Without
``auth_secret`` (open mode) nothing is checked and ``changed_by`` must name who changes an
objective; with it, who is the token's subject.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from sqlmodel import Session

from shared.auth import Principal, Role, require_roles
from shared.contracts import MODEL_VERSION_MAX_LENGTH, SystemSnapshot, Task
from shared.stats.reference import ReferenceProfile

from . import crud, uploads
from .deps import (
    DatabaseDep,
    MetricsDep,
    RelayDep,
    SessionDep,
    SettingsDep,
    TopicDep,
    UploadLockDep,
)
from .errors import Problem, ReferenceInvalid, TooLarge
from .models import AISystem, ModelVersion, ObjectiveVersion, ReferenceDataset
from .references import ReferenceFormat, plan_columns
from .schemas import (
    ApplyResult,
    Declaration,
    IngestKeyCreate,
    IngestKeyCreated,
    IngestKeyPublic,
    ModelVersionCreate,
    ModelVersionPublic,
    ObjectiveCreate,
    ObjectivePublic,
    ObjectiveUpdate,
    ReferencePublic,
    ReferenceSelect,
    SystemCreate,
    SystemPublic,
    SystemUpdate,
)

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["registry"])

Reader = Annotated[Principal, Depends(require_roles())]
Editor = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.ML_ENGINEER))]
ObjectiveEditor = Annotated[
    Principal, Depends(require_roles(Role.ADMIN, Role.ML_ENGINEER, Role.QUALITY_MANAGER))
]


def actor(principal: Principal, claimed: str | None = None, *, required: bool = False) -> str:
    """Who makes a change: the token's subject, else (open mode) what the body says."""
    if principal.authenticated and principal.subject is not None:
        if claimed is not None and claimed != principal.subject:
            raise Problem(
                "changed_by",
                f"must be the authenticated user {principal.subject!r} (or be left out)",
            )
        return principal.subject
    if claimed:
        return claimed
    if required:
        raise Problem("changed_by", "required: say who makes the change")
    return "anonymous"


def _system_or_404(session: Session, system_id: str) -> AISystem:
    system = crud.get_system(session=session, system_id=system_id)
    if system is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no AI system {system_id!r}")
    return system


def _public(row: ObjectiveVersion) -> ObjectivePublic:
    return ObjectivePublic.model_validate(row, from_attributes=True)


# --- systems ---------------------------------------------------------------------------


@router.post("/systems", status_code=status.HTTP_201_CREATED, response_model=SystemPublic)
def create_system(
    data: SystemCreate, session: SessionDep, topic: TopicDep, outbox: RelayDep, user: Editor
) -> SystemPublic:
    if crud.get_system(session=session, system_id=data.id) is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"AI system {data.id!r} already exists")
    system = crud.create_system(session=session, data=data, actor=actor(user), topic=topic)
    outbox.notify()
    return crud.system_public(system)


@router.get("/systems", response_model=list[SystemPublic])
def list_systems(session: SessionDep, _user: Reader) -> list[SystemPublic]:
    return [crud.system_public(s) for s in crud.list_systems(session=session)]


@router.get("/systems/{system_id}", response_model=SystemPublic)
def get_system(system_id: str, session: SessionDep, _user: Reader) -> SystemPublic:
    return crud.system_public(_system_or_404(session, system_id))


@router.put("/systems/{system_id}", response_model=SystemPublic)
def update_system(
    system_id: str,
    data: SystemUpdate,
    session: SessionDep,
    topic: TopicDep,
    outbox: RelayDep,
    user: Editor,
) -> SystemPublic:
    """Replace the system's definition; refused (422) if a current objective would break."""
    system = _system_or_404(session, system_id)
    system = crud.update_system(
        session=session, system=system, data=data, actor=actor(user), topic=topic
    )
    outbox.notify()
    return crud.system_public(system)


@router.get("/systems/{system_id}/snapshot", response_model=SystemSnapshot)
def get_snapshot(system_id: str, session: SessionDep, _user: Reader) -> SystemSnapshot:
    """What the registry topic carries for the system."""
    return crud.snapshot(session=session, system=_system_or_404(session, system_id))


# --- objectives ------------------------------------------------------------------------


@router.post(
    "/systems/{system_id}/objectives",
    status_code=status.HTTP_201_CREATED,
    response_model=ObjectivePublic,
)
def create_objective(
    system_id: str,
    data: ObjectiveCreate,
    session: SessionDep,
    topic: TopicDep,
    outbox: RelayDep,
    user: ObjectiveEditor,
) -> ObjectivePublic:
    system = _system_or_404(session, system_id)
    who = actor(user, data.changed_by, required=True)
    if crud.objective_history(session=session, system_id=system_id, objective_id=data.id):
        raise HTTPException(status.HTTP_409_CONFLICT, f"objective {data.id!r} already exists")
    row = crud.create_objective(session=session, system=system, data=data, actor=who, topic=topic)
    outbox.notify()
    return _public(row)


def _history_or_404(session: Session, system_id: str, objective_id: str) -> list[ObjectiveVersion]:
    history = crud.objective_history(
        session=session, system_id=system_id, objective_id=objective_id
    )
    if not history:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no objective {objective_id!r}")
    return history


@router.put("/systems/{system_id}/objectives/{objective_id}", response_model=ObjectivePublic)
def update_objective(
    system_id: str,
    objective_id: str,
    data: ObjectiveUpdate,
    session: SessionDep,
    topic: TopicDep,
    outbox: RelayDep,
    user: ObjectiveEditor,
) -> ObjectivePublic:
    """Add the objective's next version (the current one stays readable in its history)."""
    system = _system_or_404(session, system_id)
    who = actor(user, data.changed_by, required=True)
    history = _history_or_404(session, system_id, objective_id)
    row = crud.update_objective(
        session=session, system=system, current=history[-1], data=data, actor=who, topic=topic
    )
    outbox.notify()
    return _public(row)


@router.get("/systems/{system_id}/objectives", response_model=list[ObjectivePublic])
def list_objectives(system_id: str, session: SessionDep, _user: Reader) -> list[ObjectivePublic]:
    _system_or_404(session, system_id)
    return [_public(o) for o in crud.current_objectives(session=session, system_id=system_id)]


@router.get("/systems/{system_id}/objectives/{objective_id}", response_model=ObjectivePublic)
def get_objective(
    system_id: str, objective_id: str, session: SessionDep, _user: Reader
) -> ObjectivePublic:
    return _public(_history_or_404(session, system_id, objective_id)[-1])


@router.get(
    "/systems/{system_id}/objectives/{objective_id}/history",
    response_model=list[ObjectivePublic],
)
def objective_history(
    system_id: str, objective_id: str, session: SessionDep, _user: Reader
) -> list[ObjectivePublic]:
    """Every version, oldest first, each with who changed it, when and why."""
    return [_public(o) for o in _history_or_404(session, system_id, objective_id)]


@router.get(
    "/systems/{system_id}/objectives/{objective_id}/versions/{version}",
    response_model=ObjectivePublic,
)
def objective_version(
    system_id: str, objective_id: str, version: int, session: SessionDep, _user: Reader
) -> ObjectivePublic:
    for row in _history_or_404(session, system_id, objective_id):
        if row.version == version:
            return _public(row)
    raise HTTPException(status.HTTP_404_NOT_FOUND, f"objective {objective_id!r} has no v{version}")


# --- model versions --------------------------------------------------------------------


def _model_version_public(row: ModelVersion) -> ModelVersionPublic:
    return ModelVersionPublic.model_validate(row.model_dump(exclude={"pk"}))


@router.post(
    "/systems/{system_id}/model-versions",
    status_code=status.HTTP_201_CREATED,
    response_model=ModelVersionPublic,
)
def create_model_version(
    system_id: str, data: ModelVersionCreate, session: SessionDep, user: Editor
) -> ModelVersionPublic:
    system = _system_or_404(session, system_id)
    if crud.get_model_version(session=session, system_id=system_id, version=data.version):
        raise HTTPException(status.HTTP_409_CONFLICT, f"model version {data.version!r} exists")
    row = crud.create_model_version(session=session, system=system, data=data, actor=actor(user))
    return _model_version_public(row)


@router.get("/systems/{system_id}/model-versions", response_model=list[ModelVersionPublic])
def list_model_versions(
    system_id: str, session: SessionDep, _user: Reader
) -> list[ModelVersionPublic]:
    _system_or_404(session, system_id)
    rows = crud.list_model_versions(session=session, system_id=system_id)
    return [_model_version_public(r) for r in rows]


# --- reference datasets ----------------------------------------------------------------


def _reference_public(row: ReferenceDataset, system: AISystem) -> ReferencePublic:
    return ReferencePublic.model_validate(
        row.model_dump(exclude={"pk", "profile", "profile_hash", "data_path"})
        | {"hash": row.profile_hash, "current": row.profile_hash == system.reference_hash}
    )


_BINARY = {"schema": {"type": "string", "format": "binary"}}
_PARQUET_TYPES = ("application/vnd.apache.parquet", "application/x-parquet", "application/parquet")


def _format(given: ReferenceFormat | None, content_type: str, filename: str) -> ReferenceFormat:
    if given is not None:
        return given
    if "csv" in content_type:
        return "csv"
    if any(t in content_type for t in _PARQUET_TYPES):
        return "parquet"
    suffix = Path(filename).suffix.lower()
    if suffix in (".csv", ".parquet", ".pq"):
        return "csv" if suffix == ".csv" else "parquet"
    raise Problem(
        "format", "say whether the file is csv or parquet (?format=, Content-Type or filename)"
    )


@router.post(
    "/systems/{system_id}/references",
    status_code=status.HTTP_201_CREATED,
    response_model=ReferencePublic,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": _BINARY,
                "application/vnd.apache.parquet": _BINARY,
                "multipart/form-data": {
                    "schema": {"type": "object", "properties": {"file": _BINARY["schema"]}}
                },
            },
        }
    },
)
async def upload_reference(
    system_id: str,
    request: Request,
    response: Response,
    user: Editor,
    settings: SettingsDep,
    db: DatabaseDep,
    metrics: MetricsDep,
    topic: TopicDep,
    outbox: RelayDep,
    upload_lock: UploadLockDep,
    format: ReferenceFormat | None = None,
    filename: Annotated[str, Query(max_length=255)] = "",
    model_version: Annotated[str | None, Query(max_length=MODEL_VERSION_MAX_LENGTH)] = None,
    current: bool = True,
    prediction_column: Annotated[str, Query(min_length=1, max_length=128)] = "prediction",
    target_column: Annotated[str, Query(min_length=1, max_length=128)] = "actual",
) -> ReferencePublic:
    """Upload a reference dataset (raw CSV/Parquet body, or multipart field ``file``).

    It is validated against the feature schema (422 names each bad column and its first bad
    row), profiled, stored, and by default made the system's current reference (or the model
    version's, with ``model_version``). Re-uploading the same data answers 200. With the
    outcomes in ``target_column`` the profile also holds the score calibration (classification)
    or the loss model (regression) that estimated performance uses.
    """
    who = actor(user)

    def load() -> AISystem:
        with db.session() as session:
            system = _system_or_404(session, system_id)
            if model_version is not None and not crud.get_model_version(
                session=session, system_id=system_id, version=model_version
            ):
                raise Problem("model_version", f"no model version {model_version!r}")
            return system

    system = await db.run(load)
    directory = settings.references_path()
    content_type = request.headers.get("content-type", "")
    try:
        if content_type.startswith("multipart/form-data"):
            async with request.form(max_files=1, max_fields=0) as form:
                upload = form.get("file")
                if upload is None or isinstance(upload, str):
                    raise Problem("file", "send the dataset in the multipart field 'file'")
                filename = filename or upload.filename or ""
                fmt = _format(format, upload.content_type or "", filename)
                received = await uploads.receive(
                    uploads.file_chunks(upload.file),
                    directory=directory,
                    max_bytes=settings.max_reference_bytes,
                )
        else:
            fmt = _format(format, content_type, filename)
            received = await uploads.receive(
                request.stream(), directory=directory, max_bytes=settings.max_reference_bytes
            )
    except TooLarge:
        metrics.reference_uploads.labels("too_large").inc()
        raise
    metrics.reference_bytes.inc(received.size_bytes)
    rules = plan_columns(
        features=crud.system_features(system),
        task=Task(system.task),
        classes=system.prediction.get("classes"),
        score_classes=system.prediction.get("scores") or [],
        prediction_column=prediction_column,
        target_column=target_column,
    )
    started = time.perf_counter()
    try:
        processed = await uploads.process_upload(
            received,
            fmt=fmt,
            rules=rules,
            collect_budget=settings.reference_collect_budget,
            lock=upload_lock,
        )
    except ReferenceInvalid:
        metrics.reference_uploads.labels("invalid").inc()
        raise
    finally:
        metrics.reference_seconds.observe(time.perf_counter() - started)
    data_path = await anyio.to_thread.run_sync(uploads.stored_copy, processed, directory)
    await anyio.to_thread.run_sync(uploads.store_values, processed.profile, directory)
    new = crud.NewReference(
        profile=processed.profile,
        data_sha256=received.sha256,
        filename=filename,
        format=fmt,
        size_bytes=received.size_bytes,
        data_path=data_path,
    )

    def record() -> tuple[ReferencePublic, bool]:
        with db.session() as session:
            fresh = _system_or_404(session, system_id)
            row, created = crud.add_reference(
                session=session,
                system=fresh,
                new=new,
                model_version=model_version,
                make_current=current,
                actor=who,
                topic=topic,
            )
            return _reference_public(row, fresh), created

    public, created = await db.run(record)
    outbox.notify()
    metrics.reference_uploads.labels("stored" if created else "unchanged").inc()
    if not created:
        response.status_code = status.HTTP_200_OK
    return public


@router.get("/systems/{system_id}/references", response_model=list[ReferencePublic])
def list_references(system_id: str, session: SessionDep, _user: Reader) -> list[ReferencePublic]:
    system = _system_or_404(session, system_id)
    rows = crud.list_references(session=session, system_id=system_id)
    return [_reference_public(r, system) for r in rows]


@router.put("/systems/{system_id}/references/current", response_model=ReferencePublic)
def select_reference(
    system_id: str,
    data: ReferenceSelect,
    session: SessionDep,
    topic: TopicDep,
    outbox: RelayDep,
    user: Editor,
) -> ReferencePublic:
    """Make an uploaded reference current for the system (or for one model version)."""
    system = _system_or_404(session, system_id)
    row = crud.select_reference(
        session=session,
        system=system,
        profile_hash=data.hash,
        model_version=data.model_version,
        actor=actor(user),
        topic=topic,
    )
    outbox.notify()
    return _reference_public(row, system)


_IMMUTABLE = "public, max-age=31536000, immutable"


@router.get(
    "/references/{profile_hash}",
    responses={200: {"description": "A shared.stats.reference.ReferenceProfile as JSON"}},
)
def get_reference_profile(profile_hash: str, session: SessionDep, _user: Reader) -> Response:
    """The reference profile with this content hash (what evaluations cite as evidence)."""
    profile = crud.get_profile(session=session, profile_hash=profile_hash)
    if profile is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no reference profile {profile_hash!r}")
    return Response(
        profile,
        media_type="application/json",
        headers={
            "ETag": f'"{profile_hash}"',
            "Cache-Control": _IMMUTABLE,
        },
    )


@router.get(
    "/references/{profile_hash}/values/{sha256}",
    responses={
        200: {
            "description": "A numeric column's distribution blob "
            "(shared.stats.distribution.encode_distribution)",
            "content": {"application/octet-stream": {}},
        }
    },
)
def get_reference_values(
    profile_hash: str,
    sha256: Annotated[str, PathParam(pattern="^[0-9a-f]{64}$")],
    session: SessionDep,
    settings: SettingsDep,
    _user: Reader,
) -> Response:
    """Every value of one numeric column of the profile (named by its ``values_sha256``):
    what drift compares a window with."""
    text = crud.get_profile(session=session, profile_hash=profile_hash)
    if text is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no reference profile {profile_hash!r}")
    profile = ReferenceProfile.model_validate_json(text)
    if sha256 not in {c.values_sha256 for c in profile.numeric_columns()}:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"the profile names no values {sha256}")
    path = uploads.values_path(settings.references_path(), sha256)
    if not path.exists():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"the values {sha256} are not stored")
    return FileResponse(
        path,
        media_type="application/octet-stream",
        headers={"ETag": f'"{sha256}"', "Cache-Control": _IMMUTABLE},
    )


# --- ingest keys -----------------------------------------------------------------------


@router.post(
    "/systems/{system_id}/ingest-keys",
    status_code=status.HTTP_201_CREATED,
    response_model=IngestKeyCreated,
)
def create_ingest_key(
    system_id: str,
    data: IngestKeyCreate,
    session: SessionDep,
    topic: TopicDep,
    outbox: RelayDep,
    user: Editor,
) -> IngestKeyCreated:
    """A new ingest key for this system only; the response is the only time it is shown."""
    system = _system_or_404(session, system_id)
    row, key = crud.create_ingest_key(
        session=session, system=system, name=data.name, actor=actor(user), topic=topic
    )
    outbox.notify()
    public = crud.ingest_key_public(row)
    return IngestKeyCreated.model_validate(public.model_dump() | {"key": key})


@router.get("/systems/{system_id}/ingest-keys", response_model=list[IngestKeyPublic])
def list_ingest_keys(system_id: str, session: SessionDep, _user: Reader) -> list[IngestKeyPublic]:
    _system_or_404(session, system_id)
    rows = crud.list_ingest_keys(session=session, system_id=system_id)
    return [crud.ingest_key_public(r) for r in rows]


@router.delete("/systems/{system_id}/ingest-keys/{key_id}", response_model=IngestKeyPublic)
def revoke_ingest_key(
    system_id: str,
    key_id: str,
    session: SessionDep,
    topic: TopicDep,
    outbox: RelayDep,
    user: Editor,
) -> IngestKeyPublic:
    """Revoke the key: ingest refuses it as soon as the new snapshot reaches it."""
    system = _system_or_404(session, system_id)
    key = crud.get_ingest_key(session=session, system_id=system_id, key_id=key_id)
    if key is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no ingest key {key_id!r}")
    row = crud.revoke_ingest_key(
        session=session, system=system, key=key, actor=actor(user), topic=topic
    )
    outbox.notify()
    return crud.ingest_key_public(row)


# --- monitoring as code ----------------------------------------------------------------


@router.post("/apply", response_model=ApplyResult)
def apply(
    data: Declaration,
    session: SessionDep,
    topic: TopicDep,
    outbox: RelayDep,
    user: Editor,
    source: Annotated[str | None, Query(max_length=255)] = None,
) -> ApplyResult:
    """Create or update a system and its objectives from one declaration (idempotent)."""
    who = actor(user, data.changed_by, required=True)
    result = crud.apply_declaration(
        session=session, data=data, actor=who, source=source, topic=topic
    )
    outbox.notify()
    return result
