"""The registry's app factory and its migrations: AI systems, objectives, model versions,
reference datasets and ingest keys."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from shared.auth import announce_auth_mode
from shared.bus import Bus, bus_from_settings
from shared.db import Database
from shared.errors import install_answers
from shared.health import health_router
from shared.lifespan import bus_lifespan, components_lifespan
from shared.metrics import serve_metrics, watch_outbox
from shared.migrations import OUTBOX, MigrationChain, migrated_database
from shared.outbox import OutboxRelay
from shared.request_guard import RequestGuard, RouteLimit

from .api import router
from .errors import ANSWERS
from .metrics import RegistryMetrics
from .models import AISystem, IngestKey, ModelVersion, ObjectiveVersion, ReferenceDataset
from .settings import Settings

__all__ = ["MIGRATIONS", "create_app"]

MIGRATIONS = MigrationChain(
    "registry",
    Path(__file__).parent / "migrations",
    tables=tuple(
        str(model.__tablename__)
        for model in (AISystem, ObjectiveVersion, ModelVersion, ReferenceDataset, IngestKey)
    ),
)
"""The registry's tables; the outbox table comes from shared.migrations.OUTBOX."""


def create_app(settings: Settings | None = None, *, bus: Bus | None = None) -> FastAPI:
    settings = settings or Settings()
    announce_auth_mode(settings.auth_secret, "registry")
    owned = bus is None
    the_bus = bus or bus_from_settings(settings)
    db = Database(settings.database_url)
    registry = CollectorRegistry()
    relay = OutboxRelay(db=db, bus=the_bus, service="registry")
    metrics = RegistryMetrics(registry, published=lambda: relay.published, db=db)
    watch_outbox(registry, relay, service="registry")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.upload_lock = asyncio.Lock()
        async with (
            bus_lifespan(the_bus, owned=owned),
            migrated_database(db, [OUTBOX, MIGRATIONS]),
            components_lifespan([relay]),
        ):
            yield

    app = FastAPI(title="Watchkeeper registry", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.bus = the_bus
    app.state.db = db
    app.state.relay = relay
    app.state.metrics = metrics
    install_answers(app, ANSWERS)
    app.include_router(router)
    app.state.readiness = {"bus": the_bus.ready, "database": db.ready}
    app.include_router(health_router("registry", app.state.readiness))
    app.add_middleware(
        RequestGuard,
        max_body_bytes=settings.max_body_bytes,
        auth_secret=settings.auth_secret,
        route_limits=[
            RouteLimit("POST", r"/v1/systems/[^/]+/references", settings.max_reference_bytes)
        ],
    )
    serve_metrics(app, registry, service="registry")
    return app
