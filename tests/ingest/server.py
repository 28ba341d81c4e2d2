"""Ingest as a real HTTP server (uvicorn on 127.0.0.1) in a thread with its own event loop.

For tests whose client is not asyncio (the SDK's sync client, schemathesis) or must talk
HTTP for real. Systems are put on the registry topic before the server starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import uvicorn

from services.ingest.app import create_app
from services.ingest.settings import Settings
from shared.bus import Bus, MemoryBus, bus_from_settings
from tests.deployments import free_port
from tests.ingest.conftest import publish_system

__all__ = ["ingest_server"]


@contextlib.contextmanager
def ingest_server(
    settings: Settings, systems: Sequence[tuple[str, dict[str, Any]]] = ()
) -> Iterator[str]:
    """Serve ingest built from ``settings`` (its own Kafka bus, or a MemoryBus for
    ``bus="memory"``) with ``systems`` registered; yields the base URL."""
    port = free_port()
    holder: dict[str, Any] = {}
    failed: list[BaseException] = []

    async def serve() -> None:
        bus: Bus = MemoryBus() if settings.bus == "memory" else bus_from_settings(settings)
        await bus.start()
        try:
            for system_id, overrides in systems:
                await publish_system(bus, system_id, **overrides)
            app = create_app(settings, bus=bus)
            config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
            server = uvicorn.Server(config)
            holder["server"] = server
            await server.serve()
        finally:
            await bus.stop()

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:  # surfaced by the readiness wait below
            failed.append(exc)

    thread = threading.Thread(target=run, name="ingest-server", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if failed:
            raise RuntimeError("ingest server failed to start") from failed[0]
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                break
        if time.monotonic() > deadline:
            raise AssertionError("ingest did not become ready within 60 s")
        time.sleep(0.05)
    try:
        yield url
    finally:
        server = holder.get("server")
        if server is not None:
            server.should_exit = True
        thread.join(60)
