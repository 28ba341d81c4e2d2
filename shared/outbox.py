"""Transactional outbox: store a record with the change that caused it, publish it after.

A service writes ``OutboxMessage`` rows in the same database transaction as its own change
(an objective version, an evaluation, a nonconformity), so a record to publish can never be
lost between the commit and the send. ``OutboxRelay`` sends rows in id order and deletes each
only after the bus acknowledged it; a crash in between resends (consumers deduplicate by id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlmodel import Field, Session, SQLModel, col, delete, func, select

from shared.bus.base import Bus, BusUnavailable
from shared.db import Database

__all__ = ["OutboxMessage", "OutboxRelay", "enqueue"]

log = logging.getLogger(__name__)


class OutboxMessage(SQLModel, table=True):
    __tablename__ = "outbox_message"

    id: int | None = Field(default=None, primary_key=True)
    service: str = Field(index=True, max_length=32)
    topic: str = Field(max_length=255)
    key: bytes | None = None
    value: bytes | None = None
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


def enqueue(
    session: Session, *, service: str, topic: str, key: bytes | None, value: bytes | None
) -> None:
    """Add a record to publish; it is sent only if the surrounding transaction commits."""
    session.add(OutboxMessage(service=service, topic=topic, key=key, value=value))


class OutboxRelay:
    def __init__(self, *, db: Database, bus: Bus, service: str, batch: int = 500) -> None:
        self._db = db
        self._bus = bus
        self._service = service
        self._batch = batch
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.published = 0

    def notify(self) -> None:
        """Wake the relay now instead of at its next poll (safe from worker threads)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wakeup.set)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name=f"outbox:{self._service}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _pending(self) -> Sequence[OutboxMessage]:
        with self._db.session() as session:
            stmt = (
                select(OutboxMessage)
                .where(OutboxMessage.service == self._service)
                .order_by(col(OutboxMessage.id))
                .limit(self._batch)
            )
            return session.exec(stmt).all()

    def backlog(self) -> tuple[int, datetime | None]:
        """Rows not yet published and the creation time of the oldest (blocking: a thread)."""
        with self._db.session() as session:
            stmt = select(func.count(), func.min(OutboxMessage.created_at)).where(
                OutboxMessage.service == self._service
            )
            count, oldest = session.exec(stmt).one()
        if oldest is not None and oldest.tzinfo is None:  # SQLite keeps no zone: stored as UTC
            oldest = oldest.replace(tzinfo=UTC)
        return int(count), oldest

    def _delete(self, ids: list[int]) -> None:
        with self._db.session() as session:
            session.exec(delete(OutboxMessage).where(col(OutboxMessage.id).in_(ids)))
            session.commit()

    async def drain_once(self) -> int:
        """Publish what is pending; returns how many records were sent."""
        rows = await self._db.run(self._pending)
        if not rows:
            return 0
        start = 0
        while start < len(rows):
            end = start
            while end < len(rows) and rows[end].topic == rows[start].topic:
                end += 1
            run = rows[start:end]
            await self._bus.producer.send_many(run[0].topic, [(r.key, r.value) for r in run])
            await self._db.run(self._delete, [r.id for r in run if r.id is not None])
            self.published += len(run)
            start = end
        return len(rows)

    async def _run(self) -> None:
        while True:
            self._wakeup.clear()  # before reading, so a notify during the drain is not lost
            try:
                sent = await self.drain_once()
            except BusUnavailable as exc:
                log.warning("outbox %s: bus unavailable (%s); retrying", self._service, exc)
                sent = 0
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("outbox %s: relay failed; retrying", self._service)
                sent = 0
                await asyncio.sleep(1.0)
            if sent:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), 0.5)
