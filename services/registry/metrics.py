"""The registry's Prometheus metrics, on the app's own CollectorRegistry."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlmodel import col, func, select

from shared.db import Database

from .models import AISystem

__all__ = ["UPLOAD_OUTCOMES", "RegistryMetrics"]

UPLOAD_OUTCOMES = ("stored", "unchanged", "invalid", "too_large")
SYSTEM_STATUSES = ("active", "retired")

log = logging.getLogger(__name__)


class _PublishedSnapshots(Collector):
    """The outbox relay's count of published records as a counter (the relay keeps it)."""

    def __init__(self, published: Callable[[], int]) -> None:
        self._published = published

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "watchkeeper_registry_snapshots_published",
            "Registry snapshots published to the registry topic since start",
            value=self._published(),
        )


class _Systems(Collector):
    """Registered AI systems by status, counted in the database at scrape time."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            with self._db.session() as session:
                rows = session.exec(
                    select(AISystem.status, func.count()).group_by(col(AISystem.status))
                ).all()
        except Exception as exc:  # the database is down (or not migrated yet): skip it
            log.debug("registry: systems unknown (%s)", exc)
            return
        counts = dict.fromkeys(SYSTEM_STATUSES, 0) | {status: int(n) for status, n in rows}
        family = GaugeMetricFamily(
            "watchkeeper_registry_systems",
            "Registered AI systems by status (active, retired)",
            labels=["status"],
        )
        for status, n in sorted(counts.items()):
            family.add_metric([status], n)
        yield family


class RegistryMetrics:
    """Every labelled series exists at 0 from the start (an increase is visible at once)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        published: Callable[[], int],
        db: Database | None = None,
    ) -> None:
        registry.register(_PublishedSnapshots(published))
        if db is not None:
            registry.register(_Systems(db))
        self.reference_uploads = Counter(
            "watchkeeper_registry_reference_uploads",
            "Reference dataset uploads by outcome (stored, unchanged, invalid, too_large)",
            ["outcome"],
            registry=registry,
        )
        for outcome in UPLOAD_OUTCOMES:
            self.reference_uploads.labels(outcome)
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
