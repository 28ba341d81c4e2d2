"""What the alerts routes and pages depend on, as ``Annotated`` FastAPI dependencies (the one
place that reads what ``create_app`` put on ``app.state``), and the write path they share."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from fastapi.templating import Jinja2Templates
from sqlmodel import Session

from shared.bus import Bus
from shared.db import Database, SessionDep
from shared.deps import FromState
from shared.outbox import OutboxRelay
from shared.registry_view import RegistryView

from .errors import AlertsError, Refused
from .log_topic import LogPublisher
from .notify import Notifier
from .settings import Settings

__all__ = [
    "BusDep",
    "DatabaseDep",
    "RelayDep",
    "SessionDep",
    "SettingsDep",
    "TemplatesDep",
    "TopicDep",
    "ViewDep",
    "Writes",
    "WritesDep",
]


@dataclass(frozen=True, slots=True)
class Writes:
    """The one write path of the JSON API and the web UI: one writer at a time in this
    process (SQLite has one writer; PostgreSQL serialises log appends on the locked head row
    anyway), commit, then wake the outbox relay, the log publisher and the notifier."""

    lock: threading.Lock
    relay: OutboxRelay
    log_publisher: LogPublisher
    notifier: Notifier

    @contextlib.contextmanager
    def transaction(self, session: Session) -> Iterator[None]:
        """Commit what the block wrote; roll back and raise :class:`Refused` (or the
        :class:`AlertsError` raised) when the rules refuse it."""
        with self.lock:
            try:
                yield
                session.commit()
            except AlertsError:
                session.rollback()
                raise
            except ValueError as exc:
                session.rollback()
                raise Refused(str(exc)) from None
        self.relay.notify()
        self.log_publisher.notify()
        self.notifier.notify()


settings = FromState[Settings]("settings")
bus = FromState[Bus]("bus")
database = FromState[Database]("db")
relay = FromState[OutboxRelay]("relay")
writes = FromState[Writes]("writes")
templates = FromState[Jinja2Templates]("templates")
registry_view = FromState[RegistryView]("registry_view")

SettingsDep = Annotated[Settings, Depends(settings)]
BusDep = Annotated[Bus, Depends(bus)]
DatabaseDep = Annotated[Database, Depends(database)]
RelayDep = Annotated[OutboxRelay, Depends(relay)]
WritesDep = Annotated[Writes, Depends(writes)]
TemplatesDep = Annotated[Jinja2Templates, Depends(templates)]
ViewDep = Annotated[RegistryView, Depends(registry_view)]


async def _topic(the_bus: BusDep) -> str:
    return str(the_bus.topics.nonconformities)


TopicDep = Annotated[str, Depends(_topic)]
"""The topic nonconformity changes are published on (through the outbox)."""
