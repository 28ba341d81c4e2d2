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


async def test_one_objective_file_applies_to_many_systems(registry: Registry) -> None:
    """Objective ids are scoped by system (/systems/{id}/objectives/{oid}): a template of
    objectives applies to every system, each getting its own versions."""
    first = declaration()
    await apply(registry, first)
    second = declaration()
    second["objectives"] = copy.deepcopy(first["objectives"])
    second["objectives"][1]["threshold"] = 0.9
    ids = [o["id"] for o in first["objectives"]]
    result = await apply(registry, second)
    assert result["objectives"] == dict.fromkeys(ids, "created")
    assert result["versions"] == dict.fromkeys(ids, 1)
    for document, threshold in ((first, 0.8), (second, 0.9)):
        system_id = document["system"]["id"]
        base = f"/v1/systems/{system_id}/objectives"
        listed = (await registry.client.get(base)).json()
        assert sorted(o["id"] for o in listed) == sorted(ids)
        current = (await registry.client.get(f"{base}/{ids[1]}")).json()
        assert (current["system_id"], current["threshold"], current["version"]) == (
            system_id,
            threshold,
            1,
        )
        history = (await registry.client.get(f"{base}/{ids[1]}/history")).json()
        assert [v["version"] for v in history] == [1]
    again = await apply(registry, first)
    assert again["objectives"] == dict.fromkeys(ids, "unchanged")
    # the same id created by hand under a third system
    third = make_system()
    assert (await registry.client.post("/v1/systems", json=third)).status_code == 201
    objective = {k: v for k, v in first["objectives"][1].items()} | {"changed_by": "carol"}
    response = await registry.client.post(f"/v1/systems/{third['id']}/objectives", json=objective)
    assert response.status_code == 201, response.text
