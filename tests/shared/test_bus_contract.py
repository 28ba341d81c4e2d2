"""The bus contract (shared/bus/base.py), checked on the in-process bus and on real Kafka.

Every test runs three times: ``[memory]`` on a ``MemoryBus``, ``[sqlite]`` on a durable
``MemoryBus`` (its log in a SQLite file, as the embedded platform runs it) and ``[kafka]`` on a
``KafkaBus`` against the session's broker, each test under its own topic prefix and group ids
so no test sees another's data. The durability tests restart the bus on the same storage
(``[sqlite]``: the same file; ``[kafka]``: a new client of the same broker).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest

from shared.bus import (
    DLQ_HEADERS,
    Bus,
    BusUnavailable,
    Consumer,
    Decoded,
    KafkaBus,
    MemoryBus,
    Record,
    StreamWorker,
    TopicPartition,
    Topics,
)
from shared.contracts import OutcomeEvent, decode, encode

# Generous ceilings: a test passes as soon as the behaviour shows, these only bound a failure.
SETTLE_S = 20.0
QUIET_S = 1.0


@pytest.fixture(params=["memory", "sqlite", "kafka"])
def bus_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    if kind == "kafka":
        request.getfixturevalue("kafka_bootstrap")  # start the broker outside the event loop
    return kind


BusFactory = Callable[[], Bus]


def bus_factory(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> BusFactory:
    """New buses over one storage: each call is a restart of the same bus."""
    topics = Topics(prefix=f"t{uuid4().hex[:8]}.", partitions=3)
    if kind == "memory":
        return lambda: MemoryBus(topics=topics)
    if kind == "sqlite":
        return lambda: MemoryBus(topics=topics, path=tmp_path / "bus.db")
    bootstrap = request.getfixturevalue("kafka_bootstrap")
    return lambda: KafkaBus(bootstrap, topics, send_timeout_s=10)


@pytest.fixture
async def bus(bus_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Bus]:
    the_bus = bus_factory(bus_kind, request, tmp_path)()
    await the_bus.start()
    try:
        assert await the_bus.ready()
        yield the_bus
    finally:
        await the_bus.stop()


@contextlib.asynccontextmanager
async def running(consumer: Consumer) -> AsyncIterator[Consumer]:
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


@contextlib.asynccontextmanager
async def working(worker: StreamWorker[OutcomeEvent]) -> AsyncIterator[StreamWorker[OutcomeEvent]]:
    await worker.start()
    try:
        yield worker
    finally:
        await worker.stop()


def group(bus: Bus, name: str = "g") -> str:
    return f"{bus.topics.prefix}{name}"


def all_partitions(topic: str, count: int = 3) -> set[TopicPartition]:
    return {TopicPartition(topic, p) for p in range(count)}


async def poll_until(
    consumer: Consumer,
    count: int,
    *,
    timeout_s: float = SETTLE_S,
) -> list[Record]:
    """Poll until ``count`` records arrived (or fail)."""
    got: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count:
        assert time.monotonic() < deadline, f"only {len(got)} of {count} records arrived"
        got += await consumer.poll(timeout_s=0.2)
    return got


async def poll_quiet(consumer: Consumer, seconds: float = QUIET_S) -> list[Record]:
    """Everything that still arrives within ``seconds`` (expected: nothing)."""
    got: list[Record] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got += await consumer.poll(timeout_s=0.2)
    return got


async def eventually(check: Callable[[], bool], what: str, timeout_s: float = SETTLE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def where(records: Iterable[Record]) -> list[tuple[int, int]]:
    return sorted((r.partition, r.offset) for r in records)


def outcome(event_id: str) -> bytes:
    return encode(
        OutcomeEvent(
            event_id=event_id,
            system_id="credit-scoring",
            prediction_id=f"p-{event_id}",
            timestamp=datetime(2025, 1, 1, tzinfo=UTC),
            actual=1,
        )
    )


def outcome_worker(
    bus: Bus,
    handle: Callable[[Sequence[Decoded[OutcomeEvent]]], object],
    *,
    group_id: str,
    on_assign: Callable[[set[TopicPartition]], object] | None = None,
    on_dead_letter: Callable[[Record, str], None] | None = None,
) -> StreamWorker[OutcomeEvent]:
    async def handler(batch: Sequence[Decoded[OutcomeEvent]]) -> None:
        result = handle(batch)
        if asyncio.iscoroutine(result):
            await result

    async def assigned(partitions: set[TopicPartition]) -> None:
        if on_assign is not None:
            on_assign(partitions)

    return StreamWorker(
        bus=bus,
        name="outcomes-test",
        topics=[bus.topics.outcomes],
        group_id=group_id,
        decode=lambda record: decode(OutcomeEvent, record.value),
        handle=handler,
        on_assign=assigned,
        on_dead_letter=on_dead_letter,
        poll_timeout_s=0.2,
        retry_backoff_s=0.05,
    )


async def test_records_of_one_key_arrive_in_send_order(bus: Bus) -> None:
    topic = bus.topics.predictions
    keys = [f"system-{k}".encode() for k in range(6)]
    per_key = 40
    interleaved = [(key, f"{key.decode()}#{i}".encode()) for i in range(per_key) for key in keys]
    sent = await bus.producer.send_many(topic, interleaved[: len(interleaved) // 2])
    for key, value in interleaved[len(interleaved) // 2 :]:
        sent.append(await bus.producer.send(topic, value, key=key))
    assert len(sent) == len(interleaved)

    async with running(bus.consumer([topic], group_id=group(bus))) as consumer:
        records = await poll_until(consumer, len(interleaved))

    seen: dict[bytes, list[int]] = {key: [] for key in keys}
    partitions: dict[bytes, set[int]] = {key: set() for key in keys}
    for record in records:
        assert record.key is not None and record.value is not None
        assert record.topic == topic
        seen[record.key].append(int(record.value.split(b"#")[1]))
        partitions[record.key].add(record.partition)
    assert all(order == list(range(per_key)) for order in seen.values()), seen
    assert all(len(p) == 1 for p in partitions.values()), partitions
    # the acknowledged metadata points at the very records the consumer got
    assert sorted((m.partition, m.offset) for m in sent) == where(records)


async def test_uncommitted_records_are_delivered_again_after_restart(bus: Bus) -> None:
    topic = bus.topics.outcomes
    await bus.producer.send_many(topic, [(f"k{i}".encode(), b"v%d" % i) for i in range(30)])

    async with running(bus.consumer([topic], group_id=group(bus))) as first:
        records = await poll_until(first, 30)
        by_partition: dict[TopicPartition, list[Record]] = {}
        for record in records:
            by_partition.setdefault(record.tp, []).append(record)
        # commit half of every partition, leave the rest polled but uncommitted
        committed = {tp: rs[len(rs) // 2].offset for tp, rs in by_partition.items() if len(rs) >= 2}
        assert committed, "the keys should spread over partitions"
        await first.commit(committed)

    expected = [r for r in records if r.offset >= committed.get(r.tp, 0)]
    assert 0 < len(expected) < len(records)
    async with running(bus.consumer([topic], group_id=group(bus))) as second:
        again = await poll_until(second, len(expected))
        again += await poll_quiet(second)
    assert where(again) == where(expected)
    assert [r.value for r in sorted(again, key=lambda r: (r.partition, r.offset))] == [
        r.value for r in sorted(expected, key=lambda r: (r.partition, r.offset))
    ]


async def test_group_members_share_partitions_and_take_over_on_leave(bus: Bus) -> None:
    topic = bus.topics.evaluations
    everything = all_partitions(topic)
    a = bus.consumer([topic], group_id=group(bus))
    b = bus.consumer([topic], group_id=group(bus))
    async with running(a), contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(running(b))
        # both members poll (as live members do) until the group has split the partitions
        deadline = time.monotonic() + SETTLE_S
        while True:
            early = await a.poll(timeout_s=0.1) + await b.poll(timeout_s=0.1)
            assert not early
            split = a.assignment(), b.assignment()
            if all(split) and split[0] | split[1] == everything and not split[0] & split[1]:
                break
            assert time.monotonic() < deadline, f"partitions never split: {split}"
        owned_a, owned_b = a.assignment(), b.assignment()

        first = [(f"r1-{i}".encode(), b"1") for i in range(30)]
        await bus.producer.send_many(topic, first)
        got_a: list[Record] = []
        got_b: list[Record] = []
        deadline = time.monotonic() + SETTLE_S
        while len(got_a) + len(got_b) < len(first):
            assert time.monotonic() < deadline
            got_a += await a.poll(timeout_s=0.1)
            await a.commit()
            got_b += await b.poll(timeout_s=0.1)
            await b.commit()
        got_a += await poll_quiet(a, 0.5)
        got_b += await poll_quiet(b, 0.5)
        assert {r.tp for r in got_a} <= owned_a
        assert {r.tp for r in got_b} <= owned_b
        assert got_a and got_b
        assert sorted(r.key or b"" for r in got_a + got_b) == sorted(k for k, _ in first)

        # of a second batch, a handles and commits its share, b polls its share without
        # committing and leaves: a takes over b's partitions and gets exactly b's share
        second = [(f"r2-{i}".encode(), b"2") for i in range(30)]
        sent = await bus.producer.send_many(topic, second)
        a_share = [m for m in sent if TopicPartition(m.topic, m.partition) in owned_a]
        b_share = [m for m in sent if TopicPartition(m.topic, m.partition) in owned_b]
        assert a_share and b_share
        await poll_until(a, len(a_share))
        await a.commit()
        await poll_until(b, len(b_share))
        await stack.aclose()  # b stops

        taken: list[Record] = []
        deadline = time.monotonic() + SETTLE_S
        while a.assignment() != everything or len(taken) < len(b_share):
            assert time.monotonic() < deadline, f"a has {a.assignment()}, {len(taken)} records"
            taken += await a.poll(timeout_s=0.2)
        taken += await poll_quiet(a, 0.5)
    assert where(taken) == sorted((m.partition, m.offset) for m in b_share)


async def test_poison_message_goes_to_dlq_and_the_worker_goes_on(bus: Bus) -> None:
    topic = bus.topics.outcomes
    handled: list[str] = []
    dead: list[Record] = []
    worker = outcome_worker(
        bus,
        lambda batch: handled.extend(d.value.event_id for d in batch),
        group_id=group(bus),
        on_dead_letter=lambda record, error: dead.append(record),
    )
    garbage = b"\xff{not json"
    key = b"credit-scoring"
    async with working(worker):
        await bus.producer.send(topic, outcome("e1"), key=key)
        bad = await bus.producer.send(topic, garbage, key=key)
        await bus.producer.send(topic, outcome("e2"), key=key)
        await eventually(lambda: handled == ["e1", "e2"], f"both good events (got {handled})")
        assert worker.running
        await bus.producer.send(topic, outcome("e3"), key=key)
        await eventually(lambda: handled == ["e1", "e2", "e3"], "the event after the poison")
        assert worker.running
    assert [(r.partition, r.offset) for r in dead] == [(bad.partition, bad.offset)]

    async with running(bus.consumer([bus.topics.dlq], group_id=None)) as dlq:
        letters = await poll_until(dlq, 1)
        letters += await poll_quiet(dlq, 0.5)
    assert len(letters) == 1
    letter = letters[0]
    assert letter.value == garbage
    assert letter.key == key
    headers = dict(letter.headers)
    assert set(DLQ_HEADERS) <= set(headers)
    assert headers["wk-source-topic"] == topic.encode()
    assert headers["wk-source-partition"] == str(bad.partition).encode()
    assert headers["wk-source-offset"] == str(bad.offset).encode()
    assert headers["wk-error"].startswith(b"JSONDecodeError")

    # offsets were committed: a new worker of the group gets neither the good nor the bad again
    assigned = asyncio.Event()
    again: list[str] = []
    worker = outcome_worker(
        bus,
        lambda batch: again.extend(d.value.event_id for d in batch),
        group_id=group(bus),
        on_assign=lambda _: assigned.set(),
    )
    async with working(worker):
        await asyncio.wait_for(assigned.wait(), SETTLE_S)
        await asyncio.wait_for(worker.caught_up.wait(), SETTLE_S)
        await bus.producer.send(topic, outcome("e4"), key=key)
        await eventually(lambda: again == ["e4"], f"only the new event (got {again})")
    async with running(bus.consumer([bus.topics.dlq], group_id=None)) as dlq:
        assert len(await poll_until(dlq, 1) + await poll_quiet(dlq, 0.5)) == 1


async def test_consumer_without_group_reads_all_partitions_from_the_beginning(bus: Bus) -> None:
    topic = bus.topics.registry
    sent = await bus.producer.send_many(topic, [(f"s{i}".encode(), b"x") for i in range(20)])
    for _ in range(2):  # nothing is committed: a second reader starts from the beginning too
        async with running(bus.consumer([topic], group_id=None)) as reader:
            assert reader.assignment() == all_partitions(topic)
            assert await reader.lag() == 20
            records = await poll_until(reader, 20)
            records += await poll_quiet(reader, 0.3)
            await reader.commit()
            assert await reader.lag() == 0
        assert where(records) == sorted((m.partition, m.offset) for m in sent)

    async with running(bus.consumer([topic], group_id=None)) as reader:
        await poll_until(reader, 20)
        await bus.producer.send(topic, b"late", key=b"s0")
        assert await reader.lag() == 1
        assert [r.value for r in await poll_until(reader, 1)] == [b"late"]
        assert await reader.lag() == 0


async def test_worker_redelivers_a_batch_whose_handler_failed(bus: Bus) -> None:
    topic = bus.topics.outcomes
    failed: list[str] = []
    handled: list[str] = []

    def handle(batch: Sequence[Decoded[OutcomeEvent]]) -> None:
        ids = [d.value.event_id for d in batch]
        if not failed:
            failed.extend(ids)
            raise RuntimeError("database is down")
        handled.extend(ids)

    ids = [f"e{i}" for i in range(12)]
    for event_id in ids:
        await bus.producer.send(topic, outcome(event_id), key=event_id.encode())
    async with working(outcome_worker(bus, handle, group_id=group(bus))) as worker:
        # caught up = at the end of its partitions with everything before it handled
        await asyncio.wait_for(worker.caught_up.wait(), SETTLE_S)
        assert sorted(handled) == sorted(ids)
        assert worker.running
    assert failed and set(failed) <= set(handled)
    assert len(handled) == len(set(handled))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_kafka_send_fails_fast_when_the_broker_is_unreachable() -> None:
    the_bus = KafkaBus(f"127.0.0.1:{closed_port()}", Topics(prefix="down."), send_timeout_s=1.0)
    started = time.monotonic()
    await asyncio.wait_for(the_bus.start(), 10)
    try:
        assert not await the_bus.ready()
        began = time.monotonic()
        with pytest.raises(BusUnavailable):
            await asyncio.wait_for(the_bus.producer.send("down.predictions", b"v", key=b"k"), 5)
        with pytest.raises(BusUnavailable):
            await asyncio.wait_for(
                the_bus.producer.send_many("down.predictions", [(b"k", b"v")]), 5
            )
        assert time.monotonic() - began < 2.5
    finally:
        await asyncio.wait_for(the_bus.stop(), 10)
    assert time.monotonic() - started < 10


async def test_a_batch_in_hand_is_committed_before_its_partitions_move(bus: Bus) -> None:
    """Commit on revoke: a member joining while another is handling a batch does not get
    that batch again; the partitions move after the batch was handled and committed."""
    ids = [f"e{i}" for i in range(30)]
    await bus.producer.send_many(
        bus.topics.outcomes, [(f"k{i % 6}".encode(), outcome(e)) for i, e in enumerate(ids)]
    )
    handled: dict[str, list[str]] = {"a": [], "b": []}
    in_batch = asyncio.Event()
    b_assigned: set[TopicPartition] = set()

    async def slow_a(batch: Sequence[Decoded[OutcomeEvent]]) -> None:
        handled["a"].extend(d.value.event_id for d in batch)
        if not in_batch.is_set():
            in_batch.set()
            await asyncio.sleep(3)  # the group rebalances meanwhile

    a = outcome_worker(bus, slow_a, group_id=group(bus))
    b = outcome_worker(
        bus,
        lambda batch: handled["b"].extend(d.value.event_id for d in batch),
        group_id=group(bus),
        on_assign=b_assigned.update,
    )
    async with working(a):
        await asyncio.wait_for(in_batch.wait(), SETTLE_S)
        async with working(b):
            await eventually(lambda: bool(b_assigned), "b to be given partitions")
            await eventually(
                lambda: len(handled["a"]) + len(handled["b"]) >= len(ids), "every record"
            )
            await asyncio.sleep(QUIET_S)
    assert sorted(handled["a"] + handled["b"]) == sorted(ids), "a record was handled twice"


@contextlib.asynccontextmanager
async def started(make: BusFactory) -> AsyncIterator[Bus]:
    the_bus = make()
    await the_bus.start()
    try:
        assert await the_bus.ready()
        yield the_bus
    finally:
        await the_bus.stop()


@pytest.mark.parametrize("kind", ["sqlite", "kafka"])
async def test_records_and_committed_offsets_survive_a_restart_of_the_bus(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    make = bus_factory(kind, request, tmp_path)
    async with started(make) as first:
        topic = first.topics.outcomes
        sent = await first.producer.send_many(
            topic, [(f"k{i % 5}".encode(), b"v%d" % i) for i in range(40)]
        )
        sent.append(await first.producer.send(topic, b"h", key=b"k0", headers=[("h", b"\x00")]))
        async with running(first.consumer([topic], group_id=group(first))) as consumer:
            records = await poll_until(consumer, len(sent))
            half = {r.tp: r.offset for r in records if r.offset == 3}
            assert half, "the keys should spread over partitions"
            await consumer.commit(half)

    async with started(make) as second:
        async with running(second.consumer([topic], group_id=None)) as reader:
            everything = await poll_until(reader, len(sent))
            everything += await poll_quiet(reader, 0.3)
        # every acknowledged record is there, at the offset its acknowledgement named
        assert where(everything) == sorted((m.partition, m.offset) for m in sent)
        by_place = {(r.partition, r.offset): r for r in records}
        for record in everything:
            before = by_place[(record.partition, record.offset)]
            assert (record.key, record.value, record.headers) == (
                before.key,
                before.value,
                before.headers,
            )
        # the group resumes at its committed offsets
        expected = [r for r in records if r.offset >= half.get(r.tp, 0)]
        async with running(second.consumer([topic], group_id=group(second))) as consumer:
            again = await poll_until(consumer, len(expected))
            again += await poll_quiet(consumer, 0.3)
        assert where(again) == where(expected)
        # new records continue the offsets; none lands below one acknowledged before
        more = await second.producer.send_many(topic, [(b"k1", b"after")])
        last = max(m.offset for m in sent if m.partition == more[0].partition)
        assert more[0].offset == last + 1


async def test_a_compacted_topic_keeps_the_latest_record_per_key_across_a_restart(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    make = bus_factory("sqlite", request, tmp_path)
    async with started(make) as first:
        topic = first.topics.registry  # compacted (Topics.specs)
        sent = await first.producer.send_many(
            topic, [(b"s1", b"s1-v1"), (b"s2", b"s2-v1"), (b"s1", b"s1-v2"), (b"s3", None)]
        )
        sent += await first.producer.send_many(topic, [(b"s1", b"s1-v3"), (b"s2", b"s2-v2")])
        ends = {m.partition: m.offset + 1 for m in sent}

    async with started(make) as second:
        async with running(second.consumer([topic], group_id=None)) as reader:
            records = await poll_until(reader, 3)
            records += await poll_quiet(reader, 0.3)
            assert await reader.lag() == 0  # at the end, although offsets were compacted away
        latest = {r.key: r.value for r in records}
        assert latest == {b"s1": b"s1-v3", b"s2": b"s2-v2", b"s3": None}
        assert len(records) == 3
        # the records that stay keep their offsets, and new ones continue after the old end
        kept = {m.offset for m in sent[-2:]}
        assert {r.offset for r in records if r.key in (b"s1", b"s2")} == kept
        more = await second.producer.send(topic, b"s1-v4", key=b"s1")
        assert more.offset == ends[more.partition]
