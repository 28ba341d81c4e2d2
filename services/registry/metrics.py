from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

__all__ = ["RegistryMetrics"]


class RegistryMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.outbox_published = Gauge(
            "watchkeeper_registry_snapshots_published",
            "Registry snapshots published to the registry topic since start",
            registry=registry,
        )
