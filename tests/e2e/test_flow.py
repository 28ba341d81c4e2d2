"""One prediction stream travelling the whole platform: registry -> ingest -> evaluator ->
alerts, over HTTP, on the embedded default and on real Kafka + PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import httpx

from shared.contracts import EvaluationStatus
from tests.deployments import Deployment, next_evaluation, post_until_accepted
from tests.factories import (
    make_objective,
    make_outcome,
    make_prediction,
    make_system,
    past_window_start,
)


async def test_breach_becomes_a_nonconformity(deployment: Deployment) -> None:
    system = make_system()
    objective = make_objective(threshold=0.8, window_seconds=60, min_samples=10)
    start = past_window_start(60)
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(deployment.url("registry", "/v1/systems"), json=system)
        assert response.status_code == 201, response.text
        response = await client.post(
            deployment.url("registry", f"/v1/systems/{system['id']}/objectives"), json=objective
        )
        assert response.status_code == 201, response.text

        predictions = [
            make_prediction(system["id"], ts=start + timedelta(seconds=i), prediction=1)
            for i in range(40)
        ]
        # 24 of 40 predictions wrong: accuracy 0.4, below the 0.8 objective.
        outcomes = [
            make_outcome(system["id"], p["event_id"], 1 if i < 16 else 0, ts=start)
            for i, p in enumerate(predictions)
        ]
        # Labels first: a window closes once its predictions went quiet, so sending the
        # outcomes first makes the first evaluation of the window a complete one.
        response = await post_until_accepted(
            client, deployment.url("ingest", "/v1/outcomes"), outcomes
        )
        assert response.status_code == 202, response.text
        response = await client.post(deployment.url("ingest", "/v1/predictions"), json=predictions)
        assert response.status_code == 202, response.text
        assert response.json()["accepted"] == 40

        result = await next_evaluation(deployment, system["id"])
        assert result.objective_id == objective["id"]
        assert result.objective_version == 1
        assert result.status is EvaluationStatus.BREACH
        assert result.value == 0.4
        assert result.n_samples == 40
        assert result.label_coverage == 1.0
        assert result.window_start == start
        assert result.window_end == start + timedelta(seconds=60)
        assert result.evidence.objective_version == 1
        assert {r.topic for r in result.evidence.offsets} == {
            deployment.bus.topics.predictions,
            deployment.bus.topics.outcomes,
        }

        deadline = time.monotonic() + 30
        ncs: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not ncs:
            response = await client.get(
                deployment.url("alerts", "/v1/nonconformities"),
                params={"system_id": system["id"]},
            )
            assert response.status_code == 200
            ncs = response.json()
            await asyncio.sleep(0.2)
        assert len(ncs) == 1, deployment.log_tail() if deployment.logs else ncs
        nc = ncs[0]
        assert nc["objective_id"] == objective["id"]
        assert nc["severity"] == "major"
        assert nc["status"] == "raised"
        assert nc["first_evaluation_id"] == result.id
        assert nc["last_value"] == 0.4


async def test_passing_window_raises_nothing(deployment: Deployment) -> None:
    system = make_system()
    objective = make_objective(threshold=0.8, window_seconds=60, min_samples=10)
    start = past_window_start(60, minutes_ago=20)
    async with httpx.AsyncClient(timeout=30) as client:
        await client.post(deployment.url("registry", "/v1/systems"), json=system)
        await client.post(
            deployment.url("registry", f"/v1/systems/{system['id']}/objectives"), json=objective
        )
        predictions = [
            make_prediction(system["id"], ts=start + timedelta(seconds=i)) for i in range(20)
        ]
        outcomes = [make_outcome(system["id"], p["event_id"], 1) for p in predictions]
        response = await post_until_accepted(
            client, deployment.url("ingest", "/v1/outcomes"), outcomes
        )
        assert response.status_code == 202, response.text
        response = await client.post(deployment.url("ingest", "/v1/predictions"), json=predictions)
        assert response.status_code == 202, response.text
        result = await next_evaluation(deployment, system["id"])
        assert result.status is EvaluationStatus.PASS
        assert result.value == 1.0
        await asyncio.sleep(1.0)
        response = await client.get(
            deployment.url("alerts", "/v1/nonconformities"), params={"system_id": system["id"]}
        )
        assert response.json() == []
