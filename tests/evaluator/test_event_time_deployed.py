"""A far-future event written straight to the predictions topic (a producer other than ingest)
reaches a running evaluator, embedded and on Kafka + PostgreSQL: it is refused and counted, and
the system's present-day predictions after it are still evaluated, not late."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from shared.auth import Role
from tests.deployments import Deployment, monitor_one_window, post_until_accepted
from tests.factories import make_objective, make_prediction, make_system, past_window_start


async def _stream(
    deployment: Deployment, client: httpx.AsyncClient, system_id: str, done: Any
) -> dict[str, Any]:
    """The system's stream state once ``done(state)`` holds (30 s at most)."""
    deadline = time.monotonic() + 30
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = await client.get(
            deployment.url("evaluator", f"/v1/streams/{system_id}"),
            headers=deployment.as_user(Role.SRE),
        )
        if response.status_code == 200:
            state = response.json()
            if done(state):
                return state
        await asyncio.sleep(0.2)
    raise AssertionError(f"stream state never as expected: {state}")


async def test_a_far_future_event_on_the_bus_is_refused_by_a_running_evaluator(
    deployment: Deployment,
) -> None:
    system = make_system()
    sid = system["id"]
    objective = make_objective(threshold=0.8, window_seconds=60, min_samples=10)
    async with httpx.AsyncClient(timeout=30) as client:
        # a first window evaluated: the evaluator knows the system (and idle-closed it to now)
        await monitor_one_window(
            deployment,
            client,
            system=system,
            objective=objective,
            actuals=[1] * 20,
            start=past_window_start(60),
        )
        future = make_prediction(sid, ts=datetime(2200, 1, 1, tzinfo=UTC))
        topics = deployment.bus.topics
        await deployment.bus.producer.send(
            topics.predictions, orjson.dumps(future), key=sid.encode()
        )
        state = await _stream(
            deployment, client, sid, lambda s: s["counters"].get("future_predictions") == 1
        )
        assert state["prediction_watermark"] < time.time() + 300
        # a present-day prediction after it is applied, not late
        key = await deployment.ingest_key(client, sid)
        response = await post_until_accepted(
            client, deployment.url("ingest", "/v1/predictions"), [make_prediction(sid)], key
        )
        assert response.status_code == 202, response.text
        state = await _stream(
            deployment, client, sid, lambda s: s["counters"].get("predictions") == 21
        )
        assert state["counters"].get("late_predictions", 0) == 0
        metrics = (await client.get(deployment.url("evaluator", "/metrics"))).text
        assert (
            "watchkeeper_evaluator_refused_events_total"
            f'{{kind="prediction",reason="future",system="{sid}"}} 1.0' in metrics
        )
        assert f'watchkeeper_evaluator_late_predictions_total{{system="{sid}"}} 0.0' in metrics
