"""The alerts service's counters exist at 0 for every system it knows, before any change."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from services.alerts.app import create_app
from services.alerts.metrics import OPEN_STATES
from services.alerts.models import CorrectiveAction, Nonconformity, Notification
from services.alerts.settings import Settings
from shared.bus import MemoryBus
from shared.contracts import (
    NonconformityChange,
    Severity,
    encode,
)
from tests.factories import make_snapshot, unique


async def test_nonconformity_changes_start_at_zero_per_known_system(tmp_path: Path) -> None:
    bus = MemoryBus()
    await bus.start()
    system_id = unique("sys")
    snapshot = make_snapshot(system_id)
    await bus.producer.send(bus.topics.registry, encode(snapshot), key=system_id.encode())
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'a.db'}"), bus=bus)
    wanted = {
        (system_id, change.value, severity.value)
        for change in NonconformityChange
        for severity in Severity
    }
    found: dict[tuple[str, str, str], float] = {}
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app)
            async with httpx.AsyncClient(transport=transport, base_url="http://alerts") as client:
                for _ in range(500):  # until the registry view has read the system
                    text = (await client.get("/metrics")).text
                    found = {
                        (s.labels["system"], s.labels["change"], s.labels["severity"]): s.value
                        for family in text_string_to_metric_families(text)
                        for s in family.samples
                        if s.name == "watchkeeper_nonconformity_changes_total"
                    }
                    if found:
                        break
                    await asyncio.sleep(0.02)
    finally:
        await bus.stop()
    assert set(found) == wanted
    assert set(found.values()) == {0.0}


async def test_open_records_overdue_actions_and_pending_notifications(tmp_path: Path) -> None:
    """Read from the database at each scrape: open nonconformities by system, classification
    and state (0 for the known system's other combinations; closed ones not counted),
    corrective actions past due, notifications waiting for delivery."""
    bus = MemoryBus()
    await bus.start()
    system_id = unique("sys")
    await bus.producer.send(
        bus.topics.registry, encode(make_snapshot(system_id)), key=system_id.encode()
    )
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'a.db'}"), bus=bus)
    try:
        async with app.router.lifespan_context(app):
            registry = app.state.metrics_registry

            def get(name: str, **labels: str) -> float | None:
                found: float | None = registry.get_sample_value(name, labels)
                return found

            open_ = "watchkeeper_nonconformities_open"
            deadline = time.monotonic() + 10
            while get(open_, system=system_id, classification="major", state="raised") is None:
                assert time.monotonic() < deadline, "the registry view never named the system"
                await asyncio.sleep(0.02)
            for state in OPEN_STATES:
                for classification in ("major", "minor", "observation"):
                    labels = {"classification": classification, "state": state}
                    assert get(open_, system=system_id, **labels) == 0, labels
            assert get("watchkeeper_corrective_actions_overdue", system=system_id) == 0
            now = datetime.now(UTC)
            with app.state.db.session() as session:
                records = [("raised", "major"), ("raised", "major"), ("triaged", "minor")]
                records.append(("closed", "major"))
                for i, (status, classification) in enumerate(records):
                    session.add(_nonconformity(f"nc{i}", system_id, status, classification))
                session.add(_action("late", "nc2", now - timedelta(days=1), "in_progress"))
                session.add(_action("done", "nc2", now - timedelta(days=1), "implemented"))
                session.add(_action("future", "nc2", now + timedelta(days=1), "planned"))
                session.add(
                    Notification(receiver="ops", url="http://ops.invalid", status="pending")
                )
                session.add(Notification(receiver="ops", url="http://ops.invalid", status="sent"))
                session.commit()
            assert get(open_, system=system_id, classification="major", state="raised") == 2
            assert get(open_, system=system_id, classification="minor", state="triaged") == 1
            assert get(open_, system=system_id, classification="major", state="closed") is None
            assert get("watchkeeper_corrective_actions_overdue", system=system_id) == 1
            assert get("watchkeeper_alert_notifications_pending", receiver="ops") == 1
    finally:
        await bus.stop()


def _nonconformity(nc_id: str, system_id: str, status: str, classification: str) -> Nonconformity:
    return Nonconformity(
        id=nc_id,
        fingerprint=nc_id,
        system_id=system_id,
        objective_id="acc",
        objective_version=1,
        metric="accuracy",
        severity=classification,
        status=status,
        open=status != "closed",
        first_evaluation_id="e1",
        last_evaluation_id="e1",
        threshold=0.8,
        comparator="ge",
        classification=classification,
    )


def _action(action_id: str, nc_id: str, due_at: datetime, status: str) -> CorrectiveAction:
    return CorrectiveAction(
        id=action_id,
        nonconformity_id=nc_id,
        description="retrain",
        owner="bob",
        due_at=due_at,
        status=status,
        created_by="alice",
    )
