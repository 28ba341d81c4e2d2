"""Access: user tokens with roles on the registry API, ingest keys scoped to one system."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from services.ingest.app import create_app as create_ingest
from services.ingest.settings import Settings as IngestSettings
from shared.auth import Role, issue_token
from shared.bus import Bus, MemoryBus
from shared.registry_view import RegistryView
from tests.factories import make_objective, make_prediction, make_system
from tests.registry.conftest import SECRET, Registry, RegistryFactory, token


async def test_open_mode_admits_everyone(registry: Registry) -> None:
    response = await registry.client.post("/v1/systems", json=make_system())
    assert response.status_code == 201
    assert response.json()["updated_by"] == "anonymous"


async def test_tokens_are_required_when_a_secret_is_set(secured: Registry) -> None:
    client = secured.client
    response = await client.get("/v1/systems")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "authorization" in response.json()["detail"]
    forged = issue_token("another-secret-of-sufficient-length", "mallory", Role.ADMIN, 600)
    response = await client.get("/v1/systems", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    expired = issue_token(SECRET, "alice", Role.ADMIN, 60, now=time.time() - 120)
    response = await client.get("/v1/systems", headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await client.get(path)).status_code == 200, path


async def test_roles(secured: Registry) -> None:
    client = secured.client
    body = make_system()
    response = await client.post("/v1/systems", json=body, headers=token(Role.AUDITOR))
    assert response.status_code == 403
    assert "needs: admin, ml_engineer" in response.json()["detail"]
    response = await client.post("/v1/systems", json=body, headers=token(Role.QUALITY_MANAGER))
    assert response.status_code == 403
    response = await client.post("/v1/systems", json=body, headers=token(Role.ML_ENGINEER, "erin"))
    assert response.status_code == 201
    assert response.json()["updated_by"] == "erin"

    url = f"/v1/systems/{body['id']}/objectives"
    objective = make_objective()
    objective.pop("changed_by")
    response = await client.post(url, json=objective, headers=token(Role.SRE))
    assert response.status_code == 403
    response = await client.post(url, json=objective, headers=token(Role.QUALITY_MANAGER, "quinn"))
    assert response.status_code == 201, response.text
    assert response.json()["changed_by"] == "quinn"  # who = the token's subject

    change = {k: v for k, v in objective.items() if k != "id"}
    change |= {"threshold": 0.9, "change_reason": "audit finding", "changed_by": "someone-else"}
    response = await client.put(
        f"{url}/{objective['id']}", json=change, headers=token(Role.QUALITY_MANAGER, "quinn")
    )
    assert response.status_code == 422
    assert "authenticated user 'quinn'" in response.text

    for role in Role:
        response = await client.get(f"{url}/{objective['id']}/history", headers=token(role))
        assert response.status_code == 200, role


async def wait_for(condition: Callable[[], object], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@pytest.fixture
async def platform(
    make_registry: RegistryFactory, tmp_path: Path
) -> AsyncIterator[tuple[Registry, httpx.AsyncClient, RegistryView]]:
    """A secured registry and ingest on one bus, as deployed (here in one process)."""
    bus: Bus = MemoryBus()
    await bus.start()
    try:
        async with make_registry(bus=bus, auth_secret=SECRET) as registry:
            ingest = create_ingest(
                IngestSettings(
                    database_url=f"sqlite:///{tmp_path / 'ingest.db'}", auth_secret=SECRET
                ),
                bus=bus,
            )
            async with ingest.router.lifespan_context(ingest):
                view: RegistryView = ingest.state.ingest.view
                await view.wait_loaded(10)
                transport = httpx.ASGITransport(ingest)
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://ingest"
                ) as client:
                    yield registry, client, view
    finally:
        await bus.stop()


async def test_an_ingest_key_of_system_a_cannot_write_events_for_b(
    platform: tuple[Registry, httpx.AsyncClient, RegistryView],
) -> None:
    registry, ingest, view = platform
    admin = token(Role.ADMIN)
    a, b = make_system(), make_system()
    for body in (a, b):
        response = await registry.client.post("/v1/systems", json=body, headers=admin)
        assert response.status_code == 201
    response = await registry.client.post(
        f"/v1/systems/{a['id']}/ingest-keys", json={"name": "production"}, headers=admin
    )
    assert response.status_code == 201, response.text
    created = response.json()
    key = created["key"]
    assert key.startswith("wk_") and created["prefix"] == key[:10]
    listed = (await registry.client.get(f"/v1/systems/{a['id']}/ingest-keys", headers=admin)).json()
    assert [k["id"] for k in listed] == [created["id"]]
    assert "key" not in listed[0]  # shown once, at creation

    await wait_for(lambda: (s := view.get(a["id"])) is not None and s.ingest_key_hashes)
    await wait_for(lambda: view.get(b["id"]) is not None)
    bearer = {"Authorization": f"Bearer {key}"}
    for_b = await ingest.post("/v1/predictions", json=make_prediction(b["id"]), headers=bearer)
    assert for_b.status_code == 403, for_b.text
    assert b["id"] in for_b.text
    for_a = await ingest.post("/v1/predictions", json=make_prediction(a["id"]), headers=bearer)
    assert for_a.status_code == 202, for_a.text

    response = await registry.client.delete(
        f"/v1/systems/{a['id']}/ingest-keys/{created['id']}", headers=admin
    )
    assert response.status_code == 200
    assert response.json()["active"] is False
    assert response.json()["revoked_by"] == "alice"
    await wait_for(lambda: not view.systems[a["id"]].ingest_key_hashes)
    revoked = await ingest.post("/v1/predictions", json=make_prediction(a["id"]), headers=bearer)
    assert revoked.status_code == 401


async def test_key_management_needs_an_editor(secured: Registry) -> None:
    body = make_system()
    await secured.client.post("/v1/systems", json=body, headers=token(Role.ADMIN))
    url = f"/v1/systems/{body['id']}/ingest-keys"
    response = await secured.client.post(url, json={}, headers=token(Role.SRE))
    assert response.status_code == 403
    response = await secured.client.get(url, headers=token(Role.AUDITOR))
    assert response.status_code == 200
    response = await secured.client.delete(f"{url}/key_missing", headers=token(Role.ADMIN))
    assert response.status_code == 404


async def test_the_evaluator_fetches_profiles_with_its_service_token(secured: Registry) -> None:
    """What the evaluator does with a snapshot's reference_hash when auth is on."""
    from services.evaluator.references import HttpReferenceSource
    from shared.auth import service_headers
    from tests.registry.test_references import create_system, known_dataset, upload_csv

    admin = token(Role.ADMIN)
    secured.client.headers.update(admin)
    system_id = await create_system(secured)
    uploaded = (await upload_csv(secured, system_id, known_dataset(n=1_000))).json()
    secured.client.headers.pop("Authorization")
    secret = secured.settings.auth_secret
    source = HttpReferenceSource(
        "http://registry",
        headers=lambda: service_headers(secret, "evaluator"),
        transport=httpx.ASGITransport(secured.app),
    )
    profile = await source.fetch(uploaded["hash"])
    assert profile.content_hash == uploaded["hash"]
    anonymous = HttpReferenceSource("http://registry", transport=httpx.ASGITransport(secured.app))
    with pytest.raises(httpx.HTTPStatusError):
        await anonymous.fetch(uploaded["hash"])
