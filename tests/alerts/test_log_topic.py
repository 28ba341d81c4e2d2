"""Every entry of the continual improvement log is published on the nonconformities topic
(real Kafka and PostgreSQL), including the entries that are not about a record: objective
changes from the registry topic, silences created and expired, held-back raises, corrective
actions. A consumer rebuilds the chain from the topic alone."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson

from services.alerts.app import create_app
from services.alerts.semantics import GENESIS, canonical_entry, chain_hash
from services.alerts.settings import Settings
from shared.bus import Bus
from shared.contracts import (
    EvaluationResult,
    EvaluationStatus,
    ImprovementLogEntry,
    NonconformityChanged,
    SystemSnapshot,
    decode_nonconformity_message,
    encode,
)
from tests.deployments import fresh_database
from tests.factories import accuracy_snapshot, make_evaluation

SYSTEM = "credit"
FIRST_WINDOW = datetime(2026, 3, 1, tzinfo=UTC)


def snapshot() -> SystemSnapshot:
    return accuracy_snapshot(SYSTEM)


def evaluation(
    status: EvaluationStatus, window: int, *, objective_id: str = "acc", metric: str = "accuracy"
) -> EvaluationResult:
    made = make_evaluation(
        status,
        window,
        evaluation_id=f"{objective_id}-{window}",
        system_id=SYSTEM,
        first_window=FIRST_WINDOW,
    )
    return made.model_copy(update={"objective_id": objective_id, "metric": metric})


async def send(bus: Bus, *results: EvaluationResult) -> None:
    await bus.producer.send_many(
        bus.topics.evaluations, [(SYSTEM.encode(), encode(r)) for r in results]
    )


async def log_until(client: httpx.AsyncClient, kind: str) -> list[dict[str, Any]]:
    for _ in range(400):
        entries: list[dict[str, Any]] = (await client.get("/v1/log", params={"limit": 1000})).json()
        if any(e["kind"] == kind for e in entries):
            return entries
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {kind} entry in {[e['kind'] for e in entries]}")


async def read_topic(bus: Bus, wanted: int) -> list[ImprovementLogEntry | NonconformityChanged]:
    """Everything on the nonconformities topic, once ``wanted`` log entries are there."""
    found: list[ImprovementLogEntry | NonconformityChanged] = []
    consumer = bus.consumer([bus.topics.nonconformities], group_id=f"reader-{uuid.uuid4().hex}")
    await consumer.start()
    try:
        for _ in range(200):
            for record in await consumer.poll(timeout_s=0.2, max_records=1000):
                found.append(decode_nonconformity_message(record.value))
            if sum(isinstance(m, ImprovementLogEntry) for m in found) >= wanted:
                break
    finally:
        await consumer.stop()
    return found


async def test_every_log_entry_is_published_on_the_nonconformities_topic(
    kafka_bootstrap: str, database_url: str
) -> None:
    settings = Settings(
        bus="kafka",
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:8]}.",
        database_url=fresh_database(database_url),
        group_id=f"alerts-{uuid.uuid4().hex[:8]}",
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        bus: Bus = app.state.bus
        await bus.producer.send(bus.topics.registry, encode(snapshot()), key=SYSTEM.encode())
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://alerts") as client:
            await log_until(client, "objective_changed")
            silence = await client.post(
                "/v1/silences",
                json={
                    "matchers": {"objective_id": "quiet"},
                    "reason": "retraining",
                    "starts_at": FIRST_WINDOW.isoformat(),
                    "expires_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
                },
            )
            assert silence.status_code == 201, silence.text
            await send(
                bus,
                evaluation(EvaluationStatus.BREACH, 0, objective_id="quiet"),  # silenced
                evaluation(EvaluationStatus.INSUFFICIENT_DATA, 1, objective_id="labels"),
                evaluation(EvaluationStatus.BREACH, 1),  # inhibited
                evaluation(EvaluationStatus.BREACH, 2),  # raised
            )
            await log_until(client, "raised")
            expired = await client.post(f"/v1/silences/{silence.json()['id']}/expire")
            assert expired.status_code == 200
            manual = await client.post(
                "/v1/nonconformities",
                json={
                    "source": "complaint",
                    "system_id": SYSTEM,
                    "title": "a customer was refused twice",
                    "classification": "minor",
                },
            )
            ref = manual.json()["reference"]
            for to, fields in [
                ("triaged", {}),
                ("contained", {"containment": "manual review"}),
                ("cause_analysed", {"root_cause_method": "other", "root_cause": "typo"}),
            ]:
                moved = await client.post(
                    f"/v1/nonconformities/{ref}/transitions", json={"to": to, **fields}
                )
                assert moved.status_code == 200, moved.text
            action = await client.post(
                f"/v1/nonconformities/{ref}/actions",
                json={"description": "fix", "owner": "olivia", "due_at": "2030-01-01T00:00:00Z"},
            )
            assert action.status_code == 201
            entries = await log_until(client, "action_planned")
            messages = await read_topic(bus, len(entries))

    kinds = {e["kind"] for e in entries}
    assert {
        "objective_changed", "silence_created", "raise_silenced", "raise_inhibited", "raised",
        "silence_expired", "manual_record", "transition", "action_planned",
    } <= kinds  # fmt: skip
    published = {m.seq: m for m in messages if isinstance(m, ImprovementLogEntry)}
    assert sorted(published) == [e["seq"] for e in entries]
    previous = GENESIS
    for entry in entries:
        message = published[entry["seq"]]
        assert (message.kind, message.subject, message.actor) == (
            entry["kind"],
            entry["subject"],
            entry["actor"],
        )
        assert (message.before, message.after) == (entry["before"], entry["after"])
        assert (message.prev_hash, message.hash) == (previous, entry["hash"])
        canonical = canonical_entry(
            seq=message.seq,
            at=message.at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds"),
            actor=message.actor,
            kind=message.kind,
            subject=message.subject,
            before=message.before,
            after=message.after,
        )
        assert chain_hash(previous, canonical) == message.hash  # verifiable from the topic alone
        previous = message.hash
    record_ids = {m.nonconformity_id for m in messages if isinstance(m, NonconformityChanged)}
    assert {m.nonconformity_id for m in published.values() if m.nonconformity_id} == record_ids


def test_the_topic_tells_its_two_messages_apart() -> None:
    """A NonconformityChanged written before log entries were published has no ``message``
    field: it still decodes as one."""
    change = NonconformityChanged(
        nonconformity_id="nc1",
        fingerprint="fp",
        system_id=SYSTEM,
        objective_id="acc",
        objective_version=1,
        severity="minor",
        status="raised",
        change="raised",
        occurrences=1,
        occurred_at=FIRST_WINDOW,
    )
    old = {k: v for k, v in change.model_dump(mode="json").items() if k != "message"}
    assert decode_nonconformity_message(orjson.dumps(old)) == change
    entry = ImprovementLogEntry(
        seq=1,
        at=FIRST_WINDOW,
        actor="qm",
        kind="silence_created",
        subject="silence:s1",
        after={"reason": "r"},
        prev_hash=GENESIS,
        hash="a" * 64,
    )
    assert decode_nonconformity_message(encode(entry)) == entry
