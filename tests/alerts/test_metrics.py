"""The alerts service's counters exist at 0 for every system it knows, before any change."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from services.alerts.app import create_app
from services.alerts.settings import Settings
from shared.bus import MemoryBus
from shared.contracts import (
    FeatureSpec,
    FeatureType,
    NonconformityChange,
    Severity,
    SystemSnapshot,
    Task,
    encode,
)
from tests.factories import unique


async def test_nonconformity_changes_start_at_zero_per_known_system(tmp_path: Path) -> None:
    bus = MemoryBus()
    await bus.start()
    system_id = unique("sys")
    snapshot = SystemSnapshot(
        system_id=system_id,
        name="s",
        owner="o",
        task=Task.BINARY_CLASSIFICATION,
        features=[FeatureSpec(name="income", type=FeatureType.NUMERIC)],
        updated_at=datetime.now(UTC),
    )
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
