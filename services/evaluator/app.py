"""Evaluator app factory."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from shared.bus import Bus, Decoded, Record, StreamWorker, bus_from_settings
from shared.contracts import OutcomeEvent, PredictionEvent, decode
from shared.db import Database
from shared.health import health_router
from shared.lifespan import bus_lifespan, components_lifespan, database_lifespan
from shared.metrics import metrics_router
from shared.outbox import OutboxMessage, OutboxRelay
from shared.registry_view import RegistryView

from .api import router
from .closer import WindowCloser
from .consumer import outcome_rows, prediction_rows, store
from .metrics import EvaluatorMetrics
from .models import EvaluationRow, OutcomeRow, PredictionRow
from .settings import Settings

__all__ = ["create_app"]

TABLES = [PredictionRow, OutcomeRow, EvaluationRow, OutboxMessage]

Event = PredictionEvent | OutcomeEvent


def create_app(settings: Settings | None = None, *, bus: Bus | None = None) -> FastAPI:
    settings = settings or Settings()
    owned = bus is None
    the_bus = bus or bus_from_settings(settings)
    topics = the_bus.topics
    db = Database(settings.database_url)
    registry = CollectorRegistry()
    metrics = EvaluatorMetrics(registry)
    view = RegistryView(the_bus, name="evaluator")
    relay = OutboxRelay(db=db, bus=the_bus, service="evaluator")
    closer = WindowCloser(
        settings=settings, db=db, view=view, topics=topics, relay=relay, metrics=metrics
    )

    def decode_event(record: Record) -> Event:
        if record.topic == topics.predictions:
            return decode(PredictionEvent, record.value)
        return decode(OutcomeEvent, record.value)

    def persist(batch: Sequence[Decoded[Event]]) -> None:
        predictions = [d for d in batch if isinstance(d.value, PredictionEvent)]
        outcomes = [d for d in batch if isinstance(d.value, OutcomeEvent)]
        with db.session() as session:
            store(session, PredictionRow, prediction_rows(predictions))  # type: ignore[arg-type]
            store(session, OutcomeRow, outcome_rows(outcomes))  # type: ignore[arg-type]

    async def handle(batch: Sequence[Decoded[Event]]) -> None:
        await db.run(persist, batch)
        newest: dict[str, Event] = {}
        for d in batch:
            seen = newest.get(d.value.system_id)
            if seen is None or d.value.timestamp > seen.timestamp:
                newest[d.value.system_id] = d.value
            kind = "prediction" if isinstance(d.value, PredictionEvent) else "outcome"
            metrics.events.labels(kind).inc()
        for system_id, event in newest.items():
            closer.observe(system_id, event.timestamp)

    worker: StreamWorker[Event] = StreamWorker(
        bus=the_bus,
        name="evaluator",
        topics=[topics.predictions, topics.outcomes],
        group_id=settings.group_id,
        decode=decode_event,
        handle=handle,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with (
            bus_lifespan(the_bus, owned=owned),
            database_lifespan(db, TABLES),
            components_lifespan([view, relay, worker, closer]),
        ):
            yield

    async def consuming() -> bool:
        return worker.running and view.loaded

    app = FastAPI(title="Watchkeeper evaluator", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.bus = the_bus
    app.state.db = db
    app.state.closer = closer
    app.include_router(router)
    app.state.readiness = {"bus": the_bus.ready, "database": db.ready, "consumer": consuming}
    app.include_router(health_router("evaluator", app.state.readiness))
    app.include_router(metrics_router(registry))
    return app
