"""Webhook notifications in Alertmanager's format (version 4), so existing receivers work.

The notifier tails the continual improvement log (a cursor row): raises and records created by
hand become ``firing``
alerts, clearing / withdrawal / closing / rejection ``resolved`` ones, and corrective actions
past their due date ``firing`` reminders. Each matching route gets a ``Notification`` row in the
same transaction as the cursor move, so nothing in the log is skipped; delivery retries with
exponential backoff and leaves a ``dead`` row (the dead-letter record) after the last attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlmodel import Session, col, select

from shared.db import Database

from .crud import append_log
from .models import CorrectiveAction, LogEntry, Nonconformity, Notification, NotifyCursor
from .settings import Route

__all__ = ["Notifier", "alert", "payload", "route_matches"]

log = logging.getLogger(__name__)

ZERO_TIME = "0001-01-01T00:00:00Z"
"""Alertmanager's endsAt of a firing alert."""
ROUTE_LABELS = ("system_id", "severity", "classification")
RESOLVING = {"cleared", "withdrawn"}
RESOLVING_STATES = {"closed", "rejected"}


def _iso(at: datetime) -> str:
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return at.isoformat().replace("+00:00", "Z")


def route_matches(route: Route, labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in route.matchers.items())


def alert(
    *,
    status: str,
    labels: dict[str, str],
    annotations: dict[str, str],
    starts_at: datetime,
    ends_at: datetime | None,
    fingerprint: str,
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": labels,
        "annotations": annotations,
        "startsAt": _iso(starts_at),
        "endsAt": _iso(ends_at) if ends_at is not None else ZERO_TIME,
        "generatorURL": "",
        "fingerprint": fingerprint,
    }


def payload(receiver: str, alerts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Alertmanager's webhook body (version 4) for one group of alerts."""
    common = dict(alerts[0]["labels"])
    for item in alerts[1:]:
        common = {k: v for k, v in common.items() if item["labels"].get(k) == v}
    group = {k: common[k] for k in ("alertname", "system_id") if k in common}
    firing = any(a["status"] == "firing" for a in alerts)
    return {
        "version": "4",
        "groupKey": "{}:" + "{" + ",".join(f'{k}="{v}"' for k, v in group.items()) + "}",
        "truncatedAlerts": 0,
        "status": "firing" if firing else "resolved",
        "receiver": receiver,
        "groupLabels": group,
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "",
        "alerts": list(alerts),
    }


def _record_labels(nc: Nonconformity) -> dict[str, str]:
    return {
        "alertname": "Nonconformity",
        "system_id": nc.system_id,
        "objective_id": nc.objective_id,
        "metric": nc.metric,
        "severity": nc.severity,
        "classification": nc.classification,
        "reference": nc.reference or nc.id,
    }


def _record_alert(nc: Nonconformity, entry: LogEntry) -> dict[str, Any] | None:
    after = entry.after if isinstance(entry.after, dict) else {}
    if entry.kind in ("raised", "manual_record"):
        status = "firing"
    elif entry.kind in RESOLVING or (
        entry.kind == "transition" and after.get("status") in RESOLVING_STATES
    ):
        status = "resolved"
    else:
        return None
    return alert(
        status=status,
        labels=_record_labels(nc),
        annotations={
            "summary": nc.title or f"{nc.objective_id} breached",
            "description": f"{nc.reference}: {entry.kind} ({nc.status}), "
            f"{nc.occurrences} occurrence(s), last value {nc.last_value}",
        },
        starts_at=nc.raised_at,
        ends_at=entry.at if status == "resolved" else None,
        fingerprint=nc.fingerprint[:16],
    )


class Notifier:
    """Owns the notification loop; started and stopped by the app's lifespan."""

    def __init__(
        self,
        *,
        db: Database,
        routes: Sequence[Route],
        max_attempts: int,
        backoff_s: float,
        poll_s: float,
        timeout_s: float,
        reminder_repeat_s: float,
        lock: threading.Lock,
        on_result: Callable[[str, str], None] | None = None,
    ) -> None:
        self._db = db
        self._lock = lock
        self._routes = list(routes)
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s
        self._poll_s = poll_s
        self._timeout_s = timeout_s
        self._reminder_repeat = timedelta(seconds=reminder_repeat_s)
        self._on_result = on_result
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def notify(self) -> None:
        """Look at the log now instead of at the next poll (safe from worker threads)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wakeup.set)

    async def start(self) -> None:
        if not self._routes:
            return
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="alerts:notifier")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=self._timeout_s) as client:
            while True:
                try:
                    await self._db.run(self.derive)
                    await self._db.run(self.remind)
                    for note in await self._db.run(self.due):
                        await self._deliver(client, note)
                except Exception:
                    log.exception("alerts: notification round failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self._poll_s)
                self._wakeup.clear()

    # --- deriving notifications (blocking; run in a thread) ---------------------------------

    def _enqueue(
        self, session: Session, labels: dict[str, str], item: dict[str, Any], seq: int | None
    ) -> None:
        for route in self._routes:
            if route_matches(route, labels):
                session.add(
                    Notification(
                        receiver=route.receiver,
                        url=route.url,
                        payload=payload(route.receiver, [item]),
                        log_seq=seq,
                    )
                )

    def derive(self, batch: int = 500) -> int:
        """Turn the log entries after the cursor into notifications, moving the cursor."""
        with self._lock, self._db.session() as session:
            cursor = session.get(NotifyCursor, 1, with_for_update=True) or NotifyCursor(id=1, seq=0)
            entries = session.exec(
                select(LogEntry)
                .where(col(LogEntry.seq) > cursor.seq)
                .order_by(col(LogEntry.seq))
                .limit(batch)
            ).all()
            for entry in entries:
                nc = session.get(Nonconformity, entry.subject)
                item = _record_alert(nc, entry) if nc is not None else None
                if nc is not None and item is not None:
                    self._enqueue(session, _record_labels(nc), item, entry.seq)
                cursor.seq = entry.seq
            session.add(cursor)
            session.commit()
            return len(entries)

    def remind(self) -> int:
        """A firing reminder for each corrective action past its due date (again after
        ``reminder_repeat_s``)."""
        now = datetime.now(UTC)
        with self._lock, self._db.session() as session:
            overdue = session.exec(
                select(CorrectiveAction).where(
                    col(CorrectiveAction.due_at) < now,
                    col(CorrectiveAction.status).in_(("planned", "in_progress")),
                )
            ).all()
            reminded = 0
            for action in overdue:
                last = action.reminded_at
                if last is not None and _aware(last) > now - self._reminder_repeat:
                    continue
                nc = session.get(Nonconformity, action.nonconformity_id)
                if nc is None:
                    continue
                labels = {
                    **_record_labels(nc),
                    "alertname": "CorrectiveActionOverdue",
                    "action_owner": action.owner,
                }
                item = alert(
                    status="firing",
                    labels=labels,
                    annotations={
                        "summary": f"corrective action of {nc.reference} is overdue",
                        "description": action.description,
                    },
                    starts_at=action.due_at,
                    ends_at=None,
                    fingerprint=action.id[:16],
                )
                self._enqueue(session, labels, item, None)
                action.reminded_at = now
                session.add(action)
                append_log(
                    session=session,
                    actor="alerts",
                    kind="action_overdue_reminder",
                    subject=nc.id,
                    before=None,
                    after={"action_id": action.id, "owner": action.owner},
                )
                reminded += 1
            session.commit()
            return reminded

    def due(self, limit: int = 100) -> list[Notification]:
        with self._db.session() as session:
            return list(
                session.exec(
                    select(Notification)
                    .where(
                        Notification.status == "pending",
                        col(Notification.next_attempt_at) <= datetime.now(UTC),
                    )
                    .order_by(col(Notification.id))
                    .limit(limit)
                ).all()
            )

    # --- delivering ---------------------------------------------------------------------------

    async def _deliver(self, client: httpx.AsyncClient, note: Notification) -> None:
        error: str | None = None
        try:
            response = await client.post(note.url, json=note.payload)
            if response.status_code >= 300:
                error = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        await self._db.run(self._record, note.id, error)

    def _record(self, note_id: int, error: str | None) -> None:
        now = datetime.now(UTC)
        with self._lock, self._db.session() as session:
            note = session.get(Notification, note_id)
            if note is None:
                return
            note.attempts += 1
            if error is None:
                note.status, note.delivered_at = "sent", now
                outcome = "sent"
            else:
                note.last_error = error
                outcome = "failed"
                if note.attempts >= self._max_attempts:
                    note.status = "dead"
                    outcome = "dead"
                else:
                    delay = self._backoff_s * 2 ** (note.attempts - 1)
                    note.next_attempt_at = now + timedelta(seconds=delay)
            session.add(note)
            session.commit()
        if self._on_result is not None:
            self._on_result(note.receiver, outcome)


def _aware(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at
