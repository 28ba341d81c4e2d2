"""Monitoring as code over HTTP: one declaration, applied atomically and idempotently."""

from __future__ import annotations

import copy
from typing import Any

from tests.factories import make_system, unique
from tests.registry.conftest import Registry


def declaration() -> dict[str, Any]:
    system = make_system()
    return {
        "system": system,
        "changed_by": "carol",
        "objectives": [
            {
                "id": unique("drift"),
                "metric": "psi",
                "parameters": {"feature": "income"},
                "comparator": "lt",
                "threshold": 0.2,
                "window_seconds": 3600,
                "owner": "ml-team@example.org",
            },
            {
                "id": unique("accuracy"),
                "metric": "accuracy",
                "comparator": "ge",
                "threshold": 0.8,
                "window_seconds": 3600,
                "owner": "quality@example.org",
            },
        ],
    }


async def apply(registry: Registry, document: dict[str, Any], status: int = 200) -> Any:
    response = await registry.client.post("/v1/apply", params={"source": "m.yaml"}, json=document)
    assert response.status_code == status, response.text
    return response.json()


async def snapshots_on_topic(registry: Registry, system_id: str) -> int:
    """Distinct snapshots of the system on the registry topic, once the outbox holds nothing
    unsent (the relay may send a record twice: at-least-once; a resend has the same bytes)."""
    await registry.app.state.relay.drain_once()
    consumer = registry.bus.consumer([registry.bus.topics.registry], group_id=None)
    await consumer.start()
    try:
        records = await consumer.poll(timeout_s=0.2)
    finally:
        await consumer.stop()
    return len({r.value for r in records if r.key == system_id.encode()})


async def test_reapplying_changes_nothing_and_publishes_nothing(registry: Registry) -> None:
    document = declaration()
    system_id = document["system"]["id"]
    first = await apply(registry, document)
    assert first["system"] == "created"
    published = await snapshots_on_topic(registry, system_id)
    assert published == 1  # the system and both objectives: one transaction, one snapshot
    snapshot = await registry.client.get(f"/v1/systems/{system_id}/snapshot")
    again = await apply(registry, document)
    assert again["system"] == "unchanged"
    assert set(again["objectives"].values()) == {"unchanged"}
    assert await snapshots_on_topic(registry, system_id) == published
    after = await registry.client.get(f"/v1/systems/{system_id}/snapshot")
    assert after.json() == snapshot.json()


async def test_renaming_a_feature_and_its_objective_together(registry: Registry) -> None:
    document = declaration()
    await apply(registry, document)
    renamed = copy.deepcopy(document)
    renamed["system"]["features"][0]["name"] = "annual_income"
    renamed["objectives"][0]["parameters"] = {"feature": "annual_income"}
    renamed["reason"] = "feature renamed upstream"
    result = await apply(registry, renamed)
    drift, accuracy = (o["id"] for o in document["objectives"])
    assert result == {
        "system": "updated",
        "objectives": {drift: "updated", accuracy: "unchanged"},
        "versions": {drift: 2, accuracy: 1},
    }
    history = await registry.client.get(
        f"/v1/systems/{document['system']['id']}/objectives/{drift}/history"
    )
    assert [(v["version"], v["change_reason"]) for v in history.json()] == [
        (1, "applied from m.yaml"),
        (2, "feature renamed upstream"),
    ]


async def test_a_declaration_that_breaks_an_objective_changes_nothing(registry: Registry) -> None:
    document = declaration()
    await apply(registry, document)
    broken = copy.deepcopy(document)
    broken["system"]["features"][0]["name"] = "annual_income"  # the drift objective is unchanged
    broken["objectives"][1]["threshold"] = 0.9
    detail = (await apply(registry, broken, status=422))["detail"][0]
    assert document["objectives"][0]["id"] in detail["msg"]
    system = (await registry.client.get(f"/v1/systems/{document['system']['id']}")).json()
    assert system["features"][0]["name"] == "income"
    accuracy = document["objectives"][1]["id"]
    current = await registry.client.get(
        f"/v1/systems/{document['system']['id']}/objectives/{accuracy}"
    )
    assert current.json()["version"] == 1


async def test_objectives_of_another_system_are_refused(registry: Registry) -> None:
    first = declaration()
    await apply(registry, first)
    second = declaration()
    second["objectives"] = first["objectives"][:1]
    detail = (await apply(registry, second, status=422))["detail"][0]
    assert detail["loc"] == ["body", "objectives", first["objectives"][0]["id"]]
    assert "belongs to system" in detail["msg"]
    response = await registry.client.get(f"/v1/systems/{second['system']['id']}")
    assert response.status_code == 404
