"""On both deployments: ingest refuses events dated outside the skew per event, naming the
limit, answers a whole-batch refusal in the partial-refusal shape, and refuses gzip bodies it
could only read in part (issue 10, defects 3, 6 and 7)."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta

import httpx
import orjson

from shared.auth import Role
from tests.deployments import Deployment, post_until_accepted
from tests.factories import make_prediction, make_system


async def test_deployed_ingest_refuses_hostile_events_and_bodies(deployment: Deployment) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        system = make_system()
        response = await client.post(
            deployment.url("registry", "/v1/systems"),
            json=system,
            headers=deployment.as_user(Role.ML_ENGINEER),
        )
        assert response.status_code == 201, response.text
        key = await deployment.ingest_key(client, system["id"])
        url = deployment.url("ingest", "/v1/predictions")
        response = await post_until_accepted(client, url, [make_prediction(system["id"])], key)
        assert response.status_code == 202, response.text

        future = make_prediction(system["id"], ts=datetime(2200, 1, 1, tzinfo=UTC))
        ancient = make_prediction(system["id"], ts=datetime.now(UTC) - timedelta(days=400))
        response = await client.post(url, json=[future, ancient], headers=key)
        assert response.status_code == 422, response.text
        listed = [
            {
                "index": 0,
                "field": "timestamp",
                "reason": "more than 3600 s in the future (max_future_skew_s)",
            },
            {
                "index": 1,
                "field": "timestamp",
                "reason": "older than 1209600 s (label_horizon_seconds 604800 s + "
                "backfill_allowance_s 604800 s)",
            },
        ]
        assert response.json() == {
            "accepted": 0,
            "duplicates": [],
            "rejected": listed,
            "detail": listed,
        }

        body = gzip.compress(orjson.dumps([make_prediction(system["id"])]))
        response = await client.post(
            url,
            content=body + body,
            headers={**key, "Content-Encoding": "gzip", "Content-Type": "application/json"},
        )
        assert response.status_code == 400, response.text
        assert "second gzip member" in response.json()["detail"]
