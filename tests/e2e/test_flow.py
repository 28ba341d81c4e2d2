"""One prediction stream travelling the whole platform: registry -> ingest -> evaluator ->
alerts, over HTTP, on the embedded default and on real Kafka + PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import httpx

from shared.auth import Role
from shared.contracts import EvaluationStatus
from tests.deployments import Deployment, monitor_one_window
from tests.factories import (
    make_objective,
    make_system,
    past_window_start,
)


async def test_breach_becomes_a_nonconformity(deployment: Deployment) -> None:
    system = make_system()
    objective = make_objective(threshold=0.8, window_seconds=60, min_samples=10)
    start = past_window_start(60)
    async with httpx.AsyncClient(timeout=30) as client:
        # every prediction is 1; 24 of 40 are wrong: accuracy 0.4, below the 0.8 objective
        result = await monitor_one_window(
            deployment,
            client,
            system=system,
            objective=objective,
            actuals=[1] * 16 + [0] * 24,
            start=start,
        )
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
                headers=deployment.as_user(Role.QUALITY_MANAGER),
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
        result = await monitor_one_window(
            deployment, client, system=system, objective=objective, actuals=[1] * 20, start=start
        )
        assert result.status is EvaluationStatus.PASS
        assert result.value == 1.0
        await asyncio.sleep(1.0)
        response = await client.get(
            deployment.url("alerts", "/v1/nonconformities"),
            params={"system_id": system["id"]},
            headers=deployment.as_user(Role.AUDITOR),
        )
        assert response.json() == []
