"""/readyz tells the truth: not ready while the bus or the database is unreachable."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from services.alerts.app import create_app as create_alerts
from services.alerts.settings import Settings as AlertsSettings
from services.evaluator.app import create_app as create_evaluator
from services.evaluator.settings import Settings as EvaluatorSettings
from services.ingest.app import create_app as create_ingest
from services.ingest.settings import Settings as IngestSettings
from services.registry.app import create_app as create_registry
from services.registry.settings import Settings as RegistrySettings
from tests.deployments import free_port, fresh_database

FACTORIES: dict[str, tuple[Callable[..., FastAPI], Callable[..., Any]]] = {
    "registry": (create_registry, RegistrySettings),
    "ingest": (create_ingest, IngestSettings),
    "evaluator": (create_evaluator, EvaluatorSettings),
    "alerts": (create_alerts, AlertsSettings),
}


async def readyz(app: FastAPI, path: str = "/readyz") -> httpx.Response:
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        return await client.get(path)


@pytest.mark.parametrize("service", list(FACTORIES))
async def test_not_ready_without_kafka(service: str, tmp_path: Any) -> None:
    create_app, settings_type = FACTORIES[service]
    settings = settings_type(
        bus="kafka",
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        kafka_send_timeout_s=0.5,
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        response = await readyz(app)
        health = await readyz(app, "/healthz")
    assert response.status_code == 503
    assert response.json()["status"] == "not_ready"
    assert response.json()["checks"]["bus"] is False
    assert health.status_code == 200


@pytest.mark.parametrize("service", ["registry", "evaluator", "alerts"])
async def test_ready_then_not_ready_when_the_database_goes(service: str, database_url: str) -> None:
    url = await asyncio.to_thread(fresh_database, database_url)
    create_app, settings_type = FACTORIES[service]
    app = create_app(settings_type(database_url=url))
    async with app.router.lifespan_context(app):
        deadline = asyncio.get_running_loop().time() + 20
        while (response := await readyz(app)).status_code != 200:
            assert asyncio.get_running_loop().time() < deadline, response.text
            await asyncio.sleep(0.1)
        assert response.json()["checks"]["database"] is True

        name = url.rsplit("/", 1)[1]
        admin = database_url.replace("postgresql+psycopg://", "postgresql://")
        async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
            await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')

        response = await readyz(app)
        assert response.status_code == 503
        assert response.json()["checks"]["database"] is False
