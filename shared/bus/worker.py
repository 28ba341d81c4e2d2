"""One consumer loop, owned and supervised: the single place that decides commit order.

For every polled batch: (1) decode each record, dead-lettering the ones that do not decode
(the DLQ send is acknowledged before anything else happens), (2) hand the decoded records to
``handle``, which returns only when their effects are durable, (3) commit the offsets. If
any step fails (``handle`` raises, Kafka is away, the group rebalanced before the commit), the
consumer rewinds to its committed offsets (or restarts, which starts there too) and the batch is
redelivered after a backoff, so a transient failure (database down) loses nothing and a crash
between (2) and (3) replays the batch (handlers deduplicate by event_id). A record already
dead-lettered is not dead-lettered again when its batch is redelivered by the same worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from shared.bus.base import (
    Bus,
    BusUnavailable,
    Consumer,
    PartitionsCallback,
    Record,
    TopicPartition,
)

__all__ = ["DLQ_HEADERS", "Decoded", "StreamWorker", "dead_letter", "start_consumer"]

log = logging.getLogger(__name__)

T = TypeVar("T")

STOP_GRACE_S = 10.0
"""How long ``stop`` lets a batch in hand finish and commit before cancelling it."""

DLQ_HEADERS = ("wk-error", "wk-source-topic", "wk-source-partition", "wk-source-offset")


@dataclass(frozen=True, slots=True)
class Decoded(Generic[T]):
    record: Record
    value: T


async def start_consumer(
    make: Callable[[], Consumer], name: str, backoff_s: float = 0.2
) -> Consumer:
    """Start a consumer built by ``make``, building a new one after each failure (with
    backoff, up to 5 s) until the bus answers."""
    backoff = backoff_s
    while True:
        consumer = make()
        try:
            await consumer.start()
            return consumer
        except BusUnavailable as exc:
            log.warning("%s: consumer cannot start (%s); retrying", name, exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


class StreamWorker(Generic[T]):
    def __init__(
        self,
        *,
        bus: Bus,
        name: str,
        topics: Sequence[str],
        group_id: str | None,
        decode: Callable[[Record], T],
        handle: Callable[[Sequence[Decoded[T]]], Awaitable[None]],
        on_assign: PartitionsCallback | None = None,
        on_revoke: PartitionsCallback | None = None,
        on_dead_letter: Callable[[Record, str], None] | None = None,
        max_records: int = 1000,
        poll_timeout_s: float = 0.5,
        retry_backoff_s: float = 0.5,
    ) -> None:
        self._bus = bus
        self.name = name
        self._topics = list(topics)
        self._group_id = group_id
        self._decode = decode
        self._handle = handle
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._on_dead_letter = on_dead_letter
        self._max_records = max_records
        self._poll_timeout_s = poll_timeout_s
        self._backoff_s = retry_backoff_s
        self._task: asyncio.Task[None] | None = None
        self._consumer: Consumer | None = None
        self._stopping = False
        self._in_batch = False
        self._batch_lock = asyncio.Lock()
        self._dead_lettered: set[tuple[str, int, int]] = set()
        self.caught_up = asyncio.Event()
        """Set once the consumer holds partitions and has reached their end (tables are loaded)."""
        self.running = False

    @property
    def consumer(self) -> Consumer | None:
        """The running consumer (None while connecting or stopped), for its lag."""
        return self._consumer

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=f"worker:{self.name}")

    async def stop(self) -> None:
        """Stop polling; a batch being handled finishes and commits first (within a grace
        period), so a clean shutdown does not replay it."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        if not self._in_batch:
            task.cancel()
        await asyncio.wait({task}, timeout=STOP_GRACE_S)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _connect(self) -> Consumer:
        return await start_consumer(
            lambda: self._bus.consumer(
                self._topics,
                group_id=self._group_id,
                on_assign=self._on_assign,
                on_revoke=self._revoked,
            ),
            self.name,
            self._backoff_s,
        )

    async def _run(self) -> None:
        consumer = await self._connect()
        self._consumer = consumer
        self.running = True
        try:
            while not self._stopping:
                try:
                    records = await consumer.poll(
                        timeout_s=self._poll_timeout_s, max_records=self._max_records
                    )
                    if not records:
                        await self._check_caught_up(consumer)
                        continue
                    self._in_batch = True
                    try:
                        async with self._batch_lock:
                            await self._process(records)
                            await consumer.commit()
                    finally:
                        self._in_batch = False
                    self._dead_lettered.clear()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # nothing after the last commit counts as done: go back to it and retry
                    log.exception("%s: batch failed; redelivering from last commit", self.name)
                    await asyncio.sleep(self._backoff_s)
                    consumer = await self._rewind(consumer)
        finally:
            self.running = False
            self._consumer = None
            await consumer.stop()

    async def _revoked(self, partitions: set[TopicPartition]) -> None:
        """Commit on revoke: partitions leave only after the batch in hand was handled and
        committed (or failed and will be redelivered to their next owner)."""
        async with self._batch_lock:
            if self._on_revoke is not None:
                await self._on_revoke(partitions)

    async def _check_caught_up(self, consumer: Consumer) -> None:
        # a group member holds no partitions until the group assigned them: not caught up yet
        if not self.caught_up.is_set() and consumer.assignment() and await consumer.lag() == 0:
            self.caught_up.set()

    async def _rewind(self, consumer: Consumer) -> Consumer:
        """Positions back at the committed offsets; if that fails, a fresh consumer (which
        starts from them) rather than polling on past records that were never handled."""
        try:
            await consumer.rewind()
            return consumer
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("%s: cannot rewind (%s); restarting the consumer", self.name, exc)
        self._consumer = None
        with contextlib.suppress(Exception):
            await consumer.stop()
        consumer = await self._connect()
        self._consumer = consumer
        return consumer

    async def _process(self, records: Sequence[Record]) -> None:
        good: list[Decoded[T]] = []
        for record in records:
            try:
                good.append(Decoded(record, self._decode(record)))
            except Exception as exc:  # any decoding failure is the message's fault
                await self._dead_letter(record, f"{type(exc).__name__}: {exc}")
        if good:
            await self._handle(good)

    async def _dead_letter(self, record: Record, error: str) -> None:
        where = (record.topic, record.partition, record.offset)
        if where in self._dead_lettered:  # a redelivered batch: it is on the DLQ already
            return
        await dead_letter(self._bus, record, error, consumer=self.name)
        self._dead_lettered.add(where)
        if self._on_dead_letter is not None:
            self._on_dead_letter(record, error)


async def dead_letter(bus: Bus, record: Record, error: str, *, consumer: str) -> None:
    """Put a record that cannot be handled on the DLQ topic: its original key and bytes, with
    the reason and where it came from in headers; returns once the bus acknowledged it."""
    log.warning(
        "%s: %s[%d]@%d to DLQ: %s",
        consumer,
        record.topic,
        record.partition,
        record.offset,
        error[:500],
    )
    headers = [
        ("wk-error", error[:4000].encode()),
        ("wk-source-topic", record.topic.encode()),
        ("wk-source-partition", str(record.partition).encode()),
        ("wk-source-offset", str(record.offset).encode()),
    ]
    await bus.producer.send(bus.topics.dlq, record.value, key=record.key, headers=headers)
