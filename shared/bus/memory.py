"""The in-process bus of the embedded default: Kafka's contract without a broker.

Records are read from per-partition lists in memory. Given a ``path`` (the embedded platform
always gives one), the broker is durable: topics, records and committed offsets are in a
SQLite file (``shared.bus.sqlite_log``), a send returns only after its record is committed
there, and a restart on the same file (clean or after ``kill -9``) finds every acknowledged
record at its offset and every committed offset, with compacted topics keeping the newest
record per key. One writer task appends everything waiting in one transaction (group commit)
in a worker thread, so the event loop never blocks on the disk. Without a path (unit tests,
a service on its own) records live for the life of the process.

Consumer groups assign partitions round-robin over their members and rebalance when a member
joins or leaves; positions of newly assigned partitions start at the group's committed
offsets, so anything polled but not committed is delivered again (at-least-once), exactly as
with Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shared.bus.base import (
    BusUnavailable,
    PartitionsCallback,
    Record,
    RecordMetadata,
    TopicPartition,
    Topics,
    TopicSpec,
)
from shared.bus.sqlite_log import SqliteLog

__all__ = ["MemoryBroker", "MemoryBus"]


def partition_for(key: bytes | None, partitions: int, counter: int) -> int:
    if key is None:
        return counter % partitions
    return zlib.crc32(key) % partitions


Item = tuple[bytes | None, bytes | None, Sequence[tuple[str, bytes]]]


class _PartitionLog:
    """One partition's records in offset order; offsets may have gaps (compaction)."""

    __slots__ = ("end", "offsets", "records")

    def __init__(self, records: Iterable[Record] = (), end: int = 0) -> None:
        self.records: list[Record] = list(records)
        self.offsets: list[int] = [r.offset for r in self.records]
        self.end = max(end, self.offsets[-1] + 1 if self.offsets else 0)
        """The next offset to write."""

    def append(self, record: Record) -> None:
        self.records.append(record)
        self.offsets.append(record.offset)
        self.end = record.offset + 1

    def read(self, position: int, limit: int) -> tuple[list[Record], int]:
        """Up to ``limit`` records from ``position`` on, and the position after them."""
        if limit <= 0:
            return [], position
        i = bisect_left(self.offsets, position)
        chunk = self.records[i : i + limit]
        if i + len(chunk) >= len(self.records):
            return chunk, max(position, self.end)
        return chunk, chunk[-1].offset + 1


@dataclass
class _Group:
    members: list[MemoryConsumer] = field(default_factory=list)
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    generation: int = 0


@dataclass(slots=True)
class _Write:
    """Records to append, or offsets to commit (or neither: a barrier), awaiting the log."""

    future: asyncio.Future[list[RecordMetadata]]
    topic: str = ""
    items: Sequence[Item] = ()
    group_id: str | None = None
    offsets: Mapping[TopicPartition, int] = field(default_factory=dict)


class MemoryBroker:
    """Holds the topics and groups; one per embedded process, shared by every service.

    With a ``path`` it is durable (module docstring); ``open()`` loads the file and starts
    the writer, ``close()`` waits for what is queued and closes the file.
    """

    def __init__(self, default_partitions: int = 3, *, path: Path | None = None) -> None:
        self.default_partitions = default_partitions
        self._logs: dict[str, list[_PartitionLog]] = {}
        self._groups: dict[str, _Group] = {}
        self._arrived = asyncio.Condition()
        self._unkeyed = 0
        self._store = None if path is None else SqliteLog(path)
        self._unsaved: list[TopicSpec] = []
        self._queue: list[_Write] = []
        self._queued = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._open = self._store is None
        self._opening = asyncio.Lock()

    @property
    def durable(self) -> bool:
        return self._store is not None

    @property
    def is_open(self) -> bool:
        """Records can be appended (and, when durable, its writer is running)."""
        return self._open and (self._writer is None or not self._writer.done())

    async def open(self) -> None:
        """Load the durable log (once) and start its writer; nothing to do without one."""
        async with self._opening:
            if self._open or self._store is None:
                return
            stored = await asyncio.to_thread(self._store.open)
            for spec in stored.topics:
                self._logs[spec.name] = [
                    _PartitionLog(
                        stored.records.get(TopicPartition(spec.name, p), ()),
                        stored.ends.get(TopicPartition(spec.name, p), 0),
                    )
                    for p in range(spec.partitions)
                ]
            for group_id, committed in stored.committed.items():
                self.group(group_id).committed.update(committed)
            self._writer = asyncio.create_task(self._write_loop(), name="memory-bus:writer")
            self._open = True

    async def close(self) -> None:
        """Write what is queued, stop the writer and close the file."""
        if self._store is None or not self._open:
            return
        with contextlib.suppress(BusUnavailable):
            await self.flush()
        self._open = False
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        for pending in self._queue:
            if not pending.future.done():
                pending.future.set_exception(BusUnavailable("the in-process bus is closed"))
        self._queue = []
        await asyncio.to_thread(self._store.close)

    def create_topic(self, spec: TopicSpec) -> None:
        if spec.name not in self._logs:
            self._logs[spec.name] = [_PartitionLog() for _ in range(spec.partitions)]
            if self._store is not None:
                self._unsaved.append(spec)

    def partitions(self, topic: str) -> list[TopicPartition]:
        if topic not in self._logs:
            self.create_topic(TopicSpec(topic, self.default_partitions))
        return [TopicPartition(topic, p) for p in range(len(self._logs[topic]))]

    def _log(self, tp: TopicPartition) -> _PartitionLog:
        self.partitions(tp.topic)
        return self._logs[tp.topic][tp.partition]

    def log(self, tp: TopicPartition) -> list[Record]:
        """The partition's records (read-only)."""
        return self._log(tp).records

    def end(self, tp: TopicPartition) -> int:
        return self._log(tp).end

    def read(self, tp: TopicPartition, position: int, limit: int) -> tuple[list[Record], int]:
        return self._log(tp).read(position, limit)

    def _record(
        self,
        topic: str,
        item: Item,
        ends: dict[TopicPartition, int],
        now_ms: int,
    ) -> Record:
        """A record for ``item`` at the next offset of its partition (``ends`` counts the
        records of the batch being written, not yet in the partition's log)."""
        key, value, headers = item
        count = len(self.partitions(topic))
        self._unkeyed += 1
        tp = TopicPartition(topic, partition_for(key, count, self._unkeyed))
        offset = ends.get(tp)
        if offset is None:
            offset = self._logs[topic][tp.partition].end
        ends[tp] = offset + 1
        return Record(topic, tp.partition, offset, key, value, now_ms, tuple(headers))

    async def append_many(self, topic: str, items: Sequence[Item]) -> list[RecordMetadata]:
        """Append records; return once they are readable (and, when durable, committed)."""
        if self._store is None:
            ends: dict[TopicPartition, int] = {}
            now_ms = int(time.time() * 1000)
            records = [self._record(topic, item, ends, now_ms) for item in items]
            for record in records:
                self._logs[topic][record.partition].append(record)
            async with self._arrived:
                self._arrived.notify_all()
            return [RecordMetadata(r.topic, r.partition, r.offset) for r in records]
        return await self._enqueue(_Write(self._future(), topic=topic, items=items))

    async def append(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]],
    ) -> RecordMetadata:
        (metadata,) = await self.append_many(topic, [(key, value, headers)])
        return metadata

    async def save_commit(self, group_id: str, offsets: Mapping[TopicPartition, int]) -> None:
        """Make committed offsets durable (nothing to do without a log)."""
        if self._store is not None and offsets:
            await self._enqueue(_Write(self._future(), group_id=group_id, offsets=offsets))

    async def flush(self) -> None:
        """Wait until everything queued (topics included) is in the log."""
        if self._store is not None:
            await self._enqueue(_Write(self._future()))

    def _future(self) -> asyncio.Future[list[RecordMetadata]]:
        return asyncio.get_running_loop().create_future()

    async def _enqueue(self, write: _Write) -> list[RecordMetadata]:
        if not self._open:
            raise BusUnavailable("the in-process bus is not open")
        self._queue.append(write)
        self._queued.set()
        return await write.future

    async def _write_loop(self) -> None:
        """The one writer: everything queued goes into the log in one transaction, then
        becomes readable, then its senders are answered (group commit)."""
        assert self._store is not None
        while True:
            await self._queued.wait()
            self._queued.clear()
            writes, self._queue = self._queue, []
            ends: dict[TopicPartition, int] = {}
            now_ms = int(time.time() * 1000)
            batches = [
                [self._record(w.topic, item, ends, now_ms) for item in w.items] for w in writes
            ]
            records = [r for batch in batches for r in batch]
            commits = [
                (w.group_id, tp, offset)
                for w in writes
                if w.group_id is not None
                for tp, offset in w.offsets.items()
            ]
            topics, self._unsaved = self._unsaved, []
            try:
                await asyncio.to_thread(
                    self._store.write, topics=topics, records=records, commits=commits
                )
            except Exception as exc:
                self._unsaved = topics + self._unsaved
                for write in writes:
                    if not write.future.done():
                        write.future.set_exception(
                            BusUnavailable(f"the in-process bus could not write its log: {exc}")
                        )
                continue
            for record in records:
                self._logs[record.topic][record.partition].append(record)
            for write, batch in zip(writes, batches, strict=True):
                if not write.future.done():  # a sender that gave up is not answered
                    write.future.set_result(
                        [RecordMetadata(r.topic, r.partition, r.offset) for r in batch]
                    )
            if records:
                async with self._arrived:
                    self._arrived.notify_all()

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
        return await self._broker.append_many(topic, [(key, value, ()) for key, value in items])


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
            chunk, self._positions[tp] = self._broker.read(
                tp, self._positions[tp], max_records - len(out)
            )
            out.extend(chunk)
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
        accepted = {tp: offset for tp, offset in proposed.items() if tp in owned}
        group.committed.update(accepted)
        await self._broker.save_commit(self.group_id, accepted)

    async def rewind(self) -> None:
        for tp in self._assigned:
            self._positions[tp] = self._committed(tp)

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    async def lag(self) -> int:
        return sum((await self.lags()).values())

    async def lags(self) -> dict[TopicPartition, int]:
        return {tp: max(0, self._broker.end(tp) - self._positions[tp]) for tp in self._assigned}


class MemoryBus:
    """Bus over a ``MemoryBroker``; several services may share one broker in one process.

    ``path``: the file of a durable broker this bus owns (opened by ``start``, closed by
    ``stop``); a bus given a ``broker`` leaves its lifecycle to whoever made it.
    """

    def __init__(
        self,
        broker: MemoryBroker | None = None,
        topics: Topics | None = None,
        *,
        path: Path | None = None,
    ) -> None:
        if broker is not None and path is not None:
            raise ValueError("give a MemoryBus either a broker or the path of its log, not both")
        self._owns_broker = broker is None
        self.topics = topics or Topics()
        self.broker = broker or MemoryBroker(self.topics.partitions, path=path)
        self._producer = MemoryProducer(self.broker)

    async def start(self) -> None:
        if self._owns_broker:
            await self.broker.open()
        await self.ensure_topics(self.topics.specs())

    async def stop(self) -> None:
        if self._owns_broker:
            await self.broker.close()

    async def ready(self) -> bool:
        return self.broker.is_open

    async def ensure_topics(self, specs: Sequence[TopicSpec]) -> None:
        for spec in specs:
            self.broker.create_topic(spec)
        await self.broker.flush()

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
