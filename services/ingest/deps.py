"""What ingest's routes depend on, as ``Annotated`` FastAPI dependencies: the one place that
reads what ``create_app`` put on ``app.state`` (the fast path is handed the context itself)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from shared.deps import FromState

from .context import IngestContext
from .metrics import IngestMetrics
from .settings import Settings

__all__ = ["ContextDep", "MetricsDep", "SettingsDep"]

SettingsDep = Annotated[Settings, Depends(FromState[Settings]("settings"))]
MetricsDep = Annotated[IngestMetrics, Depends(FromState[IngestMetrics]("metrics"))]
ContextDep = Annotated[IngestContext, Depends(FromState[IngestContext]("ingest"))]
"""Everything a request needs: settings, bus, registry view, keys, limiter, duplicate store."""
