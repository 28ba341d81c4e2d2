"""The server fixtures of tests/servers.py give working Kafka and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError

from tests.servers import KafkaBroker


def _topic_name() -> str:
    return f"test-servers-{uuid.uuid4().hex[:12]}"


async def _create_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name=topic, num_partitions=1, replication_factor=1)])
        assert topic in await admin.list_topics()
    finally:
        await admin.close()


async def _consume(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"test-servers-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        async with asyncio.timeout(60):
            while len(values) < count:
                message = await consumer.getone()
                assert message.value is not None
                values.append(message.value)
        await consumer.commit()  # exercises the group coordinator (__consumer_offsets)
    finally:
        await consumer.stop()
    return values


@pytest.mark.asyncio
async def test_kafka_topic_produce_consume(kafka_bootstrap: str) -> None:
    topic = _topic_name()
    await _create_topic(kafka_bootstrap, topic)

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        metadata = await producer.send_and_wait(topic, b"hello", key=b"k")
    finally:
        await producer.stop()
    assert metadata.topic == topic
    assert metadata.offset == 0

    assert await _consume(kafka_bootstrap, topic, 1) == [b"hello"]


@pytest.mark.asyncio
async def test_kafka_auto_creates_topics_with_three_partitions(kafka_bootstrap: str) -> None:
    topic = _topic_name()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"auto")
        partitions = await producer.partitions_for(topic)
    finally:
        await producer.stop()
    assert len(partitions) == 3


def test_postgres_select_one(database_url: str) -> None:
    assert database_url.startswith("postgresql+psycopg://watchkeeper:watchkeeper@127.0.0.1:")
    conninfo = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(conninfo, connect_timeout=10) as conn:
        row = conn.execute("select 1, current_user, current_database()").fetchone()
    assert row == (1, "watchkeeper", "watchkeeper")


@pytest.mark.asyncio
async def test_kafka_pause_and_resume(kafka_broker: KafkaBroker) -> None:
    if not kafka_broker.managed:
        pytest.skip("KAFKA_BOOTSTRAP points at a broker this harness cannot stop and start")
    bootstrap = kafka_broker.bootstrap
    topic = _topic_name()
    await _create_topic(bootstrap, topic)

    # A producer connected before the outage keeps working after it.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"before")

        await asyncio.to_thread(kafka_broker.pause)
        try:
            assert kafka_broker.is_paused
            admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
            with pytest.raises(KafkaConnectionError):
                await admin.start()  # nothing listens on the port now
            await admin.close()
        finally:
            await asyncio.to_thread(kafka_broker.resume)
        assert not kafka_broker.is_paused
        assert kafka_broker.bootstrap == bootstrap

        async with asyncio.timeout(60):
            await producer.send_and_wait(topic, b"after")
    finally:
        await producer.stop()

    # A new client works too, and the data from before the outage is still there.
    fresh = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await fresh.start()
    try:
        await fresh.send_and_wait(topic, b"fresh")
    finally:
        await fresh.stop()
    assert await _consume(bootstrap, topic, 3) == [b"before", b"after", b"fresh"]


def test_external_broker_cannot_pause() -> None:
    broker = KafkaBroker("127.0.0.1:1")
    assert not broker.managed
    with pytest.raises(pytest.fail.Exception, match="KAFKA_BOOTSTRAP"):
        broker.pause()
