"""Prometheus exposition on a registry injected per app (never the global one)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

__all__ = ["add_runtime_collectors", "metrics_router"]


def add_runtime_collectors(registry: CollectorRegistry) -> None:
    """The process (``process_*``: memory, CPU, open files, start time) and Python
    (``python_info``, ``python_gc_*``) series on ``registry``.

    They read the process at scrape time, so apps sharing a process (the embedded
    deployment) each report the same process from their own registry without colliding.
    """
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)


def metrics_router(registry: CollectorRegistry) -> APIRouter:
    """``GET /metrics``: the app's ``registry``, to which the runtime collectors are added."""
    add_runtime_collectors(registry)
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
