"""The registry's Prometheus metrics, on the app's own CollectorRegistry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["RegistryMetrics"]


class RegistryMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.outbox_published = Gauge(
            "watchkeeper_registry_snapshots_published",
            "Registry snapshots published to the registry topic since start",
            registry=registry,
        )
        self.reference_uploads = Counter(
            "watchkeeper_registry_reference_uploads",
            "Reference dataset uploads by outcome (stored, unchanged, invalid, too_large)",
            ["outcome"],
            registry=registry,
        )
        self.reference_bytes = Counter(
            "watchkeeper_registry_reference_bytes",
            "Bytes of reference datasets received",
            registry=registry,
        )
        self.reference_seconds = Histogram(
            "watchkeeper_registry_reference_processing_seconds",
            "Time to validate and profile one reference dataset",
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
            registry=registry,
        )
