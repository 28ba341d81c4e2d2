"""The transactional outbox publishes exactly what committed, in order, and survives a bus outage.

Runs on SQLite (the embedded default) and on the session's real PostgreSQL; each test uses
its own ``service`` name, so tests sharing the PostgreSQL database never see each other's rows.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from uuid import uuid4

import pytest
from sqlalchemy import make_url, text
from sqlmodel import col, select

from shared.bus import BusUnavailable, MemoryBus, Record, RecordMetadata, Topics
from shared.bus.memory import MemoryProducer
from shared.db import Database
from shared.outbox import OutboxMessage, OutboxRelay, enqueue

SETTLE_S = 10.0


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'outbox.db'}"
    else:
        url = request.getfixturevalue("database_url")
    database = Database(url)
    database.create_tables([OutboxMessage])
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def service() -> str:
    return f"svc-{uuid4().hex[:8]}"


class FlakyProducer:
    """The memory producer, except that it refuses every send while ``down`` is set."""

    def __init__(self, inner: MemoryProducer) -> None:
        self.inner = inner
        self.down = False
        self.refused = 0

    def _check(self) -> None:
        if self.down:
            self.refused += 1
            raise BusUnavailable("Kafka is down (test double)")

    async def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> RecordMetadata:
        self._check()
        return await self.inner.send(topic, value, key=key, headers=headers)

    async def send_many(
        self, topic: str, items: Sequence[tuple[bytes | None, bytes | None]]
    ) -> list[RecordMetadata]:
        self._check()
        return await self.inner.send_many(topic, items)


class FlakyBus(MemoryBus):
    def __init__(self) -> None:
        super().__init__(topics=Topics(prefix="outbox."))
        self.flaky = FlakyProducer(super().producer)

    @property
    def producer(self) -> FlakyProducer:  # type: ignore[override]
        return self.flaky


def pending(db: Database, service: str) -> list[bytes | None]:
    with db.session() as session:
        stmt = (
            select(OutboxMessage)
            .where(OutboxMessage.service == service)
            .order_by(col(OutboxMessage.id))
        )
        return [row.value for row in session.exec(stmt).all()]


def store(db: Database, service: str, items: Sequence[tuple[str, bytes]]) -> None:
    """One committed transaction enqueuing (topic, value) records keyed by system."""
    with db.session() as session:
        for topic, value in items:
            enqueue(session, service=service, topic=topic, key=b"system-1", value=value)
        session.commit()


def published(bus: MemoryBus, topic: str) -> list[bytes | None]:
    records: list[Record] = []
    for tp in bus.broker.partitions(topic):
        records += bus.broker.log(tp)
    return [r.value for r in sorted(records, key=lambda r: (r.partition, r.offset))]


async def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + SETTLE_S
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_committed_rows_are_published_in_order_and_deleted(
    db: Database, service: str
) -> None:
    bus = FlakyBus()
    await bus.start()
    a, b = bus.topics.registry, bus.topics.nonconformities
    store(db, service, [(a, b"a1"), (a, b"a2"), (b, b"b1"), (a, b"a3")])
    store(db, service, [(a, b"a4"), (b, b"b2")])
    relay = OutboxRelay(db=db, bus=bus, service=service, batch=3)

    assert await relay.drain_once() == 3
    assert await relay.drain_once() == 3
    assert await relay.drain_once() == 0

    assert published(bus, a) == [b"a1", b"a2", b"a3", b"a4"]
    assert published(bus, b) == [b"b1", b"b2"]
    assert relay.published == 6
    assert pending(db, service) == []


async def test_rows_of_uncommitted_or_rolled_back_transactions_are_not_published(
    db: Database, service: str
) -> None:
    bus = FlakyBus()
    await bus.start()
    topic = bus.topics.registry
    relay = OutboxRelay(db=db, bus=bus, service=service)
    store(db, service, [(topic, b"kept")])
    assert await relay.drain_once() == 1

    with db.session() as session:
        enqueue(session, service=service, topic=topic, key=b"system-1", value=b"in-flight")
        session.flush()  # written inside the open transaction, not committed
        assert await relay.drain_once() == 0
        session.rollback()
    assert await relay.drain_once() == 0

    assert published(bus, topic) == [b"kept"]
    assert pending(db, service) == []


async def test_rows_wait_out_a_bus_outage_and_are_published_once_it_recovers(
    db: Database, service: str
) -> None:
    bus = FlakyBus()
    await bus.start()
    topic = bus.topics.nonconformities
    bus.flaky.down = True
    relay = OutboxRelay(db=db, bus=bus, service=service)
    await relay.start()
    try:
        store(db, service, [(topic, b"nc-1"), (topic, b"nc-2")])
        relay.notify()
        await eventually(lambda: bus.flaky.refused >= 1, "a refused send")
        assert pending(db, service) == [b"nc-1", b"nc-2"]
        store(db, service, [(topic, b"nc-3")])
        await eventually(lambda: bus.flaky.refused >= 2, "a retry while the bus is down")
        assert pending(db, service) == [b"nc-1", b"nc-2", b"nc-3"]
        assert published(bus, topic) == []

        bus.flaky.down = False
        await eventually(lambda: len(published(bus, topic)) >= 3, "publication after recovery")
        await eventually(lambda: not pending(db, service), "the rows to be deleted")
        # the count follows the delete's commit, one await later
        await eventually(lambda: relay.published == 3, "the relay to count the records")
    finally:
        await relay.stop()
    assert published(bus, topic) == [b"nc-1", b"nc-2", b"nc-3"]
    assert relay.published == 3


def test_services_starting_together_each_create_the_outbox_table(database_url: str) -> None:
    """Every service owns an ``outbox_message`` table; in one PostgreSQL database they start
    at the same moment and must not fail on each other's CREATE TABLE."""
    schema = f"race_{uuid4().hex[:8]}"
    admin = Database(database_url)
    with admin.engine.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    url = make_url(database_url).update_query_dict({"options": f"-csearch_path={schema}"})
    services = [Database(url.render_as_string(hide_password=False)) for _ in range(6)]
    start = threading.Barrier(len(services))

    def start_service(db: Database) -> None:
        start.wait()
        db.create_tables([OutboxMessage])

    try:
        with ThreadPoolExecutor(len(services)) as pool:
            for future in [pool.submit(start_service, db) for db in services]:
                future.result()
        with admin.engine.connect() as conn:
            tables = conn.execute(
                text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"),
                {"s": schema},
            ).scalars()
            assert list(tables) == ["outbox_message"]
    finally:
        for db in services:
            db.dispose()
        with admin.engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
