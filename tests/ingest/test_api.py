"""Ingest's answers to good and bad input, and to a bus that does not acknowledge."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from services.ingest.app import create_app
from services.ingest.settings import Settings
from shared.bus import MemoryBus, Topics
from tests.factories import event_values, make_prediction, unique
from tests.ingest.conftest import publish_system


@pytest.fixture
async def ingest(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, MemoryBus, str]]:
    bus = MemoryBus()
    await bus.start()
    system_id = unique("sys")
    await publish_system(bus, system_id)
    settings = Settings(
        max_body_bytes=64 * 1024,
        max_batch_events=50,
        database_url=f"sqlite:///{tmp_path / 'ingest.db'}",
    )
    app = create_app(settings, bus=bus)
    async with app.router.lifespan_context(app):
        await app.state.ingest.view.wait_loaded(5)
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            yield client, bus, system_id


async def test_accepts_and_produces_keyed_by_system(
    ingest: tuple[httpx.AsyncClient, MemoryBus, str],
) -> None:
    client, bus, system_id = ingest
    events = [make_prediction(system_id) for _ in range(3)]
    response = await client.post("/v1/predictions", json=events)
    assert response.status_code == 202
    assert response.json() == {"accepted": 3, "duplicates": [], "rejected": []}
    consumer = bus.consumer([bus.topics.predictions], group_id=None)
    await consumer.start()
    records = await consumer.poll(timeout_s=0.1)
    await consumer.stop()
    assert [orjson.loads(v)["event_id"] for v in event_values(records)] == [
        e["event_id"] for e in events
    ]
    assert {r.key for r in records} == {system_id.encode()}


async def test_ndjson_and_gzip(ingest: tuple[httpx.AsyncClient, MemoryBus, str]) -> None:
    client, _bus, system_id = ingest
    body = b"\n".join(orjson.dumps(make_prediction(system_id)) for _ in range(4))
    response = await client.post(
        "/v1/predictions",
        content=gzip.compress(body),
        headers={"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 4


def _bad(system_id: str, **change: Any) -> dict[str, Any]:
    event = make_prediction(system_id)
    for key, value in change.items():
        if key.startswith("features__"):
            name = key.removeprefix("features__")
            if value is ...:
                del event["features"][name]
            else:
                event["features"][name] = value
        elif value is ...:
            del event[key]
        else:
            event[key] = value
    return event


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"timestamp": "2026-01-01T00:00:00"}, "timestamp", "timezone"),
        ({"timestamp": ...}, "timestamp", "required"),
        ({"event_id": "has space"}, "event_id", "pattern"),
        ({"prediction": [1, 2]}, "prediction", ""),
        ({"features__income": "high"}, "features.income", "number"),
        ({"features__region": 3.5}, "features.region", "category"),
        ({"features__existing_customer": "yes"}, "features.existing_customer", "boolean"),
        ({"features__income": None}, "features.income", "null"),
        ({"features__income": ...}, "features.income", "missing"),
        ({"features__colour": "red"}, "features.colour", "unknown feature"),
        ({"scores": {"1": 1.5}}, "scores.1", "less than or equal"),
        ({"latency_ms": -1}, "latency_ms", "greater than or equal"),
        ({"surprise": 1}, "surprise", "not permitted"),
    ],
)
async def test_invalid_event_names_field(
    ingest: tuple[httpx.AsyncClient, MemoryBus, str],
    change: dict[str, Any],
    field: str,
    reason: str,
) -> None:
    client, _bus, system_id = ingest
    response = await client.post("/v1/predictions", json=_bad(system_id, **change))
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["field"] == field
    assert reason.lower() in error["reason"].lower()


async def test_unknown_system(ingest: tuple[httpx.AsyncClient, MemoryBus, str]) -> None:
    client, _bus, _system_id = ingest
    response = await client.post("/v1/predictions", json=make_prediction("nobody"))
    assert response.status_code == 422
    assert response.json()["detail"][0] == {
        "index": 0,
        "field": "system_id",
        "reason": "unknown AI system",
    }


async def test_partial_batch_accepts_good_and_lists_bad(
    ingest: tuple[httpx.AsyncClient, MemoryBus, str],
) -> None:
    client, _bus, system_id = ingest
    events = [
        make_prediction(system_id),
        _bad(system_id, features__income="x"),
        make_prediction(system_id),
    ]
    response = await client.post("/v1/predictions", json=events)
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 2
    assert body["rejected"] == [
        {"index": 1, "field": "features.income", "reason": "expected a number, got str"}
    ]
    atomic = await client.post("/v1/predictions", params={"atomic": "true"}, json=events)
    assert atomic.status_code == 422
    assert atomic.json()["accepted"] == 0


@pytest.mark.parametrize(
    ("content", "status", "reason"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"", 400, "empty"),
        (b"[1]", 422, "not a JSON object"),
        (b"NaN", 422, "not a JSON object"),
        (b'{"a": 1', 400, "not valid JSON"),
    ],
)
async def test_malformed_body(
    ingest: tuple[httpx.AsyncClient, MemoryBus, str], content: bytes, status: int, reason: str
) -> None:
    client, _bus, _system_id = ingest
    response = await client.post(
        "/v1/predictions", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == status
    assert reason in response.text


@pytest.mark.parametrize(
    ("template", "field"),
    [
        ('"features": {"income": NaN, "region": "north"}', "features.income"),
        ('"features": {"income": 1e999, "region": "north"}', "features.income"),
        ('"features": {"income": 1, "region": "north"}, "latency_ms": -Infinity', "latency_ms"),
        ('"features": {"income": 1, "region": "north"}, "scores": {"1": NaN}', "scores.1"),
    ],
)
async def test_nan_and_infinity_name_the_field(
    ingest: tuple[httpx.AsyncClient, MemoryBus, str], template: str, field: str
) -> None:
    """Not JSON, but what many encoders write: refused per record, naming the field."""
    client, _bus, system_id = ingest
    good = orjson.dumps(make_prediction(system_id))
    head = f'"event_id": "e-nan", "system_id": "{system_id}", "model_version": "v1", '
    head += '"timestamp": "2026-01-01T00:00:00Z", "prediction": 1, '
    bad = ("{" + head + template + "}").encode()
    response = await client.post(
        "/v1/predictions",
        content=good + b"\n" + bad,
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 1
    assert response.json()["rejected"] == [
        {"index": 1, "field": field, "reason": "NaN and infinity are not allowed"}
    ]


async def test_gzip_bomb_answers_413(ingest: tuple[httpx.AsyncClient, MemoryBus, str]) -> None:
    client, _bus, system_id = ingest
    body = orjson.dumps([make_prediction(system_id, attributes={"pad": "x" * 60_000})] * 2)
    response = await client.post(
        "/v1/predictions",
        content=gzip.compress(body),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 413
    assert "decompressed size exceeds the limit of 65536 bytes" in response.json()["detail"]


async def test_limits_answer_413(ingest: tuple[httpx.AsyncClient, MemoryBus, str]) -> None:
    client, _bus, system_id = ingest
    too_many = [make_prediction(system_id) for _ in range(51)]
    response = await client.post("/v1/predictions", json=too_many)
    assert response.status_code == 413
    assert "limit of 50 events" in response.text
    huge = make_prediction(system_id, model_version="x" * 100, attributes={"n": "y" * 70_000})
    response = await client.post("/v1/predictions", json=huge)
    assert response.status_code == 413
    assert "65536 bytes" in response.text


async def _kafka_ingest_app(
    bootstrap: str, timeout_s: float, tmp_path: Path
) -> tuple[FastAPI, str]:
    topics = Topics(prefix=f"t{unique('p')[-8:]}.")
    system_id = unique("sys")
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'ingest.db'}",
        bus="kafka",
        kafka_bootstrap=bootstrap,
        kafka_send_timeout_s=timeout_s,
        topic_prefix=topics.prefix,
    )
    return create_app(settings), system_id


async def test_kafka_down_answers_503_with_retry_after(kafka_broker: Any, tmp_path: Path) -> None:
    """Ingest on the real broker: 202 while it is up, 503 (never a hang) while it is down."""
    app, system_id = await _kafka_ingest_app(kafka_broker.bootstrap, 3.0, tmp_path)
    async with app.router.lifespan_context(app):
        await publish_system(app.state.bus, system_id)
        assert await app.state.ingest.view.wait_loaded(30)
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            deadline = time.monotonic() + 30
            while True:
                response = await client.post("/v1/predictions", json=make_prediction(system_id))
                if response.status_code == 202 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert response.status_code == 202, response.text
            await asyncio.to_thread(kafka_broker.pause)
            try:
                started = time.monotonic()
                response = await client.post("/v1/predictions", json=make_prediction(system_id))
                took = time.monotonic() - started
            finally:
                await asyncio.to_thread(kafka_broker.resume)
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"] == "2"
            assert "event bus unavailable" in response.json()["detail"]
            assert took < 10


async def test_unreachable_kafka_at_start_answers_503(tmp_path: Path) -> None:
    from tests.deployments import free_port

    app, system_id = await _kafka_ingest_app(f"127.0.0.1:{free_port()}", 1.0, tmp_path)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            response = await client.post("/v1/predictions", json=make_prediction(system_id))
            assert response.status_code == 503
            assert response.headers["Retry-After"] == "2"
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["bus"] is False
