"""The Apache Kafka bus (aiokafka).

The producer is idempotent with acks=all, so an acknowledged record survives a broker
restart and a retried send is not written twice. Consumers never auto-commit: the owner of a
consumer commits after the effects of what it polled are durable, and a rebalance listener
lets it commit (or checkpoint) before partitions move to another instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka import TopicPartition as KafkaTP
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import (
    InvalidProducerEpoch,
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    TopicAlreadyExistsError,
    UnknownProducerId,
    for_code,
)
from aiokafka.partitioner import DefaultPartitioner

from shared.bus.base import (
    BusUnavailable,
    PartitionsCallback,
    Record,
    RecordMetadata,
    TopicPartition,
    Topics,
    TopicSpec,
)

__all__ = ["DeliveryIncomplete", "KafkaBus", "Outcome"]

log = logging.getLogger(__name__)

TRANSIENT_ERRORS = (
    "NotLeaderForPartitionError",
    "LeaderNotAvailableError",
    "GroupCoordinatorNotAvailableError",
    "CoordinatorNotAvailableError",
    "NotCoordinatorForGroupError",
    "CoordinatorLoadInProgressError",
    "RebalanceInProgressError",
)
"""Errors aiokafka retries by itself while a broker elects leaders or loads a group
coordinator (a new topic, a broker or service restart)."""

AIOKAFKA_LOGGERS = (
    "aiokafka.client",
    "aiokafka.cluster",
    "aiokafka.conn",
    "aiokafka.consumer.fetcher",
    "aiokafka.consumer.group_coordinator",
    "aiokafka.producer.sender",
)


class TransientErrorsAsWarnings(logging.Filter):
    """aiokafka logs those retried errors at ERROR, which alarms whoever reads a fresh start's
    log: they become WARNING (a persistent condition shows in readiness and metrics)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR:
            message = record.getMessage()
            if any(name in message for name in TRANSIENT_ERRORS):
                record.levelno = logging.WARNING
                record.levelname = logging.getLevelName(logging.WARNING)
        return True


def quiet_transient_errors() -> None:
    """Install TransientErrorsAsWarnings on aiokafka's loggers (once)."""
    for name in AIOKAFKA_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, TransientErrorsAsWarnings) for f in logger.filters):
            logger.addFilter(TransientErrorsAsWarnings())


def _tp(tp: KafkaTP) -> TopicPartition:
    return TopicPartition(tp.topic, tp.partition)


def _ktp(tp: TopicPartition) -> KafkaTP:
    return KafkaTP(tp.topic, tp.partition)


METADATA_TIMEOUT_S = 10.0
"""How long to wait for new topics to get partition leaders before giving up."""


async def _await_partitions(
    admin: AIOKafkaAdminClient, names: Iterable[str], timeout_s: float = METADATA_TIMEOUT_S
) -> dict[str, list[int]]:
    """Partition ids of each topic, once every partition has a leader (topics just created
    are visible before their leaders are elected; reading or writing them then fails).

    Asks for all topics' metadata: naming missing topics would let the broker auto-create
    them with its defaults (a registry topic without compaction).
    """
    wanted = sorted(set(names))
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        described = {t["topic"]: t for t in await admin.describe_topics()}
        found: dict[str, list[int]] = {}
        for name in wanted:
            topic = described.get(name)
            parts = topic["partitions"] if topic is not None and topic["error_code"] == 0 else []
            if parts and all(p["error_code"] == 0 and p["leader"] >= 0 for p in parts):
                found[name] = sorted(int(p["partition"]) for p in parts)
        if len(found) == len(wanted):
            return found
        if asyncio.get_running_loop().time() >= deadline:
            missing = sorted(set(wanted) - set(found))
            raise BusUnavailable(f"topics {missing} have no partition leaders after {timeout_s}s")
        await asyncio.sleep(0.1)


BATCH_MIN_RECORDS = 16
"""A partition's share of a ``send_many`` this large is written as whole record batches.

Per-record ``send`` costs ~9 µs of Python each; appending to a batch builder ~2 µs. Smaller
shares go through ``send`` so records of concurrent callers coalesce into one batch."""

Outcome = RecordMetadata | BaseException
"""One record's fate: acknowledged, or a definite failure (it was not written)."""


class DeliveryIncomplete(BusUnavailable):
    """Not every record was acknowledged (in time); some may be written, some not (yet).

    An idempotent producer keeps retrying what it already handed to the broker (cancelling
    does not stop it), so a caller that must know the truth (ingest's duplicate store)
    awaits ``delivery``: one :data:`Outcome` per record, in order, once Kafka settled each
    (already done when the failure was definite).
    """

    def __init__(self, message: str, delivery: asyncio.Future[list[Outcome]]) -> None:
        super().__init__(message)
        self.delivery = delivery


_BROKEN_PRODUCER = (
    OutOfOrderSequenceNumber,
    InvalidProducerEpoch,
    ProducerFenced,
    UnknownProducerId,
)
"""Errors after which an idempotent producer refuses every later record of its partitions
(e.g. a sequence gap after a broker restart): only a new producer (new producer id) helps."""


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class KafkaProducer:
    """Wraps AIOKafkaProducer; connects in the background so a service starts without Kafka."""

    def __init__(self, bootstrap: str, send_timeout_s: float) -> None:
        self._bootstrap = bootstrap
        self._timeout = send_timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._connect_task: asyncio.Task[None] | None = None
        self._closing = False
        self._partitioner = DefaultPartitioner()
        self._partition_of: dict[tuple[bytes, int], int] = {}  # murmur2 in Python is slow
        # aiokafka queues one whole batch per partition; concurrent send_batch callers would
        # spin on it (and its deadline arithmetic makes them time out early), so they queue here
        self._batch_locks: dict[tuple[str, int], asyncio.Lock] = {}

    def _build(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            max_batch_size=256 * 1024,
            request_timeout_ms=max(1000, int(self._timeout * 1000)),
            retry_backoff_ms=100,
        )

    async def _connect_forever(self) -> None:
        backoff = 0.2
        while not self._closing:
            producer = self._build()
            try:
                await producer.start()
            except (KafkaError, OSError) as exc:
                log.warning("kafka producer cannot connect to %s: %s", self._bootstrap, exc)
                with contextlib.suppress(Exception):
                    await producer.stop()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            except BaseException:  # cancelled by stop(): never leave a half-started client
                with contextlib.suppress(Exception):
                    await asyncio.shield(producer.stop())
                raise
            self._producer = producer
            return

    def _replace(self, broken: AIOKafkaProducer) -> None:
        """Retire a producer Kafka no longer takes records from and connect a new one."""
        current = self._producer
        if current is None or current is not broken or self._closing:
            return
        log.warning("kafka producer refused by the broker (sequence/epoch); starting a new one")
        self._producer = None

        async def replace() -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(current.stop(), self._timeout)
            await self._connect_forever()

        self._connect_task = asyncio.create_task(replace())

    async def start(self) -> None:
        self._closing = False
        self._connect_task = asyncio.create_task(self._connect_forever())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._connect_task), self._timeout)

    async def stop(self) -> None:
        self._closing = True
        if self._connect_task is not None:
            self._connect_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connect_task
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    @property
    def connected(self) -> bool:
        return self._producer is not None

    def _require(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise BusUnavailable(f"not connected to Kafka at {self._bootstrap}")
        return self._producer

    async def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> RecordMetadata:
        producer = self._require()
        try:
            async with asyncio.timeout(self._timeout):
                future = await producer.send(topic, value, key=key, headers=list(headers) or None)
                md = await future
        except (KafkaError, TimeoutError) as exc:
            if isinstance(exc, _BROKEN_PRODUCER):
                self._replace(producer)
            raise BusUnavailable(
                f"Kafka did not acknowledge within {self._timeout}s: {exc!r}"
            ) from exc
        return RecordMetadata(md.topic, md.partition, md.offset)

    async def send_many(
        self, topic: str, items: Sequence[tuple[bytes | None, bytes | None]]
    ) -> list[RecordMetadata]:
        """Send records, whole batches per partition where there are many; wait for all acks.

        Raises :class:`DeliveryIncomplete` (a ``BusUnavailable``) when a record failed or was
        not acknowledged in time; its ``delivery`` follows the records Kafka may still write.
        """
        producer = self._require()
        delivery = asyncio.ensure_future(self._deliver(producer, topic, items))
        delivery.add_done_callback(_retrieve)
        try:
            async with asyncio.timeout(self._timeout):
                outcomes = await asyncio.shield(delivery)
        except TimeoutError as exc:
            raise DeliveryIncomplete(
                f"Kafka did not acknowledge within {self._timeout}s", delivery
            ) from exc
        failed = next((o for o in outcomes if isinstance(o, BaseException)), None)
        if failed is not None:
            raise DeliveryIncomplete(f"Kafka did not acknowledge: {failed!r}", delivery) from failed
        return [o for o in outcomes if isinstance(o, RecordMetadata)]

    async def _deliver(
        self,
        producer: AIOKafkaProducer,
        topic: str,
        items: Sequence[tuple[bytes | None, bytes | None]],
    ) -> list[Outcome]:
        """Hand every record to the producer, then wait (without a deadline) until each is
        acknowledged or definitely failed."""
        outcomes: list[Outcome | None] = [None] * len(items)
        pending: list[tuple[list[int], asyncio.Future[Any], bool]] = []
        try:
            partitions = sorted(await producer.partitions_for(topic))
        except KafkaError as exc:
            return [exc] * len(items)
        shares: dict[int, list[int]] = {}
        cache = self._partition_of
        if len(cache) > 100_000:
            cache.clear()
        count = len(partitions)
        for index, (key, _value) in enumerate(items):
            if key is None:
                partition = self._partitioner(key, partitions, partitions)
            else:
                partition = cache.get((key, count), -1)
                if partition < 0:
                    partition = cache[(key, count)] = self._partitioner(key, partitions, partitions)
            shares.setdefault(partition, []).append(index)
        for partition, indexes in shares.items():
            try:
                if len(indexes) >= BATCH_MIN_RECORDS:
                    lock = self._batch_locks.setdefault((topic, partition), asyncio.Lock())
                    async with lock:
                        await self._enqueue_batches(
                            producer, topic, partition, items, indexes, pending
                        )
                else:
                    for index in indexes:
                        key, value = items[index]
                        future = await producer.send(topic, value, key=key, partition=partition)
                        pending.append(([index], future, False))
            except KafkaError as exc:  # not handed over: definitely not written
                handed = {i for group, _f, _b in pending for i in group}
                for index in indexes:
                    if index not in handed:
                        outcomes[index] = exc
        for indexes, future, batch in pending:
            try:
                md = await future
            except KafkaError as exc:
                for index in indexes:
                    outcomes[index] = exc
                continue
            for position, index in enumerate(indexes):
                offset = md.offset + position if batch else md.offset
                outcomes[index] = RecordMetadata(md.topic, md.partition, offset)
        if any(isinstance(o, _BROKEN_PRODUCER) for o in outcomes):
            self._replace(producer)
        return [o if o is not None else BusUnavailable("not sent") for o in outcomes]

    @staticmethod
    async def _enqueue_batches(
        producer: AIOKafkaProducer,
        topic: str,
        partition: int,
        items: Sequence[tuple[bytes | None, bytes | None]],
        indexes: list[int],
        pending: list[tuple[list[int], asyncio.Future[Any], bool]],
    ) -> None:
        position = 0
        while position < len(indexes):
            builder = producer.create_batch()
            members: list[int] = []
            while position < len(indexes):
                key, value = items[indexes[position]]
                if builder.append(key=key, value=value, timestamp=None) is None:
                    break
                members.append(indexes[position])
                position += 1
            if not members:  # one record larger than a batch: let send() refuse or take it
                index = indexes[position]
                key, value = items[index]
                future = await producer.send(topic, value, key=key, partition=partition)
                pending.append(([index], future, False))
                position += 1
                continue
            future = await producer.send_batch(builder, topic, partition=partition)
            pending.append((members, future, True))


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, on_assign: PartitionsCallback | None, on_revoke: PartitionsCallback | None):
        self._on_assign = on_assign
        self._on_revoke = on_revoke

    async def on_partitions_revoked(self, revoked: Any) -> None:
        if self._on_revoke is not None and revoked:
            await self._on_revoke({_tp(tp) for tp in revoked})

    async def on_partitions_assigned(self, assigned: Any) -> None:
        # also when empty: a member of a group with more members than partitions owns none,
        # and the callback tells it that the join completed all the same
        if self._on_assign is not None:
            await self._on_assign({_tp(tp) for tp in assigned})


class KafkaConsumer:
    def __init__(
        self,
        bootstrap: str,
        topics: Sequence[str],
        group_id: str | None,
        on_assign: PartitionsCallback | None,
        on_revoke: PartitionsCallback | None,
    ) -> None:
        self._bootstrap = bootstrap
        self._topics = list(topics)
        self._group_id = group_id
        self._listener = _Listener(on_assign, on_revoke)
        self._consumer: AIOKafkaConsumer | None = None

    def _require(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise BusUnavailable("consumer not started")
        return self._consumer

    async def _all_partitions(self) -> list[KafkaTP]:
        admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            found = await _await_partitions(admin, self._topics)
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        return [KafkaTP(topic, p) for topic in self._topics for p in found[topic]]

    async def start(self) -> None:
        consumer: AIOKafkaConsumer | None = None
        try:
            # without a group: every partition, known before the consumer bootstraps so its
            # metadata has them all (a topic created a moment ago may lack leaders yet)
            partitions = await self._all_partitions() if self._group_id is None else []
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap,
                group_id=self._group_id,
                enable_auto_commit=False,
                # partition p of every subscribed topic goes to one member (topics keyed alike,
                # e.g. predictions and outcomes by system_id, meet in one consumer)
                partition_assignment_strategy=(RangePartitionAssignor,),
                auto_offset_reset="earliest",
                max_poll_interval_ms=300_000,
                session_timeout_ms=10_000,
                heartbeat_interval_ms=1_000,
                fetch_max_wait_ms=100,
                # framed records (shared.bus.framing) are up to 512 KiB: 1 MiB per partition
                # (the default) would hand a poll only two of them, and a consumer's fixed
                # costs per batch would dominate
                max_partition_fetch_bytes=8 * 1024 * 1024,
            )
            await consumer.start()
            if self._group_id is None:
                consumer.assign(partitions)
                await consumer.seek_to_beginning(*partitions)
            else:
                consumer.subscribe(self._topics, listener=self._listener)
        except BaseException as exc:
            if consumer is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(consumer.stop())
            if isinstance(exc, KafkaError | OSError):
                raise BusUnavailable(
                    f"cannot start consumer on {self._bootstrap}: {exc!r}"
                ) from exc
            raise
        self._consumer = consumer

    async def stop(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()

    async def poll(self, *, timeout_s: float = 1.0, max_records: int = 500) -> list[Record]:
        consumer = self._require()
        try:
            batches = await consumer.getmany(
                timeout_ms=int(timeout_s * 1000), max_records=max_records
            )
        except KafkaError as exc:
            raise BusUnavailable(f"poll failed: {exc!r}") from exc
        records: list[Record] = []
        for tp in sorted(batches, key=lambda t: (t.topic, t.partition)):
            for r in batches[tp]:
                records.append(
                    Record(
                        topic=r.topic,
                        partition=r.partition,
                        offset=r.offset,
                        key=r.key,
                        value=r.value,
                        timestamp_ms=r.timestamp,
                        headers=tuple(r.headers or ()),
                    )
                )
        return records

    async def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Commit; raises BusUnavailable if the group rebalanced meanwhile (the records since
        the last commit then go to the partitions' new owners) or Kafka is unreachable."""
        if self._group_id is None:
            return
        consumer = self._require()
        try:
            if offsets is None:
                if consumer.assignment():
                    await consumer.commit()  # what was consumed from the current assignment
            elif offsets:
                await consumer.commit({_ktp(tp): off for tp, off in offsets.items()})
        except KafkaError as exc:
            raise BusUnavailable(f"commit failed: {exc!r}") from exc

    async def rewind(self) -> None:
        consumer = self._require()
        try:
            for ktp in consumer.assignment():
                committed = None if self._group_id is None else await consumer.committed(ktp)
                if committed is None:
                    await consumer.seek_to_beginning(ktp)
                else:
                    consumer.seek(ktp, committed)
        except KafkaError as exc:
            raise BusUnavailable(f"rewind failed: {exc!r}") from exc

    def assignment(self) -> set[TopicPartition]:
        if self._consumer is None:
            return set()
        return {_tp(tp) for tp in self._consumer.assignment()}

    async def lag(self) -> int:
        return sum((await self.lags()).values())

    async def lags(self) -> dict[TopicPartition, int]:
        consumer = self._require()
        parts = list(consumer.assignment())
        if not parts:
            return {}
        try:
            ends = await consumer.end_offsets(parts)
            return {
                _tp(tp): max(0, int(ends[tp]) - int(await consumer.position(tp))) for tp in parts
            }
        except KafkaError as exc:
            raise BusUnavailable(f"lag unknown: {exc!r}") from exc


class KafkaBus:
    def __init__(
        self,
        bootstrap: str,
        topics: Topics | None = None,
        *,
        send_timeout_s: float = 5.0,
        replication_factor: int = 1,
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = topics or Topics()
        self._replication = replication_factor
        self._producer = KafkaProducer(bootstrap, send_timeout_s)
        self._topics_ready = False

    async def start(self) -> None:
        quiet_transient_errors()
        await self._producer.start()
        with contextlib.suppress(BusUnavailable):
            await self.ensure_topics(self.topics.specs())

    async def stop(self) -> None:
        await self._producer.stop()

    async def ready(self) -> bool:
        if not self._producer.connected:
            return False
        if not self._topics_ready:
            with contextlib.suppress(BusUnavailable):
                await self.ensure_topics(self.topics.specs())
        return self._topics_ready

    async def ensure_topics(self, specs: Sequence[TopicSpec]) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [
                NewTopic(
                    name=s.name,
                    num_partitions=s.partitions,
                    replication_factor=self._replication,
                    topic_configs={"cleanup.policy": "compact"} if s.compacted else {},
                )
                for s in specs
                if s.name not in existing
            ]
            if missing:
                response = await admin.create_topics(missing)
                failed = [
                    f"{error[0]}: {for_code(error[1]).__name__}"
                    for error in response.topic_errors
                    if error[1] not in (0, TopicAlreadyExistsError.errno)
                ]
                if failed:
                    raise BusUnavailable(f"cannot create topics on {self.bootstrap}: {failed}")
            await _await_partitions(admin, (s.name for s in specs))
        except (KafkaError, OSError) as exc:
            raise BusUnavailable(f"cannot create topics on {self.bootstrap}: {exc!r}") from exc
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        if set(s.name for s in specs) >= {s.name for s in self.topics.specs()}:
            self._topics_ready = True

    @property
    def producer(self) -> KafkaProducer:
        return self._producer

    def consumer(
        self,
        topics: Sequence[str],
        *,
        group_id: str | None,
        on_assign: PartitionsCallback | None = None,
        on_revoke: PartitionsCallback | None = None,
    ) -> KafkaConsumer:
        return KafkaConsumer(self.bootstrap, topics, group_id, on_assign, on_revoke)
