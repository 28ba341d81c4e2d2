"""Applying evaluations to nonconformity records: one record per fingerprint, replays ignored."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from services.alerts.app import MIGRATIONS
from services.alerts.consumer import apply_evaluation
from services.alerts.models import Nonconformity
from shared.contracts import (
    Comparator,
    EvaluationResult,
    EvaluationStatus,
    Evidence,
    NonconformityChange,
)
from shared.db import Database
from shared.migrations import OUTBOX, upgrade
from shared.outbox import OutboxMessage


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'alerts.db'}"
    else:
        from tests.deployments import fresh_database

        url = fresh_database(request.getfixturevalue("database_url"))
    database = Database(url)
    upgrade(database.engine, OUTBOX)
    upgrade(database.engine, MIGRATIONS)
    yield database
    database.dispose()


def evaluation(status: EvaluationStatus, window: int, value: float = 0.5) -> EvaluationResult:
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=window)
    return EvaluationResult(
        id=f"e-{window}-{uuid.uuid4().hex[:6]}",
        system_id="sys",
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
        evidence=Evidence(objective_version=1),
    )


def test_breaches_make_one_record_with_occurrences(db: Database) -> None:
    changes = []
    results = [evaluation(EvaluationStatus.BREACH, w) for w in range(3)]
    for result in [*results, results[1]]:  # the last one is a redelivery
        with db.session() as session:
            changes.append(
                apply_evaluation(session=session, result=result, objective=None, topic="nc")
            )
    assert [c.change if c else None for c in changes] == [
        NonconformityChange.RAISED,
        NonconformityChange.OCCURRENCE,
        NonconformityChange.OCCURRENCE,
        None,
    ]
    with db.session() as session:
        [nc] = session.exec(select(Nonconformity)).all()
        assert nc.occurrences == 3
        assert nc.first_evaluation_id == results[0].id
        assert nc.last_evaluation_id == results[2].id
        outbox = session.exec(select(OutboxMessage)).all()
        assert [m.topic for m in outbox] == ["nc", "nc", "nc"]
        assert {m.key for m in outbox} == {nc.id.encode()}


def test_pass_clears_but_does_not_close(db: Database) -> None:
    for result in [evaluation(EvaluationStatus.BREACH, 0), evaluation(EvaluationStatus.PASS, 1)]:
        with db.session() as session:
            apply_evaluation(session=session, result=result, objective=None, topic="nc")
    with db.session() as session:
        [nc] = session.exec(select(Nonconformity)).all()
        assert nc.condition_cleared is True
        assert nc.open is True
        assert nc.status == "raised"
