"""The embedded platform with credentials on (issue 10, defect 2): the evaluator reads the
reference profiles from the in-process registry with a service token."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import numpy as np

from shared.auth import Role
from shared.contracts import EvaluationStatus
from tests.deployments import post_until_accepted
from tests.factories import make_income_drift_case, make_prediction, past_window_start

from .harness import embedded, evaluations_where


async def test_drift_is_evaluated_against_the_reference_with_credentials_on(
    tmp_path: Path, auth_on: str
) -> None:
    rng = np.random.default_rng(5)
    system, reference, objective = make_income_drift_case(rng, 1_000)
    objective.pop("changed_by")
    start = past_window_start(60)
    async with embedded(tmp_path, auth_secret=auth_on) as deployment:
        engineer = deployment.as_user(Role.ML_ENGINEER)
        async with httpx.AsyncClient(timeout=30, headers=engineer) as client:
            response = await client.post(deployment.url("registry", "/v1/systems"), json=system)
            assert response.status_code == 201, response.text
            response = await client.post(
                deployment.url("registry", f"/v1/systems/{system['id']}/references"),
                params={"filename": "reference.csv"},
                content=reference.to_csv(index=False).encode(),
                headers={"Content-Type": "text/csv"},
            )
            assert response.status_code == 201, response.text
            response = await client.post(
                deployment.url("registry", f"/v1/systems/{system['id']}/objectives"),
                json=objective,
            )
            assert response.status_code == 201, response.text
            key = await deployment.ingest_key(client, system["id"])
            predictions = [
                make_prediction(
                    system["id"],
                    ts=start + timedelta(seconds=i * 0.5),
                    features={"income": float(x), "region": "north"},
                )
                for i, x in enumerate(rng.normal(60_000, 5_000, 100))
            ]
            response = await post_until_accepted(
                client, deployment.url("ingest", "/v1/predictions"), predictions, key
            )
            assert response.status_code == 202, response.text
        result = await evaluations_where(
            deployment.bus, lambda r: r.system_id == system["id"], timeout_s=30
        )
    assert result.status is EvaluationStatus.BREACH, result.detail
    assert result.n_samples == 100
    assert result.value is not None and result.value > 1.0
