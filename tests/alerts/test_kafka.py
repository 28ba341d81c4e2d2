"""The alerts service on the real Kafka broker and PostgreSQL: replayed evaluations make one
record; a revision that withdraws the only breaches leaves no open record."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from services.alerts.app import create_app
from services.alerts.settings import Settings
from shared.contracts import (
    EvaluationResult,
    EvaluationStatus,
    encode,
)
from tests.deployments import fresh_database
from tests.factories import make_evaluation


def evaluation(status: EvaluationStatus, window: int, revision: int = 0) -> EvaluationResult:
    return make_evaluation(
        status,
        window,
        evaluation_id=f"e-{window}-r{revision}",
        system_id="credit",
        first_window=datetime(2026, 3, 1, tzinfo=UTC),
        revision=revision,
    )


async def until(client: httpx.AsyncClient, check: Any) -> list[dict[str, Any]]:
    for _ in range(600):
        found = (await client.get("/v1/nonconformities")).json()
        if check(found):
            return list(found)
        await asyncio.sleep(0.05)
    raise AssertionError(f"never reached: {found}")


async def test_replays_and_revisions_on_kafka_and_postgresql(
    kafka_bootstrap: str, database_url: str
) -> None:
    settings = Settings(
        bus="kafka",
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:8]}.",
        database_url=fresh_database(database_url),
        group_id=f"alerts-{uuid.uuid4().hex[:8]}",
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        bus = app.state.bus
        first = evaluation(EvaluationStatus.BREACH, 0)
        copies = [
            first if i % 2 else first.model_copy(update={"id": uuid.uuid4().hex})
            for i in range(1000)
        ]
        await bus.producer.send_many(
            bus.topics.evaluations, [(b"credit", encode(e)) for e in copies]
        )
        await bus.producer.send(
            bus.topics.evaluations, encode(evaluation(EvaluationStatus.BREACH, 1)), key=b"credit"
        )
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://alerts") as client:
            [nc] = await until(client, lambda found: found and found[0]["occurrences"] == 2)
            assert nc["status"] == "raised" and nc["open"]
            for window in (0, 1):
                await bus.producer.send(
                    bus.topics.evaluations,
                    encode(evaluation(EvaluationStatus.PASS, window, revision=1)),
                    key=b"credit",
                )
            [nc] = await until(client, lambda found: found[0]["status"] == "withdrawn")
            assert (nc["open"], nc["occurrences"]) == (False, 0)
            kinds = [e["kind"] for e in (await client.get("/v1/log")).json()]
            assert kinds == ["raised", "occurrence", "occurrence_withdrawn", "withdrawn"]
            assert (await client.get("/v1/log/verify")).json()["ok"] is True
