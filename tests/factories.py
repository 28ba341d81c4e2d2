"""Factories for the records tests build: systems, objectives, events (plain dicts, as sent)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.bus import Record
from shared.bus.framing import unframe
from shared.contracts import (
    Comparator,
    EvaluationResult,
    EvaluationStatus,
    Evidence,
    FeatureSpec,
    FeatureType,
    Objective,
    SystemSnapshot,
    Task,
)

__all__ = [
    "accuracy_snapshot",
    "event_values",
    "make_evaluation",
    "make_objective",
    "make_outcome",
    "make_prediction",
    "make_snapshot",
    "make_system",
    "past_window_start",
    "unique",
]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_system(system_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    return {
        "id": system_id or unique("sys"),
        "name": "Loan approval",
        "owner": "ml-team@example.org",
        "task": "binary_classification",
        "features": [
            {"name": "income", "type": "numeric", "min": 0},
            {"name": "region", "type": "categorical", "categories": ["north", "south"]},
            {"name": "existing_customer", "type": "boolean", "nullable": True},
        ],
        **overrides,
    }


def make_snapshot(
    system_id: str | None = None,
    *,
    features: Sequence[FeatureSpec] | None = None,
    objectives: Sequence[Objective] = (),
    **overrides: Any,
) -> SystemSnapshot:
    """The registry's snapshot of a system, as on the registry topic: ``make_system``'s binary
    classifier (its features unless ``features``), ``objectives`` given this system's id;
    ``overrides`` set any other field of the snapshot."""
    body = make_system(system_id)
    fields: dict[str, Any] = {
        "system_id": body["id"],
        "name": body["name"],
        "owner": body["owner"],
        "task": Task(body["task"]),
        "features": (
            [FeatureSpec.model_validate(f) for f in body["features"]]
            if features is None
            else list(features)
        ),
        "objectives": [o.model_copy(update={"system_id": body["id"]}) for o in objectives],
        "updated_at": datetime.now(UTC),
        **overrides,
    }
    return SystemSnapshot(**fields)


def make_objective(objective_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    return {
        "id": objective_id or unique("obj"),
        "metric": "accuracy",
        "comparator": "ge",
        "threshold": 0.8,
        "window_seconds": 60,
        "min_samples": 10,
        "severity": "major",
        "owner": "quality@example.org",
        "rationale": "wrong decisions harm applicants",
        "changed_by": "alice",
        **overrides,
    }


def past_window_start(size_s: int = 60, minutes_ago: int = 10) -> datetime:
    """The start of a window that ended well before now (so idle closing may close it)."""
    ts = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    epoch = int(ts.timestamp()) // size_s * size_s
    return datetime.fromtimestamp(epoch, UTC)


def make_prediction(
    system_id: str, *, event_id: str | None = None, ts: datetime | None = None, **overrides: Any
) -> dict[str, Any]:
    return {
        "event_id": event_id or uuid.uuid4().hex,
        "system_id": system_id,
        "model_version": "v1",
        "timestamp": (ts or datetime.now(UTC)).isoformat(),
        "features": {"income": 52_000.0, "region": "north", "existing_customer": True},
        "prediction": 1,
        **overrides,
    }


def make_outcome(
    system_id: str, prediction_id: str, actual: Any, *, ts: datetime | None = None
) -> dict[str, Any]:
    return {
        "event_id": f"o-{prediction_id}",
        "system_id": system_id,
        "prediction_id": prediction_id,
        "timestamp": (ts or datetime.now(UTC)).isoformat(),
        "actual": actual,
    }


def event_values(records: Iterable[Record]) -> list[bytes]:
    """The events in polled records, in order: a record holds one event or several as
    NDJSON (``shared.bus.framing``)."""
    values: list[bytes] = []
    for record in records:
        value = record.value or b""
        values += unframe(value) or [value]
    return values


def make_evaluation(
    status: EvaluationStatus,
    window: int,
    *,
    evaluation_id: str,
    system_id: str,
    first_window: datetime,
    value: float = 0.5,
    revision: int = 0,
) -> EvaluationResult:
    """An accuracy evaluation (threshold 0.8, objective ``acc`` v1) of the ``window``-th minute
    after ``first_window``."""
    start = first_window + timedelta(minutes=window)
    return EvaluationResult(
        id=evaluation_id,
        system_id=system_id,
        model_version="v1",
        objective_id="acc",
        objective_version=1,
        window_start=start,
        window_end=start + timedelta(minutes=1),
        metric="accuracy",
        value=value,
        threshold=0.8,
        comparator=Comparator.GE,
        status=status,
        n_samples=100,
        revision=revision,
        evidence=Evidence(objective_version=1),
    )


def make_income_drift_case(rng: Any, rows: int) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """A system with an ``income``/``region`` schema, a reference DataFrame of ``rows`` rows
    (income ~ N(50,000, 5,000)) and a PSI objective on ``income`` (< 0.1, 60 s windows)."""
    import pandas as pd

    system = make_system(
        features=[
            {"name": "income", "type": "numeric", "min": 0},
            {"name": "region", "type": "categorical", "categories": ["north", "south"]},
        ]
    )
    reference = pd.DataFrame(
        {
            "income": rng.normal(50_000, 5_000, rows),
            "region": rng.choice(["north", "south"], rows),
            "prediction": rng.integers(0, 2, rows),
        }
    )
    objective = make_objective(
        metric="psi",
        parameters={"feature": "income"},
        comparator="lt",
        threshold=0.1,
        window_seconds=60,
        min_samples=50,
    )
    return system, reference, objective


def accuracy_snapshot(
    system_id: str, *, name: str | None = None, system_owner: str = "o", **objective: Any
) -> SystemSnapshot:
    """A registry snapshot of a binary classifier with one numeric feature (income) and one
    objective "acc" (accuracy >= 0.8 over 60 s windows); ``objective`` overrides its fields."""
    now = datetime.now(UTC)
    fields: dict[str, Any] = {
        "id": "acc",
        "version": 1,
        "system_id": system_id,
        "metric": "accuracy",
        "comparator": Comparator.GE,
        "threshold": 0.8,
        "window_seconds": 60,
        "owner": "owen",
        "changed_by": "editor",
        "changed_at": now,
        **objective,
    }
    return make_snapshot(
        system_id,
        name=system_id if name is None else name,
        owner=system_owner,
        features=[FeatureSpec(name="income", type=FeatureType.NUMERIC)],
        objectives=[Objective(**fields)],
        updated_at=now,
    )
