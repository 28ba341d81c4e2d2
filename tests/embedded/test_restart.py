"""`watchkeeper up` on an existing data dir: what was registered and accepted before a clean
restart still counts (issue 10, defect 1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.auth import Role
from shared.contracts import EvaluationResult, EvaluationStatus
from tests.deployments import Deployment, post_until_accepted
from tests.factories import make_objective, make_outcome, make_prediction, make_system

from .harness import embedded, evaluations_where

WINDOW_S = 10


def window_start(ago_s: float) -> datetime:
    epoch = int(datetime.now(UTC).timestamp() - ago_s) // WINDOW_S * WINDOW_S
    return datetime.fromtimestamp(epoch, UTC)


async def send_window(
    deployment: Deployment,
    client: httpx.AsyncClient,
    key: dict[str, str],
    system_id: str,
    start: datetime,
    actuals: list[Any],
    *,
    retry: bool,
) -> EvaluationResult:
    """Outcomes, then predictions (each predicting 1) inside one window; its evaluation."""
    predictions = [
        make_prediction(system_id, ts=start + timedelta(seconds=i * 0.1), prediction=1)
        for i in range(len(actuals))
    ]
    outcomes = [
        make_outcome(system_id, p["event_id"], actual, ts=start)
        for p, actual in zip(predictions, actuals, strict=True)
    ]
    for path, events in (("/v1/outcomes", outcomes), ("/v1/predictions", predictions)):
        url = deployment.url("ingest", path)
        if retry:  # ingest hears of a new system (and key) from the registry topic
            response = await post_until_accepted(client, url, events, key)
        else:
            response = await client.post(url, json=events, headers=key)
        assert response.status_code == 202, response.text
        assert response.json()["accepted"] == len(events)
    return await evaluations_where(
        deployment.bus, lambda r: r.system_id == system_id and r.window_start == start
    )


@pytest.mark.parametrize("credentials", ["open", "auth"])
async def test_a_restarted_platform_accepts_and_evaluates_the_systems_registered_before(
    tmp_path: Path, credentials: str, request: pytest.FixtureRequest
) -> None:
    secret = request.getfixturevalue("auth_on") if credentials == "auth" else None
    system = make_system()
    objective = make_objective(threshold=0.8, window_seconds=WINDOW_S, min_samples=10)
    async with httpx.AsyncClient(timeout=30) as client:
        async with embedded(tmp_path, auth_secret=secret) as before:
            engineer = before.as_user(Role.ML_ENGINEER)
            if engineer:
                objective.pop("changed_by")
            for path, body in (
                ("/v1/systems", system),
                (f"/v1/systems/{system['id']}/objectives", objective),
            ):
                response = await client.post(
                    before.url("registry", path), json=body, headers=engineer
                )
                assert response.status_code == 201, response.text
            key = await before.ingest_key(client, system["id"])
            first = await send_window(
                before, client, key, system["id"], window_start(600), [1] * 15 + [0] * 5, retry=True
            )
        assert first.value == 0.75

        async with embedded(tmp_path, auth_secret=secret) as after:
            # ready means ready: the system and its ingest key are accepted at once, and the
            # events accepted after the restart are evaluated (none skipped)
            second = await send_window(
                after, client, key, system["id"], window_start(0), [1] * 20, retry=False
            )
    assert second.status is EvaluationStatus.PASS
    assert second.n_samples == 20
    assert second.value == 1.0
