"""Lifespan pieces each service composes: the bus, the database, background components."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from shared.bus.base import Bus
from shared.db import Database

__all__ = ["Component", "bus_lifespan", "components_lifespan", "database_lifespan"]


class Component(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@contextlib.asynccontextmanager
async def bus_lifespan(bus: Bus, *, owned: bool) -> AsyncIterator[Bus]:
    """Start and stop the bus when this app owns it (the embedded runner owns a shared one)."""
    if owned:
        await bus.start()
    try:
        yield bus
    finally:
        if owned:
            await bus.stop()


@contextlib.asynccontextmanager
async def database_lifespan(db: Database, tables: Sequence[Any]) -> AsyncIterator[Database]:
    await db.run(db.create_tables, tables)
    try:
        yield db
    finally:
        db.dispose()


@contextlib.asynccontextmanager
async def components_lifespan(components: Sequence[Component]) -> AsyncIterator[None]:
    """Start components in order; stop (cancel and await) them in reverse."""
    async with contextlib.AsyncExitStack() as stack:
        for component in components:
            await component.start()
            stack.push_async_callback(component.stop)
        yield
