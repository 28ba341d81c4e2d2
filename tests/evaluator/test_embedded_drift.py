"""Drift objectives on the embedded deployment (``watchkeeper up``): the evaluator reads the
reference profile from the registry app in the same process, and judges a shifted window."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import numpy as np

from shared.contracts import EvaluationStatus
from tests.deployments import embedded_deployment, next_evaluation, post_until_accepted
from tests.factories import make_income_drift_case, make_prediction, past_window_start


async def test_a_shifted_window_breaches_psi_against_the_uploaded_reference(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(3)
    system, reference, objective = make_income_drift_case(rng, 2_000)
    start = past_window_start(60)
    async with (
        embedded_deployment(tmp_path) as deployment,
        httpx.AsyncClient(timeout=30) as client,
    ):
        response = await client.post(deployment.url("registry", "/v1/systems"), json=system)
        assert response.status_code == 201, response.text
        response = await client.post(
            deployment.url("registry", f"/v1/systems/{system['id']}/references"),
            params={"filename": "reference.csv"},
            content=reference.to_csv(index=False).encode(),
            headers={"Content-Type": "text/csv"},
        )
        assert response.status_code == 201, response.text
        reference_hash = response.json()["hash"]
        response = await client.post(
            deployment.url("registry", f"/v1/systems/{system['id']}/objectives"), json=objective
        )
        assert response.status_code == 201, response.text
        # one window whose income sits two standard deviations above the reference's
        predictions = [
            make_prediction(
                system["id"],
                ts=start + timedelta(seconds=i * 0.5),
                features={"income": float(x), "region": "north"},
            )
            for i, x in enumerate(rng.normal(60_000, 5_000, 100))
        ]
        response = await post_until_accepted(
            client, deployment.url("ingest", "/v1/predictions"), predictions, {}
        )
        assert response.status_code == 202, response.text
        result = await next_evaluation(deployment, system["id"])
    assert result.objective_id == objective["id"]
    assert result.status is EvaluationStatus.BREACH, result.detail
    assert result.value is not None and result.value > 1.0
    assert result.n_samples == 100
    assert result.evidence.reference_hash == reference_hash
