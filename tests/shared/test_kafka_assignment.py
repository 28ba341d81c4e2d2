"""A Kafka consumer group with more members than partitions: the member that owns none is
still told that its join completed (on_assign with an empty set), so the evaluator's readiness
check `partitions` does not keep such an instance out of service forever."""

from __future__ import annotations

import asyncio
import time
import uuid

from shared.bus import KafkaBus, TopicPartition, Topics
from shared.bus.base import Consumer


class Member:
    def __init__(self) -> None:
        self.joined = False

    async def on_assign(self, _tps: set[TopicPartition]) -> None:
        self.joined = True

    async def on_revoke(self, _tps: set[TopicPartition]) -> None:
        self.joined = False


async def test_a_member_without_partitions_completes_its_join(kafka_bootstrap: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    bus = KafkaBus(kafka_bootstrap, Topics(prefix=prefix, partitions=3))
    await bus.start()
    topics = [bus.topics.predictions, bus.topics.outcomes]
    members = [Member() for _ in range(4)]
    consumers: list[Consumer] = [
        bus.consumer(topics, group_id=f"{prefix}g", on_assign=m.on_assign, on_revoke=m.on_revoke)
        for m in members
    ]
    try:
        for consumer in consumers:
            await consumer.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            await asyncio.gather(*(c.poll(timeout_s=0.2) for c in consumers))
            owned = sum(len(c.assignment()) for c in consumers)
            if owned == 6 and all(m.joined for m in members):
                break
        sizes = sorted(len(c.assignment()) for c in consumers)
        assert sizes == [0, 2, 2, 2]
        assert [m.joined for m in members] == [True] * 4
    finally:
        for consumer in consumers:
            await consumer.stop()
        await bus.stop()
