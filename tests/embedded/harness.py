"""The embedded platform served in the test's event loop, on a data dir a test may reuse
(restarts), with the helpers its tests share."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import uvicorn

from shared.bus import Bus
from shared.contracts import EvaluationResult, decode
from tests.deployments import SERVICES, Deployment, free_port, wait_ready
from watchkeeper.embedded import EmbeddedOptions, create_embedded_app

__all__ = ["embedded", "evaluations_where"]


@contextlib.asynccontextmanager
async def embedded(data_dir: Path, *, auth_secret: str | None = None) -> AsyncIterator[Deployment]:
    """``watchkeeper up`` on ``data_dir``; stopped cleanly (lifespans run) on exit."""
    options = EmbeddedOptions(
        data_dir=data_dir, allowed_lateness_s=0.0, idle_close_s=1.0, tick_s=0.2
    )
    app = create_embedded_app(options)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    base = f"http://127.0.0.1:{port}"
    urls = {name: f"{base}/{name}" for name in SERVICES}
    try:
        await wait_ready(urls)
        yield Deployment("embedded", urls, app.state.bus, auth_secret=auth_secret)
    finally:
        server.should_exit = True
        await task


async def evaluations_where(
    bus: Bus, matches: Callable[[EvaluationResult], bool], timeout_s: float = 60
) -> EvaluationResult:
    """The first evaluation on the evaluations topic that ``matches`` (fails on timeout)."""
    consumer = bus.consumer([bus.topics.evaluations], group_id=None)
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for record in await consumer.poll(timeout_s=0.5):
                result = decode(EvaluationResult, record.value)
                if matches(result):
                    return result
    finally:
        await consumer.stop()
    raise AssertionError("no matching evaluation on the evaluations topic")
