"""The embedded default: all four services in one process on the in-process bus and SQLite
(one database file per service).

Each service is the same app it is when deployed alone, mounted under its name
(/registry, /ingest, /evaluator, /alerts) and sharing one ``MemoryBus``; this process owns the
bus and runs each app's lifespan, registry first, ingest last. The bus is durable (its log is
``bus.db`` in the data dir), so a restart, clean or ``kill -9``, keeps every acknowledged
record and committed offset, as Kafka would.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi import FastAPI
from fastapi.responses import JSONResponse, RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from services.alerts.app import create_app as create_alerts
from services.alerts.settings import Settings as AlertsSettings
from services.evaluator.app import create_app as create_evaluator
from services.evaluator.references import HttpReferenceSource
from services.evaluator.settings import Settings as EvaluatorSettings
from services.ingest.app import create_app as create_ingest
from services.ingest.settings import Settings as IngestSettings
from services.registry.app import create_app as create_registry
from services.registry.settings import Settings as RegistrySettings
from shared.auth import service_headers
from shared.bus import MemoryBus, Topics
from shared.metrics import merged_exposition

__all__ = ["EmbeddedOptions", "create_embedded_app"]

SERVICES = ("registry", "evaluator", "alerts", "ingest")
EMBEDDED_DEDUP_LEASE_S = 3.0


@dataclass(frozen=True, slots=True)
class EmbeddedOptions:
    data_dir: Path = Path(".run/embedded")
    allowed_lateness_s: float = 5.0
    idle_close_s: float = 10.0
    tick_s: float = 0.5

    def database_url(self, service: str) -> str:
        """One SQLite file per service: each owns its tables, and none waits for another's
        write transaction (SQLite has one writer per file)."""
        return f"sqlite:///{(self.data_dir / f'{service}.db').resolve()}"

    @property
    def bus_path(self) -> Path:
        """The in-process bus's durable log (topics, records, committed offsets)."""
        return self.data_dir / "bus.db"

    @staticmethod
    def for_data_dir(data_dir: Path, **overrides: float) -> EmbeddedOptions:
        data_dir.mkdir(parents=True, exist_ok=True)
        return EmbeddedOptions(data_dir=data_dir, **overrides)


def create_embedded_app(options: EmbeddedOptions | None = None) -> FastAPI:
    options = options or EmbeddedOptions.for_data_dir(Path(".run/embedded"))
    # durable: a 202 from ingest means the record is in this file (docs/architecture.md)
    bus = MemoryBus(topics=Topics(), path=options.bus_path)
    url = options.database_url
    registry = create_registry(RegistrySettings(database_url=url("registry")), bus=bus)
    evaluator_settings = EvaluatorSettings(
        database_url=url("evaluator"),
        allowed_lateness_s=options.allowed_lateness_s,
        idle_close_s=options.idle_close_s,
        tick_s=options.tick_s,
    )
    secret = evaluator_settings.auth_secret
    # the evaluator fetches reference profiles from the registry over its HTTP API, here
    # in-process (no socket, no port to know), with the same service token as when deployed
    references = HttpReferenceSource(
        "http://registry",
        headers=lambda: service_headers(secret, "evaluator"),
        transport=httpx.ASGITransport(app=registry),
    )
    apps: dict[str, FastAPI] = {
        "registry": registry,
        "evaluator": create_evaluator(evaluator_settings, bus=bus, references=references),
        "alerts": create_alerts(AlertsSettings(database_url=url("alerts")), bus=bus),
        # one ingest instance per data dir: a claim left unsettled by a killed process is
        # taken over after this lease (instead of Kafka's 15 s), so the SDK's retries of the
        # events in hand at a kill -9 go through before the evaluator sees the stream as idle
        "ingest": create_ingest(
            IngestSettings(database_url=url("ingest"), dedup_lease_s=EMBEDDED_DEDUP_LEASE_S),
            bus=bus,
        ),
    }

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await bus.start()
        try:
            async with contextlib.AsyncExitStack() as stack:
                for name in SERVICES:
                    sub = apps[name]
                    await stack.enter_async_context(sub.router.lifespan_context(sub))
                yield
        finally:
            await bus.stop()

    app = FastAPI(title="Watchkeeper (embedded)", version="0.1.0", lifespan=lifespan)
    app.state.bus = bus
    app.state.services = apps

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/alerts/")

    @app.get("/readyz", tags=["health"])
    async def readyz() -> JSONResponse:
        checks: dict[str, bool] = {}
        for name, sub in apps.items():
            for check_name, check in sub.state.readiness.items():
                checks[f"{name}.{check_name}"] = await check()
        ok = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ok else "not_ready", "checks": checks},
            status_code=200 if ok else 503,
        )

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok", "service": "embedded"}

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        """The four services' registries in one scrape (each also at /<service>/metrics)."""
        registries = [apps[name].state.metrics_registry for name in SERVICES]
        return Response(merged_exposition(registries), media_type=CONTENT_TYPE_LATEST)

    for name in SERVICES:
        app.mount(f"/{name}", apps[name])
    return app
