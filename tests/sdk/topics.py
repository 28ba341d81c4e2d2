"""Reading back the event ids the real ingest wrote to a Kafka topic (framed or not)."""

from __future__ import annotations

import asyncio

import orjson

from shared.bus import KafkaBus
from tests.factories import event_values

__all__ = ["topic_event_ids"]


def topic_event_ids(bootstrap: str, topic: str, *, idle_s: float = 1.0) -> list[str]:
    """Every event id on ``topic`` from the start, in order; reading ends after ``idle_s``
    without a record."""

    async def read() -> list[str]:
        consumer = KafkaBus(bootstrap).consumer([topic], group_id=None)
        await consumer.start()
        ids: list[str] = []
        try:
            while batch := await consumer.poll(timeout_s=idle_s, max_records=20_000):
                ids += [orjson.loads(v)["event_id"] for v in event_values(batch)]
        finally:
            await consumer.stop()
        return ids

    return asyncio.run(read())
