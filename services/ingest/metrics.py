"""Ingest's Prometheus metrics, on the registry the app was given."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shared.bus import Topics
from shared.contracts import OutcomeEvent, PredictionEvent, SystemSnapshot
from shared.metrics import DeadLetters

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

    def __init__(self, registry: CollectorRegistry, *, topics: Topics | None = None) -> None:
        self.started = time.time()
        self.systems: set[str] = set()
        self.last_event: dict[str, float] = {}
        """Wall-clock time of the last event accepted per system."""
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
        self.last_event_time = Gauge(
            "watchkeeper_ingest_last_event_timestamp_seconds",
            "Wall-clock time this instance last accepted an event of the system (from its "
            "first accepted event since the process started)",
            ["system", "kind"],
            registry=registry,
        )
        self.dead_letters = DeadLetters(
            registry, service="ingest", source_topics=((topics or Topics()).registry,)
        )
        registry.register(_Freshness(self))

    def event_accepted(self, system_id: str, kind: str, count: int) -> None:
        """``count`` events of the system acknowledged by the bus now."""
        now = time.time()
        self.accepted.labels(system_id, kind).inc(count)
        self.last_event_time.labels(system_id, kind).set(now)
        self.last_event[system_id] = now

    def system_changed(self, system: SystemSnapshot) -> None:
        """A registry snapshot: series at 0 for an active system, none for a retired one."""
        if system.status == "retired":
            self.system_retired(system.system_id)
        else:
            self.system_known(system.system_id)

    def system_retired(self, system_id: str) -> None:
        """Remove the system's series (events still sent for it are refused and counted)."""
        self.systems.discard(system_id)
        self.last_event.pop(system_id, None)
        for kind in KINDS:
            for counter in (
                self.accepted,
                self.duplicates,
                self.rate_limited,
                self.last_event_time,
            ):
                with contextlib.suppress(KeyError):
                    counter.remove(system_id, kind)
            for reason in REJECTION_REASONS[kind]:
                with contextlib.suppress(KeyError):
                    self.rejected.remove(system_id, kind, reason)

    def system_known(self, system_id: str) -> None:
        """Start the system's per-system counters at 0 (idempotent)."""
        self.systems.add(system_id)
        for kind in KINDS:
            self.accepted.labels(system_id, kind)
            self.duplicates.labels(system_id, kind)
            self.rate_limited.labels(system_id, kind)
            for reason in REJECTION_REASONS[kind]:
                self.rejected.labels(system_id, kind, reason)


class _Freshness(Collector):
    """``watchkeeper_ingest_seconds_since_last_event{system}`` at scrape time, for every
    active system the registry names."""

    def __init__(self, metrics: IngestMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "watchkeeper_ingest_seconds_since_last_event",
            "Seconds since this instance last accepted an event of the system; for a system "
            "it has not seen since it started, seconds since it started (a lower bound). "
            "Across instances, the freshness is the min",
            labels=["system"],
        )
        now = time.time()
        metrics = self._metrics
        for sid in sorted(metrics.systems):
            family.add_metric([sid], now - metrics.last_event.get(sid, metrics.started))
        yield family
