"""The asyncio client: same guarantees, a task instead of a thread."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.sdk.conftest import FakeIngest, client_options, spool_files
from watchkeeper_sdk import AsyncWatchkeeper, DeliveryError

MakeAsyncClient = Callable[..., AsyncWatchkeeper]


async def test_log_only_enqueues_and_flush_delivers(
    make_async_client: MakeAsyncClient, ingest: FakeIngest
) -> None:
    client = make_async_client(batch_size=4, linger=60.0)

    ids = [await client.log_prediction({"i": i}, i % 2) for i in range(6)]
    outcome = await client.log_outcome(ids[0], 1)

    assert await client.flush(timeout=5)
    assert ingest.accepted_ids() == [*ids, outcome]
    assert [len(attempt.events) for attempt in ingest.attempts] == [4, 2, 1]
    assert client.stats().sent == 7


async def test_503_retry_honours_retry_after(
    make_async_client: MakeAsyncClient, ingest: FakeIngest
) -> None:
    ingest.script.append((503, {"Retry-After": "0.3"}, {"detail": "Kafka unavailable"}))
    client = make_async_client()

    event_id = await client.log_prediction({"a": 1}, 0)

    assert await client.flush(timeout=5)
    first, second = ingest.attempts
    assert second.at - first.at >= 0.29
    assert ingest.accepted_ids() == [event_id]
    assert client.stats().retried == 1


async def test_refusal_is_reported_and_not_retried(
    make_async_client: MakeAsyncClient, ingest: FakeIngest
) -> None:
    errors: list[DeliveryError] = []
    ingest.script.append((400, {}, {"detail": "malformed"}))
    client = make_async_client(on_error=errors.append)

    await client.log_prediction({"a": 1}, 0)

    assert await client.flush(timeout=5)
    assert len(ingest.attempts) == 1
    assert errors[0].status_code == 400
    assert client.stats().rejected == 1


async def test_ingest_down_spools_then_replays_in_order(
    make_async_client: MakeAsyncClient, ingest: FakeIngest
) -> None:
    ingest.down = True
    client = make_async_client(batch_size=5, max_retries=0)

    ids = [await client.log_prediction({"i": i}, 0) for i in range(12)]
    for _ in range(500):
        if client.stats().spooled == 12:
            break
        await asyncio.sleep(0.01)
    assert client.stats().spooled == 12
    assert spool_files(client.spool_dir)

    ingest.down = False
    assert await client.flush(timeout=10)
    assert ingest.accepted_ids() == ids
    assert spool_files(client.spool_dir) == []


async def test_queue_full_spills_to_disk_without_blocking_the_loop(
    ingest: FakeIngest, spool_dir: Path
) -> None:
    gate = asyncio.Event()
    inner = ingest.transport()

    async def held(request: httpx.Request) -> httpx.Response:
        await gate.wait()  # ingest hangs; the loop keeps running
        return await inner.handle_async_request(request)

    options = client_options(ingest, spool_dir, transport=httpx.MockTransport(held))
    client = AsyncWatchkeeper(
        **{**options, "max_queue": 4, "block_timeout": 0.01, "batch_size": 2, "linger": 0.0},
        max_in_flight=1,  # one batch stuck in flight, the other 14 events queued or spooled
    )
    first = await client.log_prediction({"i": 0}, 0)
    await asyncio.sleep(0.05)  # the sender is now stuck in its first request
    rest = [await client.log_prediction({"i": i}, 0) for i in range(1, 15)]

    assert client.stats().spooled >= 8
    gate.set()
    assert await client.flush(timeout=10)
    assert ingest.accepted_ids() == [first, *rest]
    await client.aclose()


async def test_aclose_with_ingest_down_spools_and_a_new_client_replays(
    ingest: FakeIngest, spool_dir: Path
) -> None:
    ingest.down = True
    async with AsyncWatchkeeper(**client_options(ingest, spool_dir, max_retries=0)) as first:
        ids = [await first.log_prediction({"i": i}, 0) for i in range(5)]
    assert first.stats().spooled == 5

    ingest.down = False
    async with AsyncWatchkeeper(**client_options(ingest, spool_dir)) as second:
        for _ in range(500):
            if len(ingest.accepted) == 5:
                break
            await asyncio.sleep(0.01)
    assert ingest.accepted_ids() == ids
    assert second.stats().replayed == 5
    assert spool_files(spool_dir) == []


async def test_log_batch_from_a_dataframe(
    make_async_client: MakeAsyncClient, ingest: FakeIngest
) -> None:
    import pandas as pd

    client = make_async_client()
    frame = pd.DataFrame({"x": [1.0, 2.0], "prediction": [0, 1]})

    ids = await client.log_batch(frame)

    assert await client.flush(timeout=5)
    assert ingest.accepted_ids() == ids
    assert [event["features"] for event in ingest.accepted] == [{"x": 1.0}, {"x": 2.0}]
