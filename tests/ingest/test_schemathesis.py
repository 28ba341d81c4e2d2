"""Property-based requests generated from ingest's own OpenAPI document: never a 5xx.

Ingest runs as a real HTTP server (uvicorn, in-process bus, SQLite) in a thread; schemathesis
generates bodies, query strings and headers for every operation of the schema it serves.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from services.ingest.app import create_app
from services.ingest.settings import Settings
from shared.bus import MemoryBus
from tests.deployments import free_port
from tests.ingest.conftest import publish_system


@pytest.fixture(scope="module")
def ingest_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    database = tmp_path_factory.mktemp("schemathesis") / "ingest.db"
    holder: dict[str, Any] = {}

    async def serve() -> None:
        bus = MemoryBus()
        await bus.start()
        await publish_system(bus, "sys-1")
        settings = Settings(
            database_url=f"sqlite:///{database}", max_body_bytes=64 * 1024, max_batch_events=50
        )
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(settings, bus=bus), host="127.0.0.1", port=port, log_level="warning"
            )
        )
        holder["server"] = server
        try:
            await server.serve()
        finally:
            await bus.stop()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/readyz").status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "ingest did not start"
        time.sleep(0.05)
    yield url
    holder["server"].should_exit = True
    thread.join(30)


def test_no_request_gets_a_server_error(ingest_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{ingest_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/predictions", "/v1/outcomes"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=60,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def no_server_error(case: schemathesis.Case) -> None:
            response = case.call(timeout=30)
            case.validate_response(response, checks=[not_a_server_error])

        no_server_error()
