"""Every service's /metrics carries the process and Python runtime series (memory, CPU, file
descriptors, GC) beside its own, on its own registry: four apps in one process (the embedded
deployment) each expose them without colliding."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from services.alerts.app import create_app as create_alerts
from services.alerts.settings import Settings as AlertsSettings
from services.evaluator.app import create_app as create_evaluator
from services.evaluator.settings import Settings as EvaluatorSettings
from services.ingest.app import create_app as create_ingest
from services.ingest.settings import Settings as IngestSettings
from services.registry.app import create_app as create_registry
from services.registry.settings import Settings as RegistrySettings

RUNTIME = {
    "process_resident_memory_bytes",
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_start_time_seconds",
    "python_info",
    "python_gc_collections_total",
}


async def test_every_service_exposes_process_and_python_series(tmp_path: Path) -> None:
    factories: list[tuple[str, Any, Any]] = [
        ("registry", create_registry, RegistrySettings),
        ("ingest", create_ingest, IngestSettings),
        ("evaluator", create_evaluator, EvaluatorSettings),
        ("alerts", create_alerts, AlertsSettings),
    ]
    apps = [
        (name, create_app(settings(database_url=f"sqlite:///{tmp_path / name}.db")))
        for name, create_app, settings in factories
    ]  # all four built before any is scraped, as the embedded runner does
    for name, app in apps:
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            response = await client.get("/metrics")
        assert response.status_code == 200, (name, response.text)
        samples = {
            sample.name: sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
        }
        assert set(samples) >= RUNTIME, (name, RUNTIME - set(samples))
        assert samples["process_resident_memory_bytes"] > 0, name
        assert "# TYPE watchkeeper_" in response.text, name
