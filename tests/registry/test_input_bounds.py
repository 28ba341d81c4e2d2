"""Numbers a client sends that are not finite or out of range: a 422 naming the field, never
a 500, a misleading 409 or a stored objective the evaluator cannot judge.

Bodies are serialised with ``json.dumps`` (which writes ``NaN`` and ``Infinity``, as many
clients do); strings such as ``"NaN"`` reach the same float fields through pydantic's coercion.
"""

from __future__ import annotations

import json
from typing import Any

from tests.factories import make_objective, make_system
from tests.registry.conftest import Registry

NAN, INF = float("nan"), float("inf")
DAY = 86_400


async def post(registry: Registry, url: str, body: dict[str, Any]) -> Any:
    return await registry.client.post(
        url, content=json.dumps(body), headers={"Content-Type": "application/json"}
    )


def field_of(response: Any) -> tuple[list[Any], str]:
    assert response.status_code == 422, response.text[:500]
    [detail] = response.json()["detail"]
    return detail["loc"], detail["msg"]


# (field, value, words of the reason)
OBJECTIVE_CASES: list[tuple[str, Any, str]] = [
    ("threshold", NAN, "finite"),
    ("threshold", INF, "finite"),
    ("threshold", -INF, "finite"),
    ("threshold", "NaN", "finite"),
    ("window_seconds", 2**63, "less than or equal to 31622400"),
    ("window_seconds", 366 * DAY + 1, "less than or equal to 31622400"),
    ("min_samples", 2**63, "less than or equal to 1000000000"),
    ("min_samples", 2**31, "less than or equal to 1000000000"),
    ("pending_windows", 2**31, "less than or equal to 1000"),
    ("clearing_windows", 2**63, "less than or equal to 1000"),
]


async def test_objective_numbers_out_of_range_are_422_naming_the_field(
    registry: Registry,
) -> None:
    system_id = await registry.add_system(make_system())
    url = f"/v1/systems/{system_id}/objectives"
    existing = make_objective()
    assert (await post(registry, url, existing)).status_code == 201
    for field, value, reason in OBJECTIVE_CASES:
        loc, msg = field_of(await post(registry, url, make_objective(**{field: value})))
        assert loc == ["body", field], (field, value, loc)
        assert reason in msg, (field, value, msg)
        change = {k: v for k, v in existing.items() if k != "id"}
        change |= {field: value, "change_reason": "try it"}
        response = await registry.client.put(
            f"{url}/{existing['id']}",
            content=json.dumps(change),
            headers={"Content-Type": "application/json"},
        )
        assert field_of(response)[0] == ["body", field], (field, value)
    history = (await registry.client.get(f"{url}/{existing['id']}/history")).json()
    assert [h["version"] for h in history] == [1]
    assert [o["id"] for o in (await registry.client.get(url)).json()] == [existing["id"]]


async def test_bounds_themselves_are_accepted(registry: Registry) -> None:
    system_id = await registry.add_system(make_system(label_horizon_seconds=731 * DAY))
    objective = make_objective(
        threshold=-1e300,
        window_seconds=366 * DAY,
        min_samples=1_000_000_000,
        pending_windows=1000,
        clearing_windows=1000,
    )
    response = await post(registry, f"/v1/systems/{system_id}/objectives", objective)
    assert response.status_code == 201, response.text
    snapshot = (await registry.client.get(f"/v1/systems/{system_id}/snapshot")).json()
    assert snapshot["label_horizon_seconds"] == 731 * DAY
    assert snapshot["objectives"][0]["window_seconds"] == 366 * DAY


async def test_numeric_parameters_must_be_finite(registry: Registry) -> None:
    system_id = await registry.add_system(make_system())
    url = f"/v1/systems/{system_id}/objectives"
    for metric, name, value in [
        ("latency_percentile", "percentile", "nan"),
        ("latency_percentile", "percentile", "NaN"),
        ("label_delay_percentile", "percentile", "inf"),
        ("latency_percentile", "percentile", "1e400"),
        ("dataset_drift_share", "method_threshold", "nan"),
        ("dataset_drift_share", "method_threshold", "-inf"),
    ]:
        objective = make_objective(metric=metric, parameters={name: value})
        loc, msg = field_of(await post(registry, url, objective))
        assert loc == ["body", "parameters", name], (value, loc)
        assert value in msg, msg
    assert (await registry.client.get(url)).json() == []


async def test_system_numbers_out_of_range_are_422_naming_the_field(
    registry: Registry,
) -> None:
    cases: list[tuple[dict[str, Any], list[Any], str]] = [
        ({"label_horizon_seconds": 2**63}, ["label_horizon_seconds"], "63158400"),
        ({"label_horizon_seconds": 2**31}, ["label_horizon_seconds"], "63158400"),
        ({"label_horizon_seconds": 731 * DAY + 1}, ["label_horizon_seconds"], "63158400"),
        (
            {"features": [{"name": "income", "type": "numeric", "min": NAN}]},
            ["features", 0, "min"],
            "finite",
        ),
        (
            {"features": [{"name": "income", "type": "numeric", "max": INF}]},
            ["features", 0, "max"],
            "finite",
        ),
    ]
    for overrides, where, reason in cases:
        body = make_system(**overrides)
        loc, msg = field_of(await post(registry, "/v1/systems", body))
        assert loc == ["body", *where], (overrides, loc)
        assert reason in msg, (overrides, msg)
        assert (await registry.client.get(f"/v1/systems/{body['id']}")).status_code == 404
        existing = await registry.add_system(make_system())
        update = {k: v for k, v in body.items() if k != "id"}
        response = await registry.client.put(
            f"/v1/systems/{existing}",
            content=json.dumps(update),
            headers={"Content-Type": "application/json"},
        )
        assert field_of(response)[0] == ["body", *where], overrides


async def test_a_declaration_with_a_non_finite_threshold_is_refused_whole(
    registry: Registry,
) -> None:
    system = make_system()
    document = {"system": system, "objectives": [make_objective(threshold=NAN)]}
    document["objectives"][0].pop("changed_by")
    document["changed_by"] = "alice"
    loc, msg = field_of(await post(registry, "/v1/apply", document))
    assert loc == ["body", "objectives", 0, "threshold"]
    assert "finite" in msg
    assert (await registry.client.get(f"/v1/systems/{system['id']}")).status_code == 404


async def test_a_definition_too_large_for_one_kafka_record_is_refused(
    registry: Registry,
) -> None:
    """The snapshot is one record of the registry topic; one over Kafka's record limit would
    never be published and would hold back every later snapshot in the outbox."""
    features = [{"name": f"f{i:05d}", "type": "numeric"} for i in range(12_000)]
    body = make_system(features=features)
    loc, msg = field_of(await registry.client.post("/v1/systems", json=body))
    assert loc == ["body", "features"]
    assert "bytes" in msg and "921600" in msg, msg
    assert (await registry.client.get(f"/v1/systems/{body['id']}")).status_code == 404
    document = {"system": body, "changed_by": "alice"}
    loc, _msg = field_of(await registry.client.post("/v1/apply", json=document))
    assert loc == ["body", "system", "features"]
    assert (await registry.client.get(f"/v1/systems/{body['id']}")).status_code == 404

    system_id = await registry.add_system(make_system())
    url = f"/v1/systems/{system_id}/objectives"
    loc, msg = field_of(await post(registry, url, make_objective(rationale="x" * 4001)))
    assert loc == ["body", "rationale"], msg
    references = [f"control {i}" for i in range(101)]
    loc, _msg = field_of(await post(registry, url, make_objective(references=references)))
    assert loc == ["body", "references"]
    loc, _msg = field_of(await post(registry, url, make_objective(owner="o" * 201)))
    assert loc == ["body", "owner"]
