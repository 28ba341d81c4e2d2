"""What the registry's routes depend on, as ``Annotated`` FastAPI dependencies: the one place
that reads what ``create_app`` put on ``app.state``."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends

from shared.bus import Bus
from shared.db import Database, SessionDep
from shared.deps import FromState
from shared.outbox import OutboxRelay

from .metrics import RegistryMetrics
from .settings import Settings

__all__ = [
    "BusDep",
    "DatabaseDep",
    "MetricsDep",
    "RelayDep",
    "SessionDep",
    "SettingsDep",
    "TopicDep",
    "UploadLockDep",
]

SettingsDep = Annotated[Settings, Depends(FromState[Settings]("settings"))]
BusDep = Annotated[Bus, Depends(FromState[Bus]("bus"))]
DatabaseDep = Annotated[Database, Depends(FromState[Database]("db"))]
RelayDep = Annotated[OutboxRelay, Depends(FromState[OutboxRelay]("relay"))]
MetricsDep = Annotated[RegistryMetrics, Depends(FromState[RegistryMetrics]("metrics"))]
UploadLockDep = Annotated[asyncio.Lock, Depends(FromState[asyncio.Lock]("upload_lock"))]
"""One reference profiled at a time (made by the lifespan: it belongs to the event loop)."""


async def _registry_topic(bus: BusDep) -> str:
    return bus.topics.registry


TopicDep = Annotated[str, Depends(_registry_topic)]
"""The topic every registry change is published on (through the outbox)."""
