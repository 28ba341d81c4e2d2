"""The registry's metrics: counters are counters, and exist at 0 before anything happened."""

from __future__ import annotations

import asyncio

from prometheus_client.parser import text_string_to_metric_families

from tests.factories import make_system
from tests.registry.conftest import Registry


async def scrape(registry: Registry) -> tuple[dict[str, str], dict[tuple[str, str], float]]:
    """(family name → type, (sample name, sorted labels) → value) of the app's /metrics."""
    text = (await registry.client.get("/metrics")).text
    types: dict[str, str] = {}
    values: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            values[(sample.name, str(sorted(sample.labels.items())))] = sample.value
    return types, values


async def test_snapshots_published_is_a_counter(registry: Registry) -> None:
    types, values = await scrape(registry)
    assert types.get("watchkeeper_registry_snapshots_published") == "counter", types
    assert values[("watchkeeper_registry_snapshots_published_total", "[]")] == 0
    await registry.add_system(make_system())
    await registry.add_system(make_system())
    for _ in range(500):  # the outbox relay publishes in the background
        _types, values = await scrape(registry)
        if values[("watchkeeper_registry_snapshots_published_total", "[]")] == 2:
            break
        await asyncio.sleep(0.02)
    assert values[("watchkeeper_registry_snapshots_published_total", "[]")] == 2


async def test_upload_outcomes_are_at_zero_before_any_upload(registry: Registry) -> None:
    _types, values = await scrape(registry)
    for outcome in ("stored", "unchanged", "invalid", "too_large"):
        key = ("watchkeeper_registry_reference_uploads_total", str([("outcome", outcome)]))
        assert values.get(key) == 0, outcome


async def test_systems_by_status(registry: Registry) -> None:
    """Counted in the database at each scrape (deltas: the PostgreSQL database is shared)."""

    async def systems() -> dict[str, float]:
        _types, values = await scrape(registry)
        return {
            status: values[("watchkeeper_registry_systems", str([("status", status)]))]
            for status in ("active", "retired")
        }

    before = await systems()
    body = make_system()
    system_id = await registry.add_system(body)
    assert await systems() == {"active": before["active"] + 1, "retired": before["retired"]}
    update = {k: v for k, v in body.items() if k != "id"} | {"status": "retired"}
    response = await registry.client.put(f"/v1/systems/{system_id}", json=update)
    assert response.status_code == 200, response.text
    assert await systems() == {"active": before["active"], "retired": before["retired"] + 1}
