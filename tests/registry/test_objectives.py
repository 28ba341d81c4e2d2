"""Objectives (ISO/IEC 42001 6.2): validated against the metric catalog, versioned on change."""

from __future__ import annotations

from typing import Any

from tests.factories import make_objective, make_system
from tests.registry.conftest import Registry


async def new_system(registry: Registry, **overrides: Any) -> str:
    return await registry.add_system(make_system(**overrides))


def update_of(objective: dict[str, Any], **changes: Any) -> dict[str, Any]:
    body = {k: v for k, v in objective.items() if k != "id"}
    return body | changes


async def test_update_adds_a_version_and_history_keeps_both(registry: Registry) -> None:
    system_id = await new_system(registry)
    objective = make_objective(threshold=0.8, changed_by="alice")
    url = f"/v1/systems/{system_id}/objectives"
    created = await registry.client.post(url, json=objective)
    assert created.status_code == 201, created.text
    assert created.json()["version"] == 1

    change = update_of(
        objective, threshold=0.85, changed_by="bob", change_reason="regulator asked for 85 %"
    )
    updated = await registry.client.put(f"{url}/{objective['id']}", json=change)
    assert updated.status_code == 200, updated.text
    assert updated.json()["version"] == 2

    history = (await registry.client.get(f"{url}/{objective['id']}/history")).json()
    versions = [
        (h["version"], h["threshold"], h["changed_by"], h["change_reason"]) for h in history
    ]
    assert versions == [
        (1, 0.8, "alice", "created"),
        (2, 0.85, "bob", "regulator asked for 85 %"),
    ]
    assert history[0]["changed_at"] <= history[1]["changed_at"]
    old = (await registry.client.get(f"{url}/{objective['id']}/versions/1")).json()
    assert old["threshold"] == 0.8
    current = (await registry.client.get(url)).json()
    assert [(o["id"], o["version"]) for o in current] == [(objective["id"], 2)]
    snapshot = (await registry.client.get(f"/v1/systems/{system_id}/snapshot")).json()
    assert [(o["id"], o["version"], o["threshold"]) for o in snapshot["objectives"]] == [
        (objective["id"], 2, 0.85)
    ]


async def test_update_needs_a_reason_and_a_who(registry: Registry) -> None:
    system_id = await new_system(registry)
    objective = make_objective()
    url = f"/v1/systems/{system_id}/objectives"
    await registry.client.post(url, json=objective)
    no_reason = update_of(objective, threshold=0.9)
    response = await registry.client.put(f"{url}/{objective['id']}", json=no_reason)
    assert response.status_code == 422
    assert "change_reason" in response.text
    nobody = update_of(objective, threshold=0.9, change_reason="x")
    nobody.pop("changed_by")
    response = await registry.client.put(f"{url}/{objective['id']}", json=nobody)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "changed_by"]


async def test_duplicate_and_foreign_objectives(registry: Registry) -> None:
    system_id = await new_system(registry)
    other_id = await new_system(registry)
    objective = make_objective()
    url = f"/v1/systems/{system_id}/objectives"
    assert (await registry.client.post(url, json=objective)).status_code == 201
    assert (await registry.client.post(url, json=objective)).status_code == 409
    change = update_of(objective, change_reason="x")
    response = await registry.client.put(
        f"/v1/systems/{other_id}/objectives/{objective['id']}", json=change
    )
    assert response.status_code == 404


async def refused(registry: Registry, system_id: str, **objective: Any) -> dict[str, Any]:
    response = await registry.client.post(
        f"/v1/systems/{system_id}/objectives", json=make_objective(**objective)
    )
    assert response.status_code == 422, response.text
    detail: dict[str, Any] = response.json()["detail"][0]
    return detail


async def test_unknown_metric_is_refused_naming_it(registry: Registry) -> None:
    system_id = await new_system(registry)
    detail = await refused(registry, system_id, metric="accuracy_at_k")
    assert detail["loc"] == ["body", "metric"]
    assert "unknown metric 'accuracy_at_k'" in detail["msg"]


async def test_parameter_the_metric_does_not_take_is_refused(registry: Registry) -> None:
    system_id = await new_system(registry)
    detail = await refused(registry, system_id, metric="accuracy", parameters={"feature": "x"})
    assert detail["loc"] == ["body", "parameters", "feature"]
    assert "takes no parameter 'feature'" in detail["msg"]
    detail = await refused(registry, system_id, metric="psi", parameters={"attribute": "gender"})
    assert detail["loc"] == ["body", "parameters", "attribute"]


async def test_parameters_are_checked_against_the_system(registry: Registry) -> None:
    system_id = await new_system(
        registry, attributes=["gender"], prediction={"classes": ["0", "1"]}
    )
    cases: list[tuple[dict[str, Any], list[str], str]] = [
        ({"metric": "psi", "parameters": {"feature": "salary"}}, ["feature"], "no feature"),
        ({"metric": "psi", "parameters": {"binning": "weird"}}, ["binning"], "not one of"),
        ({"metric": "ks", "parameters": {"feature": "region"}}, ["feature"], "numeric"),
        ({"metric": "chisquare", "parameters": {"feature": "income"}}, ["feature"], "categorical"),
        ({"metric": "ks"}, ["feature"], "prediction"),
        ({"metric": "missing_rate"}, ["feature"], "required"),
        (
            {"metric": "demographic_parity_difference", "parameters": {"attribute": "age"}},
            ["attribute"],
            "declares no attribute 'age'",
        ),
        (
            {"metric": "recall", "parameters": {"positive_label": "yes"}},
            ["positive_label"],
            "classes",
        ),
        ({"metric": "latency_percentile", "parameters": {"percentile": "101"}}, ["percentile"], ""),
        ({"metric": "roc_auc"}, [], "prediction.scores"),
        ({"metric": "mae"}, [], "does not apply"),
        (
            {"metric": "accuracy", "parameters": {"min_label_coverage": "1.5"}},
            ["min_label_coverage"],
            "outside [0.0, 1.0]",
        ),
        (
            {"metric": "accuracy", "parameters": {"min_label_coverage": "most"}},
            ["min_label_coverage"],
            "not a number",
        ),
        (
            {"metric": "volume", "parameters": {"min_label_coverage": "0.5"}},
            ["min_label_coverage"],
            "takes no",
        ),
    ]
    for objective, loc, fragment in cases:
        detail = await refused(registry, system_id, **objective)
        expected = ["body", "parameters", *loc] if loc else ["body", "metric"]
        assert detail["loc"] == expected, (objective, detail)
        assert fragment in detail["msg"], (objective, detail)


async def test_valid_parameters_are_accepted(registry: Registry) -> None:
    system_id = await new_system(
        registry, attributes=["gender"], prediction={"classes": ["0", "1"], "scores": ["1"]}
    )
    for objective in (
        {"metric": "psi", "parameters": {"feature": "income", "binning": "reference"}},
        {"metric": "jensenshannon"},
        {"metric": "chisquare", "parameters": {"feature": "region"}},
        {"metric": "dataset_drift_share", "parameters": {"method": "hellinger"}},
        {"metric": "out_of_range_rate", "parameters": {"feature": "income"}},
        {"metric": "unseen_category_rate", "parameters": {"feature": "region"}},
        {
            "metric": "equal_opportunity_difference",
            "parameters": {"attribute": "gender", "positive_label": "1"},
        },
        {"metric": "roc_auc", "comparator": "ge", "threshold": 0.7},
        {"metric": "estimated_accuracy"},
        {"metric": "latency_percentile", "parameters": {"percentile": "99"}},
        {"metric": "accuracy", "parameters": {"min_label_coverage": "0.5"}},
        {
            "metric": "equalized_odds_difference",
            "parameters": {"attribute": "gender", "min_label_coverage": "0.8"},
        },
    ):
        response = await registry.client.post(
            f"/v1/systems/{system_id}/objectives", json=make_objective(**objective)
        )
        assert response.status_code == 201, (objective, response.text)


async def test_retiring_an_objective_is_a_version_too(registry: Registry) -> None:
    system_id = await new_system(registry)
    objective = make_objective()
    url = f"/v1/systems/{system_id}/objectives"
    await registry.client.post(url, json=objective)
    change = update_of(objective, status="retired", change_reason="model decommissioned")
    response = await registry.client.put(f"{url}/{objective['id']}", json=change)
    assert response.json()["status"] == "retired"
    assert response.json()["version"] == 2
    snapshot = (await registry.client.get(f"/v1/systems/{system_id}/snapshot")).json()
    assert snapshot["objectives"][0]["status"] == "retired"
