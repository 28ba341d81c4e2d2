"""The alerts service's Prometheus metrics, on the app's own CollectorRegistry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from shared.contracts import NonconformityChange, Severity

__all__ = ["AlertsMetrics"]


class AlertsMetrics:
    """Per-system series start at 0 once the registry view knows the system
    (:meth:`system_known`), so the first change is an increase Prometheus sees."""

    def __init__(self, registry: CollectorRegistry) -> None:
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

    def receiver_known(self, receiver: str) -> None:
        """Start a receiver's notification counters at 0."""
        for outcome in ("sent", "failed", "dead"):
            self.notifications.labels(receiver, outcome)

    def system_known(self, system_id: str) -> None:
        """Start the system's counters at 0 for every change and severity (idempotent)."""
        for change in NonconformityChange:
            for severity in Severity:
                self.changes.labels(system_id, change.value, severity.value)
