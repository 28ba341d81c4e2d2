"""The in-process bus of the embedded default: Kafka's contract without a broker.

Records live in per-partition lists for the life of the process. Consumer groups assign
partitions round-robin over their members and rebalance when a member joins or leaves;
positions of newly assigned partitions start at the group's committed offsets, so anything
polled but not committed is delivered again (at-least-once), exactly as with Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from shared.bus.base import (
    PartitionsCallback,
    Record,
    RecordMetadata,
    TopicPartition,
    Topics,
    TopicSpec,
)

__all__ = ["MemoryBroker", "MemoryBus"]


def partition_for(key: bytes | None, partitions: int, counter: int) -> int:
    if key is None:
        return counter % partitions
    return zlib.crc32(key) % partitions


@dataclass
class _Group:
    members: list[MemoryConsumer] = field(default_factory=list)
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    generation: int = 0


class MemoryBroker:
    """Holds the topics and groups; one per embedded process, shared by every service."""

    def __init__(self, default_partitions: int = 3) -> None:
        self.default_partitions = default_partitions
        self._logs: dict[str, list[list[Record]]] = {}
        self._groups: dict[str, _Group] = {}
        self._arrived = asyncio.Condition()
        self._unkeyed = 0

    def create_topic(self, spec: TopicSpec) -> None:
        if spec.name not in self._logs:
            self._logs[spec.name] = [[] for _ in range(spec.partitions)]

    def partitions(self, topic: str) -> list[TopicPartition]:
        if topic not in self._logs:
            self.create_topic(TopicSpec(topic, self.default_partitions))
        return [TopicPartition(topic, p) for p in range(len(self._logs[topic]))]

    def log(self, tp: TopicPartition) -> list[Record]:
        self.partitions(tp.topic)
        return self._logs[tp.topic][tp.partition]

    async def append(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]],
    ) -> RecordMetadata:
        count = len(self.partitions(topic))
        self._unkeyed += 1
        partition = partition_for(key, count, self._unkeyed)
        log = self._logs[topic][partition]
        record = Record(
            topic=topic,
            partition=partition,
            offset=len(log),
            key=key,
            value=value,
            timestamp_ms=int(time.time() * 1000),
            headers=tuple(headers),
        )
        log.append(record)
        async with self._arrived:
            self._arrived.notify_all()
        return RecordMetadata(topic, partition, record.offset)

    async def wait_for_records(self, timeout_s: float) -> None:
        async with self._arrived:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout_s)

    async def wake(self) -> None:
        async with self._arrived:
            self._arrived.notify_all()

    def group(self, group_id: str) -> _Group:
        return self._groups.setdefault(group_id, _Group())

    def held_by_others(self, group_id: str, member: MemoryConsumer) -> set[TopicPartition]:
        """Partitions other members of the group still hold (not yet revoked)."""
        return {
            tp
            for other in self.group(group_id).members
            if other is not member
            for tp in other.assignment()
        }

    def join(self, group_id: str, member: MemoryConsumer) -> None:
        group = self.group(group_id)
        group.members.append(member)
        self._rebalance(group)

    def leave(self, group_id: str, member: MemoryConsumer) -> None:
        group = self.group(group_id)
        if member in group.members:
            group.members.remove(member)
            self._rebalance(group)

    def _rebalance(self, group: _Group) -> None:
        group.generation += 1
        members = group.members
        if not members:
            return
        topics = sorted({t for m in members for t in m.topics})
        for member in members:
            member.target = set()
        for topic in topics:
            subscribers = [m for m in members if topic in m.topics]
            for tp in self.partitions(topic):
                subscribers[tp.partition % len(subscribers)].target.add(tp)


class MemoryProducer:
    def __init__(self, broker: MemoryBroker) -> None:
        self._broker = broker

    async def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> RecordMetadata:
        return await self._broker.append(topic, key, value, headers)

    async def send_many(
        self, topic: str, items: Sequence[tuple[bytes | None, bytes | None]]
    ) -> list[RecordMetadata]:
        return [await self._broker.append(topic, key, value, ()) for key, value in items]


class MemoryConsumer:
    def __init__(
        self,
        broker: MemoryBroker,
        topics: Sequence[str],
        group_id: str | None,
        on_assign: PartitionsCallback | None,
        on_revoke: PartitionsCallback | None,
    ) -> None:
        self._broker = broker
        self.topics = tuple(topics)
        self.group_id = group_id
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self.target: set[TopicPartition] = set()
        self._assigned: set[TopicPartition] = set()
        self._positions: dict[TopicPartition, int] = {}
        self._started = False

    async def start(self) -> None:
        if self.group_id is None:
            self.target = {tp for t in self.topics for tp in self._broker.partitions(t)}
        else:
            self._broker.join(self.group_id, self)
        self._started = True
        await self._sync_assignment()
        await self._broker.wake()  # the other members see the rebalance on their next poll

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        if self.group_id is not None:
            if self._on_revoke is not None and self._assigned:
                await self._on_revoke(set(self._assigned))
            self._broker.leave(self.group_id, self)
        self._assigned = set()
        await self._broker.wake()

    def _owned(self) -> set[TopicPartition]:
        return set(self._assigned) if self._started else set()

    def _committed(self, tp: TopicPartition) -> int:
        if self.group_id is None:
            return 0
        return self._broker.group(self.group_id).committed.get(tp, 0)

    async def _sync_assignment(self) -> None:
        if self.group_id is None:
            new = self.target - self._assigned
            self._assigned |= new
            for tp in new:
                self._positions[tp] = 0
            return
        revoked = self._assigned - self.target
        if revoked:
            if self._on_revoke is not None:
                await self._on_revoke(revoked)
            self._assigned -= revoked
            for tp in revoked:
                self._positions.pop(tp, None)
            await self._broker.wake()
        # as in a Kafka rebalance, a partition moves only once its previous owner revoked it
        # (after committing the batch in hand), so the new owner starts at that commit
        assigned = self.target - self._assigned
        if assigned:
            assigned -= self._broker.held_by_others(self.group_id, self)
        self._assigned |= assigned
        for tp in assigned:
            self._positions[tp] = self._committed(tp)
        if assigned and self._on_assign is not None:
            await self._on_assign(assigned)

    def _take(self, max_records: int) -> list[Record]:
        out: list[Record] = []
        for tp in sorted(self._assigned):
            log = self._broker.log(tp)
            pos = self._positions[tp]
            chunk = log[pos : pos + max_records - len(out)]
            if chunk:
                out.extend(chunk)
                self._positions[tp] = pos + len(chunk)
            if len(out) >= max_records:
                break
        return out

    async def poll(self, *, timeout_s: float = 1.0, max_records: int = 500) -> list[Record]:
        deadline = time.monotonic() + timeout_s
        while True:
            await self._sync_assignment()
            records = self._take(max_records)
            remaining = deadline - time.monotonic()
            if records or remaining <= 0 or not self._started:
                return records
            await self._broker.wait_for_records(remaining)

    async def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        if self.group_id is None:
            return
        group = self._broker.group(self.group_id)
        proposed = dict(offsets) if offsets is not None else self._positions
        # a member commits only partitions it holds: until it revokes them no other member
        # reads them, so its commit is the handover point (as in Kafka's revoke callback)
        owned = self._owned()
        group.committed.update({tp: offset for tp, offset in proposed.items() if tp in owned})

    async def rewind(self) -> None:
        for tp in self._assigned:
            self._positions[tp] = self._committed(tp)

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    async def lag(self) -> int:
        return sum(len(self._broker.log(tp)) - self._positions[tp] for tp in self._assigned)


class MemoryBus:
    """Bus over a ``MemoryBroker``; several services may share one broker in one process."""

    def __init__(self, broker: MemoryBroker | None = None, topics: Topics | None = None) -> None:
        self.broker = broker or MemoryBroker()
        self.topics = topics or Topics()
        self._producer = MemoryProducer(self.broker)

    async def start(self) -> None:
        await self.ensure_topics(self.topics.specs())

    async def stop(self) -> None:
        return None

    async def ready(self) -> bool:
        return True

    async def ensure_topics(self, specs: Sequence[TopicSpec]) -> None:
        for spec in specs:
            self.broker.create_topic(spec)

    @property
    def producer(self) -> MemoryProducer:
        return self._producer

    def consumer(
        self,
        topics: Sequence[str],
        *,
        group_id: str | None,
        on_assign: PartitionsCallback | None = None,
        on_revoke: PartitionsCallback | None = None,
    ) -> MemoryConsumer:
        return MemoryConsumer(self.broker, topics, group_id, on_assign, on_revoke)
