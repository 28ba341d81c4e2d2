"""Objective changes read from the registry topic land in the improvement log once per
version, even though the topic is read from its beginning at every start."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from services.alerts.app import create_app
from services.alerts.settings import Settings
from shared.bus import MemoryBus
from shared.contracts import (
    SystemSnapshot,
    encode,
)
from tests.factories import accuracy_snapshot


def snapshot(version: int) -> SystemSnapshot:
    return accuracy_snapshot(
        "credit",
        version=version,
        threshold=0.8 + version / 100,
        changed_by=f"editor{version}",
        change_reason=f"v{version}",
    )


async def objective_entries(app: Any, wanted: int) -> list[dict[str, Any]]:
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://alerts") as client:
        for _ in range(300):
            entries = (await client.get("/v1/log", params={"kind": "objective_changed"})).json()
            if len(entries) >= wanted:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)  # nothing more arrives
        return list((await client.get("/v1/log", params={"kind": "objective_changed"})).json())


async def test_each_objective_version_is_logged_once(tmp_path: Path) -> None:
    bus = MemoryBus()
    await bus.start()
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'a.db'}")
    try:
        await bus.producer.send(bus.topics.registry, encode(snapshot(1)), key=b"credit")
        app = create_app(settings, bus=bus)
        async with app.router.lifespan_context(app):
            assert len(await objective_entries(app, 1)) == 1
        await bus.producer.send(bus.topics.registry, encode(snapshot(2)), key=b"credit")
        app = create_app(settings, bus=bus)  # a restart re-reads the whole registry topic
        async with app.router.lifespan_context(app):
            entries = await objective_entries(app, 2)
    finally:
        await bus.stop()
    assert [(e["actor"], e["subject"], e["after"]["version"]) for e in entries] == [
        ("editor1", "objective:credit/acc", 1),
        ("editor2", "objective:credit/acc", 2),
    ]
    assert entries[1]["before"] == {"version": 1}
    assert entries[1]["after"]["change_reason"] == "v2"
