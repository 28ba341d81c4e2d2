"""The duplicate store: an event_id is delivered once per label horizon, across instances and
restarts, and never reported as a duplicate unless its delivery was settled (no loss).

Runs on SQLite (embedded) and on the session's real PostgreSQL (deployed).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from services.ingest.dedup import Claim, Claims, DedupStore, Verdict
from shared.db import Database
from tests.factories import unique


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


StoreFactory = Callable[..., DedupStore]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_of(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'dedup.db'}"
    url: str = request.getfixturevalue("database_url")
    return url


@pytest.fixture
async def make_store(database_of: str) -> AsyncIterator[StoreFactory]:
    stores: list[DedupStore] = []

    def make(clock: Clock, **options: float) -> DedupStore:
        store = DedupStore(
            Database(database_of), clock=clock, heartbeat_s=3600, purge_interval_s=3600, **options
        )
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.stop()


def claims(system_id: str, *event_ids: str, horizon_s: float = 3600) -> list[Claim]:
    return [Claim(system_id, "predictions", e, horizon_s) for e in event_ids]


async def test_new_then_duplicate_once_settled(make_store: StoreFactory) -> None:
    clock = Clock()
    store = make_store(clock)
    await store.start()
    system = unique("sys")
    seq, verdicts = await store.claim(claims(system, "a", "b"))
    assert verdicts == [Verdict.NEW, Verdict.NEW]
    # not settled yet: a retry must not be told "duplicate" (Kafka may still refuse them)
    _, again = await store.claim(claims(system, "a"))
    assert again == [Verdict.IN_FLIGHT]
    store.settle(seq)
    retry_seq, retry = await store.claim(claims(system, "a", "b", "c"))
    assert retry == [Verdict.DUPLICATE, Verdict.DUPLICATE, Verdict.NEW]
    store.settle(retry_seq)


async def test_kinds_and_systems_are_separate_spaces(make_store: StoreFactory) -> None:
    store = make_store(Clock())
    await store.start()
    system = unique("sys")
    seq, _ = await store.claim(claims(system, "x"))
    store.settle(seq)
    _, verdicts = await store.claim(
        [Claim(system, "outcomes", "x", 60), Claim(unique("sys"), "predictions", "x", 60)]
    )
    assert verdicts == [Verdict.NEW, Verdict.NEW]


async def test_undelivered_events_are_released_for_a_retry(make_store: StoreFactory) -> None:
    store = make_store(Clock())
    await store.start()
    system = unique("sys")
    batch = claims(system, "p", "q")
    seq, _ = await store.claim(batch)
    store.settle(seq, [batch[1]])  # Kafka wrote p, definitely not q
    while store.unsettled:
        await store.publish()
    _, verdicts = await store.claim(claims(system, "p", "q"))
    assert verdicts == [Verdict.DUPLICATE, Verdict.NEW]


async def test_another_instance_sees_in_flight_then_duplicate(make_store: StoreFactory) -> None:
    clock = Clock()
    first, second = make_store(clock), make_store(clock)
    await first.start()
    await second.start()
    system = unique("sys")
    seq, _ = await first.claim(claims(system, "e1"))
    await first.publish()
    _, verdicts = await second.claim(claims(system, "e1"))
    assert verdicts == [Verdict.IN_FLIGHT]
    first.settle(seq)
    await first.publish()
    _, verdicts = await second.claim(claims(system, "e1"))
    assert verdicts == [Verdict.DUPLICATE]


async def test_a_restarted_instance_still_knows_what_it_delivered(
    make_store: StoreFactory,
) -> None:
    clock = Clock()
    before = make_store(clock)
    await before.start()
    system = unique("sys")
    seq, _ = await before.claim(claims(system, "r1"))
    before.settle(seq)
    await before.stop()
    after = make_store(clock)
    await after.start()
    _, verdicts = await after.claim(claims(system, "r1", "r2"))
    assert verdicts == [Verdict.DUPLICATE, Verdict.NEW]


async def test_claims_of_a_dead_instance_are_taken_over_after_its_lease(
    make_store: StoreFactory,
) -> None:
    """Fate unknown (it died between producing and settling): deliver again, at-least-once."""
    clock = Clock()
    dead = make_store(clock, lease_s=10)
    await dead.start()
    system = unique("sys")
    await dead.claim(claims(system, "d1"))
    await dead.publish()
    survivor = make_store(clock, lease_s=10)
    await survivor.start()
    _, verdicts = await survivor.claim(claims(system, "d1"))
    assert verdicts == [Verdict.IN_FLIGHT]
    clock.now += 11
    seq, verdicts = await survivor.claim(claims(system, "d1"))
    assert verdicts == [Verdict.NEW]
    survivor.settle(seq)
    await survivor.publish()
    _, verdicts = await survivor.claim(claims(system, "d1"))
    assert verdicts == [Verdict.DUPLICATE]


async def test_an_event_id_counts_again_after_the_label_horizon(make_store: StoreFactory) -> None:
    clock = Clock()
    store = make_store(clock)
    await store.start()
    system = unique("sys")
    seq, _ = await store.claim(claims(system, "h1", horizon_s=60))
    store.settle(seq)
    clock.now += 59
    _, verdicts = await store.claim(claims(system, "h1", horizon_s=60))
    assert verdicts == [Verdict.DUPLICATE]
    clock.now += 2
    seq, verdicts = await store.claim(claims(system, "h1", horizon_s=60))
    assert verdicts == [Verdict.NEW]
    store.settle(seq)
    assert await store.db.run(store._purge, clock.now + 61) >= 1


async def test_concurrent_requests_with_the_same_event_id_get_one_winner(
    make_store: StoreFactory,
) -> None:
    import asyncio

    store = make_store(Clock())
    await store.start()
    system = unique("sys")
    results = await asyncio.gather(*(store.claim(claims(system, "same")) for _ in range(5)))
    verdicts = [v for _seq, [v] in results]
    assert verdicts.count(Verdict.NEW) == 1
    assert verdicts.count(Verdict.IN_FLIGHT) == 4


async def test_columnar_claims_mixed_with_lists_in_one_group_commit(
    make_store: StoreFactory,
) -> None:
    """``Claims`` (ingest's columnar form: one system repeated, or several) and plain lists
    waiting together go into one statement and each get their own verdicts."""
    import asyncio

    clock = Clock()
    store = make_store(clock)
    await store.start()
    one, other = unique("sys"), unique("sys")
    horizons = {one: 3600.0, other: 60.0}
    single = Claims("predictions", [one, one, one], ["a", "b", "c"], {one: 3600.0})
    mixed = Claims("outcomes", [one, other], ["a", "z"], horizons)
    assert list(mixed) == [Claim(one, "outcomes", "a", 3600.0), Claim(other, "outcomes", "z", 60)]
    assert mixed[1] == Claim(other, "outcomes", "z", 60) and len(mixed[:1]) == 1
    results = await asyncio.gather(
        store.claim(single), store.claim(mixed), store.claim(claims(other, "q", "b"))
    )
    assert [verdicts for _seq, verdicts in results] == [
        [Verdict.NEW] * 3,
        [Verdict.NEW] * 2,
        [Verdict.NEW] * 2,
    ]
    for seq, _ in results:
        store.settle(seq)
    _, again = await store.claim(
        Claims("predictions", [one, other, one], ["c", "q", "d"], {one: 3600.0, other: 60.0})
    )
    assert again == [Verdict.DUPLICATE, Verdict.DUPLICATE, Verdict.NEW]
    clock.now += 120  # past the other system's 60 s horizon (from ``mixed``), within one's
    _, later = await store.claim(Claims("outcomes", [one, other], ["a", "z"], horizons))
    assert later == [Verdict.DUPLICATE, Verdict.NEW]
