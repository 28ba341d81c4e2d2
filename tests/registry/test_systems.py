"""AI systems and model versions: CRUD on SQLite and PostgreSQL, and what the snapshot says."""

from __future__ import annotations

from typing import Any

from tests.factories import make_objective, make_system, unique
from tests.registry.conftest import Registry


def full_system(system_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    return make_system(
        system_id,
        intended_purpose="Pre-screen consumer loan applications",
        risk_level="high",
        prediction={"classes": ["0", "1"], "scores": ["1"]},
        attributes=["gender", "age_band"],
        label_horizon_seconds=3 * 24 * 3600,
        **overrides,
    )


def without_id(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "id"}


async def test_create_read_list(registry: Registry) -> None:
    body = full_system()
    response = await registry.client.post("/v1/systems", json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["status"] == "active"
    assert created["risk_level"] == "high"
    assert created["prediction"] == {"classes": ["0", "1"], "scores": ["1"]}
    assert created["attributes"] == ["gender", "age_band"]
    assert created["reference_hash"] is None

    read = (await registry.client.get(f"/v1/systems/{body['id']}")).json()
    assert read == created
    listed = (await registry.client.get("/v1/systems")).json()
    assert body["id"] in [s["id"] for s in listed]

    snapshot = (await registry.client.get(f"/v1/systems/{body['id']}/snapshot")).json()
    assert snapshot["label_horizon_seconds"] == 3 * 24 * 3600
    assert [f["name"] for f in snapshot["features"]] == ["income", "region", "existing_customer"]


async def test_defaults_label_horizon_to_seven_days(registry: Registry) -> None:
    body = make_system()
    body.pop("label_horizon_seconds", None)
    response = await registry.client.post("/v1/systems", json=body)
    assert response.json()["label_horizon_seconds"] == 7 * 24 * 3600


async def test_duplicate_id_is_a_conflict(registry: Registry) -> None:
    body = make_system()
    assert (await registry.client.post("/v1/systems", json=body)).status_code == 201
    response = await registry.client.post("/v1/systems", json=body)
    assert response.status_code == 409
    assert body["id"] in response.json()["detail"]


async def test_unknown_system_is_404(registry: Registry) -> None:
    response = await registry.client.get(f"/v1/systems/{unique('missing')}")
    assert response.status_code == 404


async def test_inconsistent_schemas_are_refused_naming_the_field(registry: Registry) -> None:
    cases = [
        (make_system(prediction={"classes": ["a", "b", "c"]}), "two classes"),
        (make_system(prediction={"classes": ["0", "1"], "scores": ["2"]}), "not among"),
        (make_system(task="regression", prediction={"classes": ["0", "1"]}), "regression"),
        (
            make_system(features=[{"name": "x", "type": "numeric"}] * 2),
            "declared more than once",
        ),
        (make_system(features=[{"name": "x", "type": "numeric", "min": 2, "max": 1}]), "min"),
        (make_system(risk_level="extreme"), "risk_level"),
    ]
    for body, fragment in cases:
        response = await registry.client.post("/v1/systems", json=body)
        assert response.status_code == 422, body
        assert fragment in response.text


async def test_update_replaces_the_definition_and_publishes(registry: Registry) -> None:
    body = full_system()
    await registry.add_system(body)
    change = without_id(body) | {"owner": "new-owner@example.org", "attributes": ["gender"]}
    response = await registry.client.put(f"/v1/systems/{body['id']}", json=change)
    assert response.status_code == 200, response.text
    assert response.json()["owner"] == "new-owner@example.org"
    snapshot = (await registry.client.get(f"/v1/systems/{body['id']}/snapshot")).json()
    assert snapshot["owner"] == "new-owner@example.org"


async def test_retire(registry: Registry) -> None:
    body = make_system()
    await registry.add_system(body)
    response = await registry.client.put(
        f"/v1/systems/{body['id']}", json=without_id(body) | {"status": "retired"}
    )
    assert response.json()["status"] == "retired"
    snapshot = (await registry.client.get(f"/v1/systems/{body['id']}/snapshot")).json()
    assert snapshot["status"] == "retired"


async def test_update_that_would_break_an_objective_is_refused(registry: Registry) -> None:
    body = make_system()
    await registry.add_system(body)
    objective = make_objective(metric="psi", parameters={"feature": "income"})
    response = await registry.client.post(f"/v1/systems/{body['id']}/objectives", json=objective)
    assert response.status_code == 201, response.text
    change = without_id(body) | {"features": [{"name": "region", "type": "categorical"}]}
    response = await registry.client.put(f"/v1/systems/{body['id']}", json=change)
    assert response.status_code == 422
    assert objective["id"] in response.text and "income" in response.text
    still = (await registry.client.get(f"/v1/systems/{body['id']}")).json()
    assert [f["name"] for f in still["features"]] == ["income", "region", "existing_customer"]


async def test_task_cannot_change(registry: Registry) -> None:
    body = make_system()
    await registry.add_system(body)
    response = await registry.client.put(
        f"/v1/systems/{body['id']}", json=without_id(body) | {"task": "regression"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "task"]


async def test_model_versions(registry: Registry) -> None:
    body = make_system()
    await registry.add_system(body)
    url = f"/v1/systems/{body['id']}/model-versions"
    first = {"version": "v1", "notes": "baseline", "artifact_hash": "sha256:" + "a" * 64}
    response = await registry.client.post(url, json=first)
    assert response.status_code == 201, response.text
    assert response.json()["registered_by"] == "anonymous"
    assert (await registry.client.post(url, json={"version": "v2"})).status_code == 201
    assert (await registry.client.post(url, json={"version": "v1"})).status_code == 409
    listed = (await registry.client.get(url)).json()
    assert [(m["version"], m["notes"], m["artifact_hash"]) for m in listed] == [
        ("v1", "baseline", "sha256:" + "a" * 64),
        ("v2", "", None),
    ]
    assert all(m["registered_at"] for m in listed)
