"""Ingest's Prometheus metrics, on the registry the app was given."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.contracts import OutcomeEvent, PredictionEvent

__all__ = ["IngestMetrics"]

KINDS = ("predictions", "outcomes")
REJECTION_REASONS = {
    "predictions": (*PredictionEvent.model_fields, "(record)"),
    "outcomes": (*OutcomeEvent.model_fields, "(record)"),
}
"""The top-level field an event is refused for ("(record)": not a JSON object)."""
REQUEST_STATUSES = ("202", "400", "401", "403", "413", "415", "422", "429", "503")
BUS_ERRORS = ("unavailable", "unacknowledged")
AUTH_FAILURES = ("missing", "unknown")

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class IngestMetrics:
    """Labelled counters exist at 0 from the start for their fixed label sets, and per
    system once the registry view knows it (:meth:`system_known`): a first burst is an
    increase Prometheus sees, not a series born non-zero."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.accepted = Counter(
            "watchkeeper_ingest_events_accepted",
            "Events acknowledged by the bus",
            ["system", "kind"],
            registry=registry,
        )
        self.rejected = Counter(
            "watchkeeper_ingest_events_rejected",
            "Events refused, by field (reason); system 'unknown' when not a registered system",
            ["system", "kind", "reason"],
            registry=registry,
        )
        self.duplicates = Counter(
            "watchkeeper_ingest_events_duplicate",
            "Events whose event_id was already accepted within the label horizon",
            ["system", "kind"],
            registry=registry,
        )
        self.requests = Counter(
            "watchkeeper_ingest_requests",
            "Ingest requests by answer status",
            ["kind", "status"],
            registry=registry,
        )
        self.rate_limited = Counter(
            "watchkeeper_ingest_rate_limited_events",
            "Events of requests answered 429 because their system is over its rate limit",
            ["system", "kind"],
            registry=registry,
        )
        self.auth_failures = Counter(
            "watchkeeper_ingest_auth_failures",
            "Requests refused for their ingest API key",
            ["reason"],
            registry=registry,
        )
        self.batch_size = Histogram(
            "watchkeeper_ingest_batch_events",
            "Events per request",
            buckets=(1, 10, 100, 500, 1000, 5000, 10_000),
            registry=registry,
        )
        self.request_seconds = Histogram(
            "watchkeeper_ingest_request_seconds",
            "Time to answer an ingest request (body read to response)",
            ["kind"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.produce_seconds = Histogram(
            "watchkeeper_ingest_produce_seconds",
            "Time from produce to acknowledgement of a request's events",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.dedup_seconds = Histogram(
            "watchkeeper_ingest_dedup_seconds",
            "Time to claim a request's event_ids in the duplicate store",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.bus_errors = Counter(
            "watchkeeper_ingest_bus_errors",
            "Requests answered 503 because the bus did not acknowledge",
            ["reason"],
            registry=registry,
        )
        self.dedup_errors = Counter(
            "watchkeeper_ingest_dedup_errors",
            "Requests answered 503 because the duplicate store was unreachable",
            registry=registry,
        )
        for kind in KINDS:
            for status in REQUEST_STATUSES:
                self.requests.labels(kind, status)
            for reason in REJECTION_REASONS[kind]:
                self.rejected.labels("unknown", kind, reason)
        for reason in BUS_ERRORS:
            self.bus_errors.labels(reason)
        for reason in AUTH_FAILURES:
            self.auth_failures.labels(reason)
        self.pending_deliveries = Gauge(
            "watchkeeper_ingest_pending_deliveries",
            "Requests answered 503 whose events Kafka may still write (being followed)",
            registry=registry,
        )

    def system_known(self, system_id: str) -> None:
        """Start the system's per-system counters at 0 (idempotent)."""
        for kind in KINDS:
            self.accepted.labels(system_id, kind)
            self.duplicates.labels(system_id, kind)
            self.rate_limited.labels(system_id, kind)
            for reason in REJECTION_REASONS[kind]:
                self.rejected.labels(system_id, kind, reason)
