from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["IngestMetrics"]


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.accepted = Counter(
            "watchkeeper_ingest_events_accepted",
            "Events acknowledged by the bus",
            ["system", "kind"],
            registry=registry,
        )
        self.rejected = Counter(
            "watchkeeper_ingest_events_rejected",
            "Events refused, by reason",
            ["system", "kind", "reason"],
            registry=registry,
        )
        self.batch_size = Histogram(
            "watchkeeper_ingest_batch_events",
            "Events per request",
            buckets=(1, 10, 100, 1000, 10_000),
            registry=registry,
        )
        self.produce_seconds = Histogram(
            "watchkeeper_ingest_produce_seconds",
            "Time from produce to acknowledgement of a request's events",
            registry=registry,
        )
        self.bus_errors = Counter(
            "watchkeeper_ingest_bus_errors",
            "Requests answered 503 because the bus did not acknowledge",
            registry=registry,
        )
