"""Registry app factory."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from shared.bus import Bus, bus_from_settings
from shared.db import Database
from shared.health import health_router
from shared.lifespan import bus_lifespan, components_lifespan, database_lifespan
from shared.metrics import metrics_router
from shared.outbox import OutboxMessage, OutboxRelay

from .api import router
from .metrics import RegistryMetrics
from .models import AISystem, ObjectiveVersion
from .settings import Settings

__all__ = ["create_app"]

TABLES = [AISystem, ObjectiveVersion, OutboxMessage]


def create_app(settings: Settings | None = None, *, bus: Bus | None = None) -> FastAPI:
    settings = settings or Settings()
    owned = bus is None
    the_bus = bus or bus_from_settings(settings)
    db = Database(settings.database_url)
    registry = CollectorRegistry()
    metrics = RegistryMetrics(registry)
    relay = OutboxRelay(db=db, bus=the_bus, service="registry")
    metrics.outbox_published.set_function(lambda: relay.published)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with (
            bus_lifespan(the_bus, owned=owned),
            database_lifespan(db, TABLES),
            components_lifespan([relay]),
        ):
            yield

    app = FastAPI(title="Watchkeeper registry", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.bus = the_bus
    app.state.db = db
    app.state.relay = relay
    app.include_router(router)
    app.state.readiness = {"bus": the_bus.ready, "database": db.ready}
    app.include_router(health_router("registry", app.state.readiness))
    app.include_router(metrics_router(registry))
    return app
