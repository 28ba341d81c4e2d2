"""Registry apps for tests: on SQLite and on the real PostgreSQL, open or with auth."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.registry.app import create_app
from services.registry.settings import Settings
from shared.auth import Role, issue_token
from shared.bus import Bus, MemoryBus
from tests.deployments import fresh_database

SECRET = "test-secret-with-enough-entropy-0123456789"

RegistryFactory = Callable[..., contextlib.AbstractAsyncContextManager["Registry"]]


class Registry:
    """A running registry app and an HTTP client on it."""

    def __init__(self, app: FastAPI, client: httpx.AsyncClient, bus: Bus) -> None:
        self.app = app
        self.client = client
        self.bus = bus

    @property
    def settings(self) -> Settings:
        settings: Settings = self.app.state.settings
        return settings

    async def add_system(self, body: dict[str, Any]) -> str:
        """Register the system ``body`` describes; returns its id."""
        response = await self.client.post("/v1/systems", json=body)
        assert response.status_code == 201, response.text
        system_id: str = body["id"]
        return system_id


def token(role: Role, subject: str = "alice") -> dict[str, str]:
    """Authorization headers of a user with ``role``."""
    return {"Authorization": f"Bearer {issue_token(SECRET, subject, role, 600)}"}


@pytest.fixture(scope="session")
def registry_postgres_url(database_url: str) -> str:
    """A database of the session's PostgreSQL for the registry tests only."""
    return fresh_database(database_url)


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    url: str = request.getfixturevalue("registry_postgres_url")
    return url


@pytest.fixture
def make_registry(registry_database: str, tmp_path: Path) -> RegistryFactory:
    @contextlib.asynccontextmanager
    async def factory(bus: Bus | None = None, **overrides: Any) -> AsyncIterator[Registry]:
        the_bus = bus or MemoryBus()
        owned = bus is None
        settings = Settings(
            database_url=registry_database, reference_dir=tmp_path / "references", **overrides
        )
        if owned:
            await the_bus.start()
        app = create_app(settings, bus=the_bus)
        try:
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app)
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://registry", timeout=60
                ) as client:
                    yield Registry(app, client, the_bus)
        finally:
            if owned:
                await the_bus.stop()

    return factory


@pytest.fixture
async def registry(make_registry: RegistryFactory) -> AsyncIterator[Registry]:
    """An open-mode registry (no auth) on SQLite or PostgreSQL."""
    async with make_registry() as running:
        yield running


@pytest.fixture
async def secured(make_registry: RegistryFactory) -> AsyncIterator[Registry]:
    """A registry requiring user tokens (``token(role)``)."""
    async with make_registry(auth_secret=SECRET) as running:
        yield running
