"""The evaluator's app factory and its migrations: the consumer that joins predictions with
outcomes, closes windows and judges objectives, and the routes that read its results."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from shared.auth import announce_auth_mode, service_headers
from shared.bus import Bus, bus_from_settings
from shared.db import Database
from shared.errors import install_answers
from shared.health import health_router
from shared.lifespan import bus_lifespan, components_lifespan
from shared.metrics import ConsumerLag, serve_metrics, watch_outbox
from shared.migrations import OUTBOX, MigrationChain, migrated_database
from shared.outbox import OutboxRelay
from shared.registry_view import RegistryView
from shared.request_guard import RequestGuard

from .api import router
from .consumer import ProcessorConfig, StreamProcessor
from .errors import ANSWERS
from .metrics import EvaluatorMetrics
from .references import HttpReferenceSource, ReferenceCache, ReferenceSource
from .runner import EvaluatorRunner
from .settings import Settings
from .store import EvaluatorStore

__all__ = ["MIGRATIONS", "create_app"]

MIGRATIONS = MigrationChain(
    "evaluator",
    Path(__file__).parent / "migrations",
    tables=(
        "evaluator_join",
        "evaluator_waiting",
        "evaluator_partition",
        "evaluator_window",
        "evaluator_label_window",
        "evaluator_evaluation",
        "evaluator_reference",
        "evaluator_reference_values",
    ),
)
"""The evaluator's tables; the outbox table comes from shared.migrations.OUTBOX."""


def create_app(
    settings: Settings | None = None,
    *,
    bus: Bus | None = None,
    references: ReferenceSource | None = None,
) -> FastAPI:
    """``references`` replaces the HTTP client of the registry (embedded runner, tests)."""
    settings = settings or Settings()
    announce_auth_mode(settings.auth_secret, "evaluator")
    owned = bus is None
    the_bus = bus or bus_from_settings(settings)
    db = Database(settings.database_url)
    registry = CollectorRegistry()
    metrics = EvaluatorMetrics(registry, topics=the_bus.topics, db=db)
    view = RegistryView(the_bus, name="evaluator", on_dead_letter=metrics.dead_letters.count)
    view.on_change(metrics.system_changed)
    relay = OutboxRelay(db=db, bus=the_bus, service="evaluator")
    watch_outbox(registry, relay, service="evaluator")
    secret = settings.auth_secret
    source = references or HttpReferenceSource(
        settings.registry_url, headers=lambda: service_headers(secret, "evaluator")
    )
    cache = ReferenceCache(source, db)
    processor = StreamProcessor(
        store=EvaluatorStore(db, stream=the_bus.topics.predictions),
        topics=the_bus.topics,
        references=cache,
        config=ProcessorConfig(
            lateness_s=settings.allowed_lateness_s,
            label_wait_s=settings.label_wait_s,
            revision_interval_s=settings.revision_interval_s,
            max_empty_windows=settings.max_empty_windows,
            max_future_skew_s=settings.max_future_skew_s,
            live_window_s=settings.live_window_s,
        ),
    )
    runner = EvaluatorRunner(
        bus=the_bus,
        settings=settings,
        processor=processor,
        view=view,
        references=cache,
        relay=relay,
        metrics=metrics,
    )

    lag = ConsumerLag(
        registry, service="evaluator", consumers=lambda: [(settings.group_id, runner.consumer)]
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with (
            bus_lifespan(the_bus, owned=owned),
            migrated_database(db, [OUTBOX, MIGRATIONS]),
            components_lifespan([view, relay, runner, lag]),
        ):
            yield

    async def consuming() -> bool:
        return runner.running and view.loaded

    async def partitions() -> bool:
        return runner.partitions_assigned

    app = FastAPI(title="Watchkeeper evaluator", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.bus = the_bus
    app.state.db = db
    app.state.relay = relay
    app.state.metrics = metrics
    app.state.runner = runner
    app.state.processor = processor
    install_answers(app, ANSWERS)
    app.include_router(router)
    app.state.readiness = {
        "bus": the_bus.ready,
        "database": db.ready,
        "consumer": consuming,
        "partitions": partitions,
    }
    app.include_router(health_router("evaluator", app.state.readiness))
    app.add_middleware(
        RequestGuard, max_body_bytes=settings.max_body_bytes, auth_secret=settings.auth_secret
    )
    serve_metrics(app, registry, service="evaluator")
    return app
