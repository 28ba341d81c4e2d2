"""Ingest's app factory: the prediction and outcome routes, their fast path, the registry view,
the duplicate store (its migrations run when it starts: ``models.MIGRATIONS``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from shared.auth import announce_auth_mode
from shared.bus import Bus, bus_from_settings
from shared.db import Database
from shared.health import health_router
from shared.lifespan import Component, bus_lifespan, components_lifespan
from shared.metrics import serve_metrics
from shared.registry_view import RegistryView

from .api import IngestFastPath, router
from .context import IngestContext
from .dedup import DedupStore
from .delivery import DeliveryFollower
from .keys import KeyIndex
from .limits import RateLimiter
from .metrics import IngestMetrics
from .models import MIGRATIONS
from .settings import Settings

__all__ = ["MIGRATIONS", "create_app"]


def create_app(settings: Settings | None = None, *, bus: Bus | None = None) -> FastAPI:
    settings = settings or Settings()
    announce_auth_mode(settings.auth_secret, "ingest")
    owned = bus is None
    the_bus = bus or bus_from_settings(settings)
    registry = CollectorRegistry()
    metrics = IngestMetrics(registry, topics=the_bus.topics)
    view = RegistryView(the_bus, name="ingest", on_dead_letter=metrics.dead_letters.count)
    view.on_change(metrics.system_changed)
    dedup = (
        DedupStore(
            Database(settings.database_url),
            lease_s=settings.dedup_lease_s,
            heartbeat_s=settings.dedup_heartbeat_s,
            purge_interval_s=settings.dedup_purge_interval_s,
        )
        if settings.dedup
        else None
    )
    follower = DeliveryFollower(dedup, metrics)
    ctx = IngestContext(
        settings=settings,
        bus=the_bus,
        view=view,
        metrics=metrics,
        keys=KeyIndex(view),
        limiter=RateLimiter(
            events_per_s=settings.rate_limit_events_per_s,
            burst_s=settings.rate_limit_burst_s,
            overrides=settings.rate_limits,
        ),
        dedup=dedup,
        follower=follower,
    )
    components: list[Component] = [view, *([dedup] if dedup else []), follower]

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with bus_lifespan(the_bus, owned=owned), components_lifespan(components):
            yield

    async def view_loaded() -> bool:
        return view.loaded

    app = FastAPI(title="Watchkeeper ingest", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.bus = the_bus
    app.state.metrics = metrics
    app.state.ingest = ctx
    app.include_router(router)
    app.state.readiness = {"bus": the_bus.ready, "registry": view_loaded}
    if dedup is not None:
        app.state.readiness["dedup_store"] = dedup.ready
    app.include_router(health_router("ingest", app.state.readiness))
    app.add_middleware(IngestFastPath, ctx=ctx)
    serve_metrics(app, registry, service="ingest")
    return app
