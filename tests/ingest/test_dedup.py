"""Duplicate event_ids are accepted once within the label horizon; the answer names them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from services.ingest.app import create_app
from services.ingest.settings import Settings
from shared.bus import MemoryBus
from tests.factories import event_values, make_outcome, make_prediction
from tests.ingest.conftest import MakeIngest, publish_system


def ids(values: list[bytes]) -> list[str]:
    return [orjson.loads(v)["event_id"] for v in values]


async def test_a_resent_batch_is_reported_as_duplicates(make_ingest: MakeIngest) -> None:
    async with make_ingest() as ingest:
        events = [make_prediction(ingest.system_id) for _ in range(3)]
        first = await ingest.client.post("/v1/predictions", json=events)
        assert first.json() == {"accepted": 3, "duplicates": [], "rejected": []}
        again = await ingest.client.post(
            "/v1/predictions", json=[*events, make_prediction(ingest.system_id)]
        )
        assert again.status_code == 202
        assert again.json()["accepted"] == 1
        assert again.json()["duplicates"] == [e["event_id"] for e in events]
        assert len(await ingest.topic_values()) == 4


async def test_repeats_within_one_request_count_once(make_ingest: MakeIngest) -> None:
    async with make_ingest() as ingest:
        event = make_prediction(ingest.system_id)
        response = await ingest.client.post("/v1/predictions", json=[event, event, event])
        assert response.json() == {
            "accepted": 1,
            "duplicates": [event["event_id"], event["event_id"]],
            "rejected": [],
        }
        assert ids(await ingest.topic_values()) == [event["event_id"]]


async def test_outcomes_are_deduplicated_apart_from_predictions(make_ingest: MakeIngest) -> None:
    async with make_ingest() as ingest:
        prediction = make_prediction(ingest.system_id, event_id="shared-id")
        outcome = {**make_outcome(ingest.system_id, "shared-id", 1), "event_id": "shared-id"}
        assert (await ingest.client.post("/v1/predictions", json=prediction)).json()[
            "accepted"
        ] == 1
        assert (await ingest.client.post("/v1/outcomes", json=outcome)).json()["accepted"] == 1
        resent = await ingest.client.post("/v1/outcomes", json=outcome)
        assert resent.json()["duplicates"] == ["shared-id"]


async def test_duplicates_are_known_after_a_restart(tmp_path: Path) -> None:
    bus = MemoryBus()
    await bus.start()
    await publish_system(bus, "restart-sys")
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'ingest.db'}")
    event = make_prediction("restart-sys")
    try:
        for expected in (
            {"accepted": 1, "duplicates": []},
            {"accepted": 0, "duplicates": [event["event_id"]]},
        ):
            app = create_app(settings, bus=bus)
            async with app.router.lifespan_context(app):
                await app.state.ingest.view.wait_loaded(5)
                import httpx

                async with httpx.AsyncClient(
                    transport=httpx.ASGITransport(app), base_url="http://i"
                ) as client:
                    body = (await client.post("/v1/predictions", json=event)).json()
            assert {k: body[k] for k in expected} == expected
    finally:
        await bus.stop()


async def test_two_instances_on_postgresql_deliver_each_event_once(
    database_url: str, tmp_path: Path
) -> None:
    """Two ingest instances sharing the database, the same batch sent to both at once and
    retried until each answered 202: every event is on the topic exactly once."""
    import httpx

    bus = MemoryBus()
    await bus.start()
    await publish_system(bus, "pg-sys")
    settings = Settings(database_url=database_url, dedup_heartbeat_s=0.05)
    apps = [create_app(settings, bus=bus) for _ in range(2)]
    events = [make_prediction("pg-sys") for _ in range(40)]
    try:
        async with (
            apps[0].router.lifespan_context(apps[0]),
            apps[1].router.lifespan_context(apps[1]),
        ):
            for app in apps:
                await app.state.ingest.view.wait_loaded(5)

            async def send_until_202(app: object) -> dict[str, object]:
                async with httpx.AsyncClient(
                    transport=httpx.ASGITransport(app), base_url="http://i"
                ) as client:  # type: ignore[arg-type]
                    for _ in range(200):
                        response = await client.post("/v1/predictions", json=events)
                        if response.status_code == 202:
                            body: dict[str, object] = response.json()
                            return body
                        assert response.status_code == 503, response.text
                        await asyncio.sleep(0.05)
                raise AssertionError("never accepted")

            answers = await asyncio.gather(*(send_until_202(app) for app in apps))
        accepted = sum(int(a["accepted"]) for a in answers)  # type: ignore[call-overload]
        assert accepted == len(events)
        consumer = bus.consumer([bus.topics.predictions], group_id=None)
        await consumer.start()
        records = await consumer.poll(timeout_s=0.2, max_records=1000)
        await consumer.stop()
        assert sorted(ids(event_values(records))) == sorted(e["event_id"] for e in events)
    finally:
        await bus.stop()
