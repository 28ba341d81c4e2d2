"""Prometheus exposition on a registry injected per app (never the global one), and the
platform series every service shares, each labelled with its ``service``:

* HTTP requests and latency (``shared.http_metrics``, added by :func:`serve_metrics`);
* consumer lag per group and partition (:class:`ConsumerLag`, a sampling component);
* records put on the DLQ, by source topic (:class:`DeadLetters`);
* the transactional outbox's backlog and oldest age, read at scrape time (:func:`watch_outbox`).

``merged_exposition`` serves several apps' registries as one scrape (the embedded deployment's
root ``/metrics``): the ``service`` label keeps the platform series apart, and series that are
the same in each (the process and Python collectors of the one process) appear once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

from fastapi import APIRouter, FastAPI, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shared.bus.base import Consumer, Record, TopicPartition
from shared.http_metrics import HttpMetrics, HttpMetricsMiddleware
from shared.outbox import OutboxRelay

__all__ = [
    "ConsumerLag",
    "DeadLetters",
    "add_runtime_collectors",
    "merged_exposition",
    "metrics_router",
    "serve_metrics",
    "watch_outbox",
]

log = logging.getLogger(__name__)


def add_runtime_collectors(registry: CollectorRegistry) -> None:
    """The process (``process_*``: memory, CPU, open files, start time) and Python
    (``python_info``, ``python_gc_*``) series on ``registry``.

    They read the process at scrape time, so apps sharing a process (the embedded
    deployment) each report the same process from their own registry without colliding.
    """
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)


def metrics_router(registry: CollectorRegistry) -> APIRouter:
    """``GET /metrics``: the app's ``registry``, to which the runtime collectors are added."""
    add_runtime_collectors(registry)
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    def metrics() -> Response:  # a plain def: collectors that read the database run in a thread
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router


def serve_metrics(app: FastAPI, registry: CollectorRegistry, *, service: str) -> HttpMetrics:
    """``GET /metrics`` for ``registry`` and the HTTP metrics of every request to ``app``.

    Call it after every other ``add_middleware``: the HTTP middleware must be the outermost, so
    answers given before routing (401, 413, ingest's fast path) are counted and timed too.
    ``app.state.metrics_registry`` keeps the registry for a process serving several apps."""
    app.include_router(metrics_router(registry))
    app.state.metrics_registry = registry
    http = HttpMetrics(registry, service=service)
    app.add_middleware(HttpMetricsMiddleware, metrics=http, routes=app.router.routes)
    return http


class _Merged(Collector):
    def __init__(self, registries: Sequence[CollectorRegistry]) -> None:
        self._registries = registries

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        for registry in self._registries:
            for family in registry.collect():
                merged = families.get(family.name)
                if merged is None:
                    merged = Metric(family.name, family.documentation, family.type, family.unit)
                    families[family.name] = merged
                for sample in family.samples:
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    if key not in seen:  # the one process's runtime series, once
                        seen.add(key)
                        merged.samples.append(sample)
        yield from families.values()


def merged_exposition(registries: Sequence[CollectorRegistry]) -> bytes:
    """One exposition of several registries: families by name, each series once."""
    target = CollectorRegistry(auto_describe=False)
    target.register(_Merged(registries))
    return generate_latest(target)


class DeadLetters:
    """``watchkeeper_dlq_records_total{service, source_topic}``: records this service put on
    the DLQ, at 0 from the start for each topic it consumes."""

    def __init__(
        self, registry: CollectorRegistry, *, service: str, source_topics: Iterable[str]
    ) -> None:
        self.service = service
        self.records = Counter(
            "watchkeeper_dlq_records",
            "Records put on the dead-letter topic, by the topic they were consumed from",
            ["service", "source_topic"],
            registry=registry,
        )
        for topic in source_topics:
            self.records.labels(service, topic)

    def count(self, record: Record, _error: str = "") -> None:
        """Count one record (signature of ``StreamWorker``'s ``on_dead_letter``)."""
        self.records.labels(self.service, record.topic).inc()


ConsumerSource = Callable[[], Iterable[tuple[str, Consumer | None]]]
"""(group id, its running consumer or None) of each consumer group a service runs."""


class ConsumerLag:
    """Samples ``watchkeeper_consumer_lag_records{service, group, topic, partition}`` every
    ``interval_s``: records between each assigned partition's position and its end. A
    partition no longer assigned loses its series (another instance reports it)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        service: str,
        consumers: ConsumerSource,
        interval_s: float = 5.0,
    ) -> None:
        self.service = service
        self._consumers = consumers
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self._reported: dict[str, set[TopicPartition]] = {}
        self.lag = Gauge(
            "watchkeeper_consumer_lag_records",
            "Records between the consumer group's position and the end of each partition "
            "this instance is assigned",
            ["service", "group", "topic", "partition"],
            registry=registry,
        )

    async def sample_once(self) -> bool:
        """Sample every group; False while a consumer is not running or holds no partition
        yet (the next sample then comes sooner)."""
        settled = True
        for group, consumer in self._consumers():
            lags: dict[TopicPartition, int] = {}
            if consumer is None:
                settled = False
            else:
                try:
                    lags = await consumer.lags()
                except Exception as exc:  # the next sample tries again
                    log.debug("%s: lag of %s unknown (%s)", self.service, group, exc)
                    settled = False
                    continue
                settled = settled and bool(lags)
            for tp, lag in lags.items():
                self.lag.labels(self.service, group, tp.topic, str(tp.partition)).set(lag)
            for tp in self._reported.get(group, set()) - set(lags):
                with contextlib.suppress(KeyError):
                    self.lag.remove(self.service, group, tp.topic, str(tp.partition))
            self._reported[group] = set(lags)
        return settled

    async def _run(self) -> None:
        while True:
            settled = await self.sample_once()
            await asyncio.sleep(self._interval_s if settled else min(self._interval_s, 0.5))

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"{self.service}:consumer-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class _Outbox(Collector):
    def __init__(self, relay: OutboxRelay, service: str) -> None:
        self._relay = relay
        self._service = service

    def collect(self) -> Iterator[Metric]:
        published = CounterMetricFamily(
            "watchkeeper_outbox_published_records",
            "Outbox records the relay published since the process started",
            labels=["service"],
        )
        published.add_metric([self._service], self._relay.published)
        yield published
        try:
            count, oldest = self._relay.backlog()
        except Exception as exc:  # the database is down: no backlog series this scrape
            log.debug("%s: outbox backlog unknown (%s)", self._service, exc)
            return
        age = 0.0 if oldest is None else max(0.0, time.time() - oldest.timestamp())
        pending = GaugeMetricFamily(
            "watchkeeper_outbox_pending_records",
            "Outbox records written but not yet published",
            labels=["service"],
        )
        pending.add_metric([self._service], count)
        yield pending
        oldest_age = GaugeMetricFamily(
            "watchkeeper_outbox_oldest_age_seconds",
            "Age of the oldest outbox record not yet published (0 when none waits)",
            labels=["service"],
        )
        oldest_age.add_metric([self._service], age)
        yield oldest_age


def watch_outbox(registry: CollectorRegistry, relay: OutboxRelay, *, service: str) -> None:
    """The outbox's published count, backlog and oldest age (the backlog is read from the
    database at each scrape)."""
    registry.register(_Outbox(relay, service))
