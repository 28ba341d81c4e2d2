"""Ingest app factory."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from shared.bus import Bus, bus_from_settings
from shared.health import health_router
from shared.lifespan import bus_lifespan, components_lifespan
from shared.metrics import metrics_router
from shared.registry_view import RegistryView

from .api import IngestContext, router
from .metrics import IngestMetrics
from .settings import Settings

__all__ = ["create_app"]


def create_app(settings: Settings | None = None, *, bus: Bus | None = None) -> FastAPI:
    settings = settings or Settings()
    owned = bus is None
    the_bus = bus or bus_from_settings(settings)
    registry = CollectorRegistry()
    view = RegistryView(the_bus, name="ingest")
    ctx = IngestContext(settings=settings, bus=the_bus, view=view, metrics=IngestMetrics(registry))

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with bus_lifespan(the_bus, owned=owned), components_lifespan([view]):
            yield

    async def view_loaded() -> bool:
        return view.loaded

    app = FastAPI(title="Watchkeeper ingest", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.bus = the_bus
    app.state.ingest = ctx
    app.include_router(router)
    app.state.readiness = {"bus": the_bus.ready, "registry": view_loaded}
    app.include_router(health_router("ingest", app.state.readiness))
    app.include_router(metrics_router(registry))
    return app
