"""The alerts service's Prometheus metrics, on the app's own CollectorRegistry.

Counters of what this process did (nonconformity changes, notification attempts) and, read
from the database at each scrape, what is open now: nonconformities by system, classification
and state, overdue corrective actions, notifications waiting for delivery. Those gauges are the
same from every alerts instance (they count the shared records): aggregate with ``max``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlmodel import col, func, select

from shared.bus import Topics
from shared.contracts import NonconformityChange, Severity
from shared.db import Database
from shared.metrics import DeadLetters

from .models import CorrectiveAction, Nonconformity, Notification
from .semantics import TERMINAL, State

__all__ = ["OPEN_STATES", "AlertsMetrics"]

log = logging.getLogger(__name__)

OPEN_STATES = tuple(state.value for state in State if state not in TERMINAL)
"""Nonconformity states of an open record (not closed, rejected or withdrawn)."""
_ACTIVE_ACTIONS = ("planned", "in_progress")


class AlertsMetrics:
    """Per-system series start at 0 once the registry view knows the system
    (:meth:`system_known`), so the first change is an increase Prometheus sees."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        db: Database | None = None,
        topics: Topics | None = None,
    ) -> None:
        topics = topics or Topics()
        self.changes = Counter(
            "watchkeeper_nonconformity_changes",
            "Nonconformity changes, by kind and severity",
            ["system", "change", "severity"],
            registry=registry,
        )

        self.notifications = Counter(
            "watchkeeper_alert_notifications",
            "Webhook delivery attempts by receiver and outcome (sent, failed = an attempt "
            "failed and will be retried, dead = the last attempt failed: dead-lettered)",
            ["receiver", "outcome"],
            registry=registry,
        )
        self.dead_letters = DeadLetters(
            registry, service="alerts", source_topics=(topics.evaluations, topics.registry)
        )
        self.systems: set[str] = set()
        self.receivers: set[str] = set()
        if db is not None:
            registry.register(_OpenRecords(db, self))

    def receiver_known(self, receiver: str) -> None:
        """Start a receiver's notification counters at 0."""
        self.receivers.add(receiver)
        for outcome in ("sent", "failed", "dead"):
            self.notifications.labels(receiver, outcome)

    def system_known(self, system_id: str) -> None:
        """Start the system's counters at 0 for every change and severity (idempotent)."""
        self.systems.add(system_id)
        for change in NonconformityChange:
            for severity in Severity:
                self.changes.labels(system_id, change.value, severity.value)


class _OpenRecords(Collector):
    """Open nonconformities, overdue actions and pending notifications, counted in the
    database at scrape time; 0 for every known system, classification and open state."""

    def __init__(self, db: Database, metrics: AlertsMetrics) -> None:
        self._db = db
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        try:
            open_counts, overdue, pending = self._read()
        except Exception as exc:  # the database is down (or not migrated yet): skip them
            log.debug("alerts: open records unknown (%s)", exc)
            return
        systems = sorted(self._metrics.systems | {k[0] for k in open_counts} | set(overdue))
        family = GaugeMetricFamily(
            "watchkeeper_nonconformities_open",
            "Open nonconformities (not closed, rejected or withdrawn) by system, "
            "classification and state",
            labels=["system", "classification", "state"],
        )
        for sid in systems:
            for classification in Severity:
                for state in OPEN_STATES:
                    key = (sid, classification.value, state)
                    family.add_metric(list(key), open_counts.pop(key, 0))
        for key, n in sorted(open_counts.items()):  # a classification or state added later
            family.add_metric(list(key), n)
        yield family
        actions = GaugeMetricFamily(
            "watchkeeper_corrective_actions_overdue",
            "Corrective actions past their due date and not implemented or cancelled",
            labels=["system"],
        )
        for sid in systems:
            actions.add_metric([sid], overdue.get(sid, 0))
        yield actions
        waiting = GaugeMetricFamily(
            "watchkeeper_alert_notifications_pending",
            "Notifications waiting for a (next) delivery attempt",
            labels=["receiver"],
        )
        for receiver in sorted(self._metrics.receivers | set(pending)):
            waiting.add_metric([receiver], pending.get(receiver, 0))
        yield waiting

    def _read(
        self,
    ) -> tuple[dict[tuple[str, str, str], int], dict[str, int], dict[str, int]]:
        now = datetime.now(UTC)
        with self._db.session() as session:
            rows = session.exec(
                select(
                    Nonconformity.system_id,
                    Nonconformity.classification,
                    Nonconformity.status,
                    func.count(),
                )
                .where(col(Nonconformity.status).in_(OPEN_STATES))
                .group_by(
                    col(Nonconformity.system_id),
                    col(Nonconformity.classification),
                    col(Nonconformity.status),
                )
            ).all()
            open_counts = {(s, c, st): int(n) for s, c, st, n in rows}
            late = session.exec(
                select(Nonconformity.system_id, func.count())
                .select_from(CorrectiveAction)
                .join(
                    Nonconformity, col(Nonconformity.id) == col(CorrectiveAction.nonconformity_id)
                )
                .where(
                    col(CorrectiveAction.due_at) < now,
                    col(CorrectiveAction.status).in_(_ACTIVE_ACTIONS),
                )
                .group_by(col(Nonconformity.system_id))
            ).all()
            overdue = {sid: int(n) for sid, n in late}
            queued = session.exec(
                select(Notification.receiver, func.count())
                .where(Notification.status == "pending")
                .group_by(col(Notification.receiver))
            ).all()
            pending = {receiver: int(n) for receiver, n in queued}
        return open_counts, overdue, pending
