from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

__all__ = ["AlertsMetrics"]


class AlertsMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.changes = Counter(
            "watchkeeper_nonconformity_changes",
            "Nonconformity changes, by kind and severity",
            ["system", "change", "severity"],
            registry=registry,
        )
