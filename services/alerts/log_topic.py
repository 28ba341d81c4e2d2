"""Publishes every entry of the continual improvement log on the ``nonconformities`` topic.

The log is append-only and its entries commit in ``seq`` order (every append locks the chain's
head row until its transaction commits), so the log itself is the outbox: this publisher tails
it with a cursor row (``alerts_notify_cursor`` id 2), sends the entries after the cursor as
:class:`~shared.contracts.ImprovementLogEntry` messages keyed by their subject, and moves the
cursor only after the bus acknowledged them. Nothing a writer appends can be skipped, whichever
code path appended it; a crash between the send and the cursor move sends those entries again
(consumers deduplicate by ``seq``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, insert, select, update
from sqlalchemy.exc import IntegrityError

from shared.bus import Bus, BusUnavailable
from shared.contracts import ImprovementLogEntry, encode
from shared.db import Database

from .models import LogEntry, NotifyCursor

__all__ = ["PUBLISH_CURSOR", "LogPublisher", "message"]

log = logging.getLogger(__name__)

PUBLISH_CURSOR = 2
"""The ``alerts_notify_cursor`` row of this publisher (row 1 is the notifier's)."""

_LOG = LogEntry.__table__  # type: ignore[attr-defined]
_CURSOR = NotifyCursor.__table__  # type: ignore[attr-defined]


def message(row: Row[Any]) -> ImprovementLogEntry:
    """The bus message of one ``alerts_log`` row."""
    at: datetime = row.at
    subject: str = row.subject
    return ImprovementLogEntry(
        seq=row.seq,
        at=at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC),
        actor=row.actor,
        kind=row.kind,
        subject=subject,
        nonconformity_id=None if ":" in subject else subject,
        before=row.before,
        after=row.after,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


class LogPublisher:
    """Owned by the app's lifespan; ``notify`` wakes it after a write (else it polls)."""

    def __init__(
        self, *, db: Database, bus: Bus, topic: str, batch: int = 1000, poll_s: float = 0.5
    ) -> None:
        self._db = db
        self._bus = bus
        self._topic = topic
        self._batch = batch
        self._poll_s = poll_s
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.published = 0

    def notify(self) -> None:
        """Publish now instead of at the next poll (safe from worker threads)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wakeup.set)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="alerts:log-publisher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _pending(self) -> Sequence[Row[Any]]:
        with self._db.engine.connect() as conn:
            cursor = conn.execute(
                select(_CURSOR.c.seq).where(_CURSOR.c.id == PUBLISH_CURSOR)
            ).scalar()
            return conn.execute(
                select(_LOG)
                .where(_LOG.c.seq > (cursor or 0))
                .order_by(_LOG.c.seq)
                .limit(self._batch)
            ).all()

    def _advance(self, seq: int) -> None:
        """Move the cursor forward to ``seq`` (never back: another instance may be ahead)."""
        with self._db.engine.begin() as conn:
            moved = conn.execute(
                update(_CURSOR)
                .where(_CURSOR.c.id == PUBLISH_CURSOR, _CURSOR.c.seq < seq)
                .values(seq=seq)
            ).rowcount
            exists = (
                moved
                or conn.execute(select(_CURSOR.c.id).where(_CURSOR.c.id == PUBLISH_CURSOR)).first()
            )
            if not exists:
                with contextlib.suppress(IntegrityError), conn.begin_nested():
                    conn.execute(insert(_CURSOR).values(id=PUBLISH_CURSOR, seq=seq))

    async def drain_once(self) -> int:
        """Publish the entries after the cursor (one batch); returns how many were sent."""
        rows = await self._db.run(self._pending)
        if not rows:
            return 0
        await self._bus.producer.send_many(
            self._topic, [(row.subject.encode(), encode(message(row))) for row in rows]
        )
        await self._db.run(self._advance, rows[-1].seq)
        self.published += len(rows)
        return len(rows)

    async def _run(self) -> None:
        while True:
            self._wakeup.clear()  # before reading, so a notify during the drain is not lost
            try:
                sent = await self.drain_once()
            except BusUnavailable as exc:
                log.warning("alerts: log publisher: bus unavailable (%s); retrying", exc)
                sent = 0
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("alerts: publishing the improvement log failed; retrying")
                sent = 0
                await asyncio.sleep(1.0)
            if sent:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self._poll_s)
