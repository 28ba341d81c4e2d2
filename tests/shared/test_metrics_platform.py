"""The platform series every service shares (shared/metrics.py): consumer lag per partition
(on the in-process bus and on real Kafka), records put on the DLQ by source topic, the outbox's
backlog and oldest age (SQLite and PostgreSQL), and one exposition of several registries without
duplicate series."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import col, update

from shared.bus import Bus, Consumer, Decoded, KafkaBus, MemoryBus, Record, StreamWorker, Topics
from shared.db import Database
from shared.metrics import (
    ConsumerLag,
    DeadLetters,
    add_runtime_collectors,
    merged_exposition,
    watch_outbox,
)
from shared.outbox import OutboxMessage, OutboxRelay, enqueue

SETTLE_S = 20.0


def promtool_check_metrics(text: str) -> None:
    """``promtool check metrics`` (Prometheus's own linter) accepts the exposition."""
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool not found: `make system-deps` installs Debian's prometheus package")
    result = subprocess.run(
        [tool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(params=["memory", "kafka"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    topics = Topics(prefix=f"t{uuid4().hex[:8]}.", partitions=3)
    the_bus: Bus
    if request.param == "memory":
        the_bus = MemoryBus(topics=topics)
    else:
        the_bus = KafkaBus(request.getfixturevalue("kafka_bootstrap"), topics, send_timeout_s=10)
    await the_bus.start()
    try:
        yield the_bus
    finally:
        await the_bus.stop()


def lags(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    return {
        (sample.labels["topic"], sample.labels["partition"]): sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == "watchkeeper_consumer_lag_records"
    }


async def assigned(consumer: Consumer) -> None:
    deadline = time.monotonic() + SETTLE_S
    while not consumer.assignment():
        assert time.monotonic() < deadline, "no partitions assigned"
        await consumer.poll(timeout_s=0.2)


async def test_consumer_lag_per_partition_follows_the_position(bus: Bus) -> None:
    topic = bus.topics.outcomes
    consumer = bus.consumer([topic], group_id=f"{bus.topics.prefix}g")
    await consumer.start()
    current: list[Consumer | None] = [consumer]
    registry = CollectorRegistry()
    monitor = ConsumerLag(registry, service="svc", consumers=lambda: [("g", current[0])])
    try:
        await assigned(consumer)
        await monitor.sample_once()
        assert set(lags(registry)) == {(topic, str(p)) for p in range(3)}
        assert set(lags(registry).values()) == {0}
        for _ in range(5):
            await bus.producer.send(topic, b"x", key=b"one-key")  # one key: one partition
        await bus.producer.send(topic, b"y", key=b"another-key")
        await monitor.sample_once()
        assert sorted(lags(registry).values()) in ([0, 1, 5], [0, 0, 6])
        got = 0
        deadline = time.monotonic() + SETTLE_S
        while got < 6:
            assert time.monotonic() < deadline, f"polled {got} of 6"
            got += len(await consumer.poll(timeout_s=0.5))
        await monitor.sample_once()
        assert set(lags(registry).values()) == {0}
    finally:
        await consumer.stop()
    current[0] = None  # stopped: its partitions are reported by whoever has them now
    await monitor.sample_once()
    assert lags(registry) == {}


async def test_dead_letters_are_counted_by_the_topic_they_came_from() -> None:
    bus = MemoryBus(topics=Topics(prefix=f"t{uuid4().hex[:8]}."))
    await bus.start()
    registry = CollectorRegistry()
    dead = DeadLetters(registry, service="svc", source_topics=[bus.topics.evaluations])
    name = "watchkeeper_dlq_records_total"
    labels = {"service": "svc", "source_topic": bus.topics.evaluations}
    assert registry.get_sample_value(name, labels) == 0

    def decode(record: Record) -> int:
        return int(record.value or b"")

    async def handle(batch: Sequence[Decoded[int]]) -> None:
        return None

    worker: StreamWorker[int] = StreamWorker(
        bus=bus,
        name="svc",
        topics=[bus.topics.evaluations],
        group_id="svc",
        decode=decode,
        handle=handle,
        on_dead_letter=dead.count,
    )
    await worker.start()
    try:
        for value in (b"1", b"not a number", b"2", b"{"):
            await bus.producer.send(bus.topics.evaluations, value)
        deadline = time.monotonic() + SETTLE_S
        while registry.get_sample_value(name, labels) != 2:
            assert time.monotonic() < deadline, registry.get_sample_value(name, labels)
            await asyncio.sleep(0.05)
    finally:
        await worker.stop()
        await bus.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'outbox.db'}"
    else:
        url = request.getfixturevalue("database_url")
    database = Database(url)
    database.create_tables([OutboxMessage])
    return database


async def test_outbox_backlog_and_oldest_age(db: Database) -> None:
    service = f"svc-{uuid4().hex[:8]}"  # tests sharing PostgreSQL see only their own rows
    bus = MemoryBus(topics=Topics(prefix=f"t{uuid4().hex[:8]}."))
    await bus.start()
    relay = OutboxRelay(db=db, bus=bus, service=service)
    registry = CollectorRegistry()
    watch_outbox(registry, relay, service=service)
    labels = {"service": service}

    def sample(name: str) -> float | None:
        return registry.get_sample_value(name, labels)

    try:
        assert sample("watchkeeper_outbox_pending_records") == 0
        assert sample("watchkeeper_outbox_oldest_age_seconds") == 0
        with db.session() as session:
            for i in range(3):
                enqueue(session, service=service, topic=bus.topics.dlq, key=None, value=b"%d" % i)
            session.commit()
            # the oldest was written two minutes ago (a relay that could not publish since)
            first = datetime.now(UTC) - timedelta(seconds=120)
            session.exec(
                update(OutboxMessage)
                .where(col(OutboxMessage.service) == service, col(OutboxMessage.value) == b"0")
                .values(created_at=first)
            )
            session.commit()
        assert sample("watchkeeper_outbox_pending_records") == 3
        age = sample("watchkeeper_outbox_oldest_age_seconds")
        assert age is not None and 120 <= age < 120 + SETTLE_S
        assert await relay.drain_once() == 3
        assert sample("watchkeeper_outbox_pending_records") == 0
        assert sample("watchkeeper_outbox_oldest_age_seconds") == 0
        assert sample("watchkeeper_outbox_published_records_total") == 3
    finally:
        await bus.stop()
        db.dispose()


def test_one_exposition_of_several_registries_has_each_series_once() -> None:
    registries = []
    for service in ("ingest", "alerts"):
        registry = CollectorRegistry()
        add_runtime_collectors(registry)
        counter = Counter("watchkeeper_things", "Things", ["service"], registry=registry)
        counter.labels(service).inc()
        registries.append(registry)
    text = merged_exposition(registries).decode()
    promtool_check_metrics(text)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    things = families["watchkeeper_things"]
    assert {s.labels["service"] for s in things.samples if s.name.endswith("_total")} == {
        "ingest",
        "alerts",
    }
    resident = [s for s in families["process_resident_memory_bytes"].samples]
    assert len(resident) == 1  # one process: once, not once per app
    assert text.count("# TYPE watchkeeper_things_total counter") == 1
