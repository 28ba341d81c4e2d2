"""Factories for ingest tests: a system on the registry topic, an ingest app in front of it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.ingest.app import create_app
from services.ingest.settings import Settings
from shared.bus import Bus, MemoryBus
from shared.contracts import encode
from tests.factories import event_values, make_snapshot, unique

AUTH_SECRET = "test-secret-0123456789-0123456789-abcdef"


async def publish_system(bus: Bus, system_id: str, **overrides: Any) -> None:
    """Put the system's definition on the registry topic, as the registry would."""
    await bus.producer.send(
        bus.topics.registry, encode(make_snapshot(system_id, **overrides)), key=system_id.encode()
    )


@dataclass
class Ingest:
    app: FastAPI
    client: httpx.AsyncClient
    bus: Bus
    system_id: str

    async def topic_values(self, topic: str | None = None) -> list[bytes]:
        consumer = self.bus.consumer([topic or self.bus.topics.predictions], group_id=None)
        await consumer.start()
        try:
            records = await consumer.poll(timeout_s=0.2, max_records=100_000)
        finally:
            await consumer.stop()
        return event_values(records)


MakeIngest = Callable[..., contextlib.AbstractAsyncContextManager[Ingest]]


@pytest.fixture
def make_ingest(tmp_path: Path) -> MakeIngest:
    """``async with make_ingest(**settings) as ingest``: an app on a MemoryBus (or ``bus=``)
    with one registered system, a SQLite duplicate store under tmp_path, and a client."""

    @contextlib.asynccontextmanager
    async def make(
        *, bus: Bus | None = None, system: dict[str, Any] | None = None, **overrides: Any
    ) -> AsyncIterator[Ingest]:
        the_bus = bus or MemoryBus()
        owned = bus is None
        if owned:
            await the_bus.start()
        system_id = unique("sys")
        await publish_system(the_bus, system_id, **(system or {}))
        options: dict[str, Any] = {
            "database_url": f"sqlite:///{tmp_path / 'ingest.db'}",
            "max_body_bytes": 64 * 1024,
            "max_batch_events": 50,
            **overrides,
        }
        app = create_app(Settings(**options), bus=the_bus)
        try:
            async with app.router.lifespan_context(app):
                assert await app.state.ingest.view.wait_loaded(10)
                transport = httpx.ASGITransport(app)
                async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as c:
                    yield Ingest(app, c, the_bus, system_id)
        finally:
            if owned:
                await the_bus.stop()

    return make
