"""The alerts service's app factory and its migrations: nonconformity records, the
improvement log, notifications, and the objective logger that records objective changes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from fastapi import FastAPI
from fastapi.templating import Jinja2Templates
from prometheus_client import CollectorRegistry

from shared.auth import announce_auth_mode
from shared.bus import Bus, Decoded, Record, StreamWorker, bus_from_settings
from shared.contracts import EvaluationResult, NonconformityChanged, SystemSnapshot, decode
from shared.db import Database
from shared.errors import install_answers
from shared.health import health_router
from shared.lifespan import bus_lifespan, components_lifespan
from shared.metrics import ConsumerLag, serve_metrics, watch_outbox
from shared.migrations import OUTBOX, MigrationChain, migrated_database
from shared.outbox import OutboxRelay
from shared.registry_view import RegistryView
from shared.request_guard import RequestGuard

from . import crud
from .api import router
from .consumer import apply_batch
from .deps import Writes
from .errors import ANSWERS
from .log_topic import LogPublisher
from .metrics import AlertsMetrics
from .models import (
    AlertState,
    CorrectiveAction,
    Inhibition,
    LogEntry,
    LogHead,
    Nonconformity,
    Notification,
    NotifyCursor,
    Occurrence,
    ProcessedEvaluation,
    ReferenceCounter,
    SeenObjective,
    Silence,
    WindowVerdict,
)
from .notify import Notifier
from .reports_api import router as reports_router
from .settings import Settings
from .web import SessionCookie
from .web import router as web_router

__all__ = ["MIGRATIONS", "create_app"]

log = logging.getLogger(__name__)

MIGRATIONS = MigrationChain(
    "alerts",
    Path(__file__).parent / "migrations",
    tables=tuple(
        str(model.__tablename__)
        for model in (
            Nonconformity,
            AlertState,
            ProcessedEvaluation,
            CorrectiveAction,
            Occurrence,
            WindowVerdict,
            Inhibition,
            Silence,
            ReferenceCounter,
            LogHead,
            LogEntry,
            SeenObjective,
            Notification,
            NotifyCursor,
        )
    ),
)
"""The alerts service's tables; the outbox table comes from shared.migrations.OUTBOX."""


class ObjectiveLogger:
    """Appends every new objective version seen on the registry topic to the improvement log
    (the registry view calls back in the event loop; the writes run in a thread)."""

    def __init__(self, db: Database, lock: threading.Lock) -> None:
        self._db = db
        self._lock = lock
        self._queue: asyncio.Queue[SystemSnapshot] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def offer(self, system: SystemSnapshot) -> None:
        self._queue.put_nowait(system)

    def _log(self, system: SystemSnapshot) -> None:
        with self._lock, self._db.session() as session:
            crud.log_objective_changes(session=session, system=system)
            session.commit()

    async def _run(self) -> None:
        while True:
            system = await self._queue.get()
            try:
                await self._db.run(self._log, system)
            except Exception:
                log.exception("alerts: logging objective changes of %s failed", system.system_id)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="alerts:objective-log")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def create_app(settings: Settings | None = None, *, bus: Bus | None = None) -> FastAPI:
    settings = settings or Settings()
    announce_auth_mode(settings.auth_secret, "alerts")
    owned = bus is None
    the_bus = bus or bus_from_settings(settings)
    db = Database(settings.database_url)
    registry = CollectorRegistry()
    metrics = AlertsMetrics(registry, db=db, topics=the_bus.topics)
    view = RegistryView(the_bus, name="alerts", on_dead_letter=metrics.dead_letters.count)
    view.on_change(lambda system: metrics.system_known(system.system_id))
    relay = OutboxRelay(db=db, bus=the_bus, service="alerts")
    log_publisher = LogPublisher(db=db, bus=the_bus, topic=the_bus.topics.nonconformities)
    watch_outbox(registry, relay, service="alerts")
    write_lock = threading.Lock()
    objective_log = ObjectiveLogger(db, write_lock)
    view.on_change(objective_log.offer)
    due_days = settings.due_days()
    for route in settings.routes:
        metrics.receiver_known(route.receiver)

    def delivered(receiver: str, outcome: str) -> None:
        if outcome == "dead":  # the last attempt failed too: count it as a failure as well
            metrics.notifications.labels(receiver, "failed").inc()
        metrics.notifications.labels(receiver, outcome).inc()

    notifier = Notifier(
        db=db,
        routes=settings.routes,
        max_attempts=settings.notify_max_attempts,
        backoff_s=settings.notify_backoff_s,
        poll_s=settings.notify_poll_s,
        timeout_s=settings.notify_timeout_s,
        reminder_repeat_s=settings.reminder_repeat_s,
        lock=write_lock,
        on_result=delivered,
    )

    def decode_evaluation(record: Record) -> EvaluationResult:
        return decode(EvaluationResult, record.value)

    def apply(batch: Sequence[Decoded[EvaluationResult]]) -> list[NonconformityChanged]:
        """The whole batch in one transaction (committed before the offsets are)."""
        with write_lock, db.session() as session:
            changes = apply_batch(
                session=session,
                items=[
                    (item.value, view.objective(item.value.system_id, item.value.objective_id))
                    for item in batch
                ],
                topic=the_bus.topics.nonconformities,
                due_days=due_days,
            )
            session.commit()
        return changes

    async def handle(batch: Sequence[Decoded[EvaluationResult]]) -> None:
        if not view.loaded:
            await view.wait_loaded(30)
        changes = await db.run(apply, batch)
        for change in changes:
            metrics.changes.labels(change.system_id, change.change.value, change.severity).inc()
        log_publisher.notify()  # held-back raises and review evidence log without a change
        if changes:
            relay.notify()
            notifier.notify()

    worker: StreamWorker[EvaluationResult] = StreamWorker(
        bus=the_bus,
        name="alerts",
        topics=[the_bus.topics.evaluations],
        group_id=settings.group_id,
        decode=decode_evaluation,
        handle=handle,
        on_dead_letter=metrics.dead_letters.count,
        max_records=settings.consumer_max_records,
    )
    lag = ConsumerLag(
        registry, service="alerts", consumers=lambda: [(settings.group_id, worker.consumer)]
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with (
            bus_lifespan(the_bus, owned=owned),
            migrated_database(db, [OUTBOX, MIGRATIONS]),
            components_lifespan([objective_log, view, relay, log_publisher, notifier, worker, lag]),
        ):
            yield

    async def consuming() -> bool:
        return worker.running and view.loaded

    app = FastAPI(title="Watchkeeper alerts", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.bus = the_bus
    app.state.db = db
    app.state.relay = relay
    app.state.metrics = metrics
    app.state.registry_view = view
    app.state.notifier = notifier
    app.state.writes = Writes(write_lock, relay, log_publisher, notifier)
    app.state.templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
    install_answers(app, ANSWERS)
    app.include_router(router)
    app.include_router(reports_router)
    app.include_router(web_router)
    app.state.readiness = {"bus": the_bus.ready, "database": db.ready, "consumer": consuming}
    app.include_router(health_router("alerts", app.state.readiness))
    app.add_middleware(
        RequestGuard,
        max_body_bytes=settings.max_body_bytes,
        auth_secret=settings.auth_secret,
        open_writes=("/login",),  # the web UI's sign-in form carries the token in its body
    )
    app.add_middleware(SessionCookie, auth_secret=settings.auth_secret)  # runs before the guard
    serve_metrics(app, registry, service="alerts")
    return app
