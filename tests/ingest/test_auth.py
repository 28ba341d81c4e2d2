"""Ingest API keys: scoped to one system, checked only when auth is on (open mode otherwise)."""

from __future__ import annotations

import asyncio

from shared.auth import generate_api_key
from tests.factories import make_prediction
from tests.ingest.conftest import AUTH_SECRET, MakeIngest, publish_system


async def test_open_mode_needs_no_key(make_ingest: MakeIngest) -> None:
    async with make_ingest() as ingest:
        response = await ingest.client.post(
            "/v1/predictions", json=make_prediction(ingest.system_id)
        )
        assert response.status_code == 202, response.text


async def test_keys_are_required_and_scoped_to_their_system(make_ingest: MakeIngest) -> None:
    key, key_hash = generate_api_key()
    other_key, other_hash = generate_api_key()
    async with make_ingest(
        auth_secret=AUTH_SECRET, system={"ingest_key_hashes": [key_hash]}
    ) as ingest:
        await publish_system(ingest.bus, "other-system", ingest_key_hashes=[other_hash])
        await asyncio.sleep(0.05)
        event = make_prediction(ingest.system_id)

        missing = await ingest.client.post("/v1/predictions", json=event)
        assert missing.status_code == 401
        assert missing.headers["WWW-Authenticate"] == "Bearer"
        assert "Authorization" in missing.json()["detail"]

        unknown = await ingest.client.post(
            "/v1/predictions", json=event, headers={"Authorization": "Bearer wk_not-a-key"}
        )
        assert unknown.status_code == 401
        assert "Authorization: unknown" in unknown.json()["detail"]

        not_bearer = await ingest.client.post(
            "/v1/predictions", json=event, headers={"Authorization": f"Basic {key}"}
        )
        assert not_bearer.status_code == 401

        foreign = await ingest.client.post(
            "/v1/predictions", json=event, headers={"Authorization": f"Bearer {other_key}"}
        )
        assert foreign.status_code == 403
        [error] = foreign.json()["detail"]
        assert error["field"] == "system_id"
        assert ingest.system_id in error["reason"]

        good = await ingest.client.post(
            "/v1/predictions", json=event, headers={"Authorization": f"Bearer {key}"}
        )
        assert good.status_code == 202, good.text
        assert good.json()["accepted"] == 1


async def test_mixed_batch_keeps_the_systems_events_and_lists_the_others(
    make_ingest: MakeIngest,
) -> None:
    key, key_hash = generate_api_key()
    async with make_ingest(
        auth_secret=AUTH_SECRET, system={"ingest_key_hashes": [key_hash]}
    ) as ingest:
        await publish_system(ingest.bus, "neighbour")
        await asyncio.sleep(0.05)
        events = [make_prediction(ingest.system_id), make_prediction("neighbour")]
        response = await ingest.client.post(
            "/v1/predictions", json=events, headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status_code == 202
        body = response.json()
        assert body["accepted"] == 1
        assert body["rejected"] == [
            {
                "index": 1,
                "field": "system_id",
                "reason": "the API key is not valid for system 'neighbour'",
            }
        ]


async def test_a_revoked_key_stops_working(make_ingest: MakeIngest) -> None:
    key, key_hash = generate_api_key()
    async with make_ingest(
        auth_secret=AUTH_SECRET, system={"ingest_key_hashes": [key_hash]}
    ) as ingest:
        headers = {"Authorization": f"Bearer {key}"}
        event = make_prediction(ingest.system_id)
        assert (
            await ingest.client.post("/v1/predictions", json=event, headers=headers)
        ).status_code == 202
        await publish_system(ingest.bus, ingest.system_id, ingest_key_hashes=[])
        for _ in range(100):
            answer = await ingest.client.post(
                "/v1/predictions", json=make_prediction(ingest.system_id), headers=headers
            )
            if answer.status_code == 401:
                break
            await asyncio.sleep(0.02)
        assert answer.status_code == 401
