"""The evaluator's Prometheus metrics (labels bounded by what the registry holds).

Per objective (``system``, ``objective``, ``metric``): value, threshold, state, windows
evaluated. Per system: event-time watermarks and their lag, events received / dropped /
labelled (the durable counts of the checkpoint), late and refused events, label delay.
Platform: checkpoint time, window-state size, DLQ records, consumer lag (``shared.metrics``).

Several instances share the partitions: an instance reports the per-system and per-objective
measurements of the systems in the partitions it owns, and forgets them when a rebalance takes
the partition away; the new owner seeds each objective's state from the newest verdict in the
database, so a rebalance or a restart does not reset a breach. Every instance reports the
registry's facts (threshold, info) and a state of 0 (no verdict) for objectives it does not
own: aggregate with ``max by (system, objective)``. A retired objective or system loses
every series.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.core import Metric as MetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import LargeBinary, cast, func
from sqlmodel import col, select

from shared.bus import Record, Topics
from shared.contracts import EvaluationResult, EvaluationStatus, ObjectiveStatus, SystemSnapshot
from shared.db import Database
from shared.metrics import DeadLetters

from .models import EvaluationRow, LabelWindowCheckpoint, WindowCheckpoint

if TYPE_CHECKING:
    from .consumer import PartitionState, SystemState

__all__ = [
    "LABEL_DELAY_BUCKETS",
    "OBJECTIVE_STATES",
    "PREDICTION_LATENCY_BUCKETS",
    "EvaluatorMetrics",
]

_VERDICTS = (EvaluationStatus.PASS, EvaluationStatus.BREACH)
OBJECTIVE_STATES = {"insufficient_data": 0, "met": 1, "breached": 2}
"""Values of ``watchkeeper_objective_state``: the newest verdict, kept through data gaps."""
_STATE_OF = {EvaluationStatus.PASS: 1, EvaluationStatus.BREACH: 2}

LABEL_DELAY_BUCKETS = (
    60.0,
    300.0,
    900.0,
    1800.0,
    3600.0,
    3 * 3600.0,
    6 * 3600.0,
    12 * 3600.0,
    86400.0,
    2 * 86400.0,
    3 * 86400.0,
    7 * 86400.0,
    14 * 86400.0,
    30 * 86400.0,
)
"""Seconds: labels arrive from minutes to weeks after the prediction."""
PREDICTION_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

_RECEIVED = {"predictions": "prediction", "outcomes": "outcome"}
_DROPPED = {
    "duplicate_predictions": ("prediction", "duplicate"),
    "duplicate_outcomes": ("outcome", "duplicate"),
    "expired_outcomes": ("outcome", "expired"),
    "unknown_outcomes": ("outcome", "unmatched"),
}
_STREAMS = ("predictions", "outcomes")


@dataclass(frozen=True, slots=True)
class _Objective:
    metric: str
    info: tuple[str, str, str] | None = None
    """The info series' comparator, severity and feature (None: no snapshot seen yet)."""


@dataclass(frozen=True, slots=True)
class _Stream:
    """Per-system facts of the owned partitions, as of the last checkpoint."""

    counters: Mapping[str, Mapping[str, int]]
    watermarks: Mapping[tuple[str, str], float]


class EvaluatorMetrics:
    """Labels are system, objective and metric (plus small fixed sets): bounded cardinality."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        topics: Topics | None = None,
        db: Database | None = None,
    ) -> None:
        topics = topics or Topics()
        self.events = Counter(
            "watchkeeper_evaluator_events",
            "Events applied to the join and window state",
            ["kind"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "watchkeeper_evaluator_dead_lettered",
            "Records that did not decode and went to the DLQ",
            registry=registry,
        )
        self.dead_letters = DeadLetters(
            registry,
            service="evaluator",
            source_topics=(topics.predictions, topics.outcomes, topics.registry),
        )
        self.stream = Gauge(
            "watchkeeper_evaluator_stream_events",
            "Per-system stream counts since the system was first seen (late, duplicate, "
            "expired, unknown outcomes ...), as of the last checkpoint",
            ["system", "counter"],
            registry=registry,
        )
        self.value = Gauge(
            "watchkeeper_objective_value",
            "Metric value of the newest evaluated window",
            ["system", "objective", "metric"],
            registry=registry,
        )
        self.threshold = Gauge(
            "watchkeeper_objective_threshold",
            "Threshold of the active objective version (from the registry)",
            ["system", "objective", "metric"],
            registry=registry,
        )
        self.info = Gauge(
            "watchkeeper_objective_info",
            "1 for each active objective, with its comparator (lt, le, gt, ge: how the value "
            "must relate to the threshold to meet it), severity and feature (the parameter "
            "naming the feature a drift or data-quality metric is computed on; empty if none)",
            ["system", "objective", "metric", "comparator", "severity", "feature"],
            registry=registry,
        )
        self.state = Gauge(
            "watchkeeper_objective_state",
            "The objective's newest verdict: 2 breached, 1 met, 0 insufficient data (no "
            "verdict yet, or the system's partition is owned by another instance); a window "
            "with insufficient data or an error leaves it as it was",
            ["system", "objective", "metric"],
            registry=registry,
        )
        self.breached = Gauge(
            "watchkeeper_objective_breached",
            "1 when the newest verdict (pass or breach) breached the objective, else 0",
            ["system", "objective", "metric"],
            registry=registry,
        )
        self.status = Gauge(
            "watchkeeper_objective_status",
            "1 for the status (pass, breach, insufficient_data, error) of the newest evaluated "
            "window, 0 for the others",
            ["system", "objective", "metric", "status"],
            registry=registry,
        )
        self.objective_evaluations = Counter(
            "watchkeeper_objective_evaluations",
            "Windows evaluated per objective (revisions included), by status",
            ["system", "objective", "metric", "status"],
            registry=registry,
        )
        self.label_coverage = Gauge(
            "watchkeeper_objective_label_coverage_ratio",
            "Share (0-1) of the window's predictions with a label, newest evaluation of a "
            "label objective",
            ["system", "objective", "metric"],
            registry=registry,
        )
        self.late_predictions = Counter(
            "watchkeeper_evaluator_late_predictions",
            "Predictions that came for a window already closed (late for at least one window "
            "size), not accumulated; per window at GET /v1/streams/{system}/late",
            ["system"],
            registry=registry,
        )
        self.refused_events = Counter(
            "watchkeeper_evaluator_refused_events",
            "Events not applied because of their event time (reason future: more than "
            "max_future_skew_s ahead of the wall clock)",
            ["system", "kind", "reason"],
            registry=registry,
        )
        self.evaluations = Counter(
            "watchkeeper_evaluations",
            "Evaluations written, by status",
            ["system", "status"],
            registry=registry,
        )
        self.watermark = Gauge(
            "watchkeeper_evaluator_watermark_timestamp_seconds",
            "Event-time watermark (newest event time seen) per system and stream, as of the "
            "last checkpoint",
            ["system", "stream"],
            registry=registry,
        )
        self.checkpoint_seconds = Histogram(
            "watchkeeper_evaluator_checkpoint_seconds",
            "Time to write a checkpoint (state, evaluations, offsets)",
            registry=registry,
        )
        self.last_checkpoint = Gauge(
            "watchkeeper_evaluator_last_checkpoint_timestamp_seconds",
            "Wall-clock time of the last checkpoint written",
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "watchkeeper_evaluator_batch_seconds",
            "Time to apply one polled batch",
            registry=registry,
        )
        self.partitions = Gauge(
            "watchkeeper_evaluator_partitions",
            "Stream partitions this instance owns",
            registry=registry,
        )
        self.outcomes_held = Gauge(
            "watchkeeper_evaluator_outcomes_held",
            "Outcome events read but held back until their predictions catch up",
            registry=registry,
        )
        self._objectives: dict[tuple[str, str], _Objective] = {}
        """Objectives with series, by (system, objective)."""
        self._retired: set[tuple[str, str]] = set()
        self._retired_systems: set[str] = set()
        self._known: set[str] = set()
        self._owned: tuple[int, ...] = ()
        self._stream_state = _Stream({}, {})
        self._stream_labels: set[tuple[str, str]] = set()
        self.label_delay = _SystemHistogram(
            "watchkeeper_evaluator_label_delay_seconds",
            "Outcome time minus prediction time of the labels joined (made durable)",
            LABEL_DELAY_BUCKETS,
            self._active_systems,
        )
        self.prediction_latency = _SystemHistogram(
            "watchkeeper_evaluator_prediction_latency_seconds",
            "The model's latency as the prediction events report it (latency_ms; events "
            "without it are not counted)",
            PREDICTION_LATENCY_BUCKETS,
            self._active_systems,
            scale=0.001,
        )
        registry.register(self.prediction_latency)
        registry.register(_StreamCollector(self))
        registry.register(self.label_delay)
        if db is not None:
            registry.register(_WindowStates(db, topics.predictions, lambda: self._owned))
        self._db = db

    # --- the registry's facts ------------------------------------------------------------

    def system_changed(self, system: SystemSnapshot) -> None:
        """A snapshot from the registry topic: series for its active objectives (threshold,
        info, state 0 until a verdict, evaluation counters at 0); none for a retired system
        or objective, a draft, or one no longer in the snapshot."""
        sid = system.system_id
        if system.status == "retired":
            self._retire_system(sid)
            return
        self._retired_systems.discard(sid)
        active = {o.id: o for o in system.objectives if o.status is ObjectiveStatus.ACTIVE}
        for key in [k for k in self._objectives if k[0] == sid and k[1] not in active]:
            self._forget(key)
            self._retired.add(key)
        for oid, objective in active.items():
            key = (sid, oid)
            self._retired.discard(key)
            known = self._objectives.get(key)
            info = (
                objective.comparator.value,
                objective.severity.value,
                objective.parameters.get("feature", ""),
            )
            fresh = _Objective(objective.metric, info)
            if known is not None and known != fresh:
                if known.metric != fresh.metric:
                    self._forget(key)
                elif known.info is not None:
                    with contextlib.suppress(KeyError):
                        self.info.remove(sid, oid, known.metric, *known.info)
            labels = (sid, oid, objective.metric)
            if key not in self._objectives or self._objectives[key].metric != objective.metric:
                self.state.labels(*labels).set(0)
                for status in EvaluationStatus:
                    self.objective_evaluations.labels(*labels, status.value)
            self._objectives[key] = fresh
            self.threshold.labels(*labels).set(objective.threshold)
            self.info.labels(*labels, *info).set(1)

    def known_systems(self, systems: Mapping[str, SystemSnapshot] | Iterable[str]) -> None:
        """Start the per-system counters at 0, so a rate over them exists before any event;
        forget the systems no longer in the registry view (a tombstone)."""
        present = set(systems)
        for sid in self._known - present:
            self._retire_system(sid)
        for sid in present:
            if sid in self._retired_systems:
                continue
            self.late_predictions.labels(sid)
            for kind in ("prediction", "outcome"):
                self.refused_events.labels(sid, kind, "future")
        self._known = present

    def _active_systems(self) -> set[str]:
        return self._known - self._retired_systems

    def _retire_system(self, sid: str) -> None:
        for key in [k for k in self._objectives if k[0] == sid]:
            self._forget(key)
            self._retired.add(key)
        self._retired_systems.add(sid)
        self._forget_system(sid)
        with contextlib.suppress(KeyError):
            self.late_predictions.remove(sid)
        for kind in ("prediction", "outcome"):
            with contextlib.suppress(KeyError):
                self.refused_events.remove(sid, kind, "future")
        for status in EvaluationStatus:
            with contextlib.suppress(KeyError):
                self.evaluations.remove(sid, status.value)
        self.label_delay.forget([sid])
        self.prediction_latency.forget([sid])

    def _forget(self, key: tuple[str, str]) -> None:
        """Remove every series of an objective."""
        known = self._objectives.pop(key, None)
        if known is None:
            return
        labels = (*key, known.metric)
        self._forget_measurements(labels)
        for gauge in (self.threshold, self.state):
            with contextlib.suppress(KeyError):
                gauge.remove(*labels)
        if known.info is not None:
            with contextlib.suppress(KeyError):
                self.info.remove(*labels, *known.info)
        for status in EvaluationStatus:
            with contextlib.suppress(KeyError):
                self.objective_evaluations.remove(*labels, status.value)

    def _forget_measurements(self, labels: tuple[str, str, str]) -> None:
        """The series only the owner of the system's partition reports."""
        for gauge in (self.value, self.breached, self.label_coverage):
            with contextlib.suppress(KeyError):
                gauge.remove(*labels)
        for status in EvaluationStatus:
            with contextlib.suppress(KeyError):
                self.status.remove(*labels, status.value)

    def _forget_system(self, sid: str) -> None:
        for stream in _STREAMS:
            with contextlib.suppress(KeyError):
                self.watermark.remove(sid, stream)
        for labels in [k for k in self._stream_labels if k[0] == sid]:
            self._stream_labels.discard(labels)
            with contextlib.suppress(KeyError):
                self.stream.remove(*labels)

    # --- the stream ----------------------------------------------------------------------

    def dead_letter(self, record: Record) -> None:
        self.dead_lettered.inc()
        self.dead_letters.count(record)

    def count_tallies(self, tallies: Mapping[tuple[str, str], int]) -> None:
        """Late and refused events a checkpoint made durable (``StreamProcessor.tallied``)."""
        for (sid, name), n in tallies.items():
            if name == "late_predictions":
                self.late_predictions.labels(sid).inc(n)
            elif name.startswith("future_"):
                kind = name.removeprefix("future_").removesuffix("s")
                self.refused_events.labels(sid, kind, "future").inc(n)

    def checkpointed(
        self,
        partitions: Mapping[int, PartitionState],
        delays: Mapping[str, Sequence[npt.NDArray[np.float64]]],
        latencies: Mapping[str, Sequence[npt.NDArray[np.float64]]] | None = None,
    ) -> None:
        """After a checkpoint: the owned systems' durable counts and watermarks, the label
        delays of the joins it made durable and the latencies (ms) of its predictions."""
        self.last_checkpoint.set(time.time())
        self.partitions.set(len(partitions))
        self._owned = tuple(sorted(partitions))
        counters: dict[str, Mapping[str, int]] = {}
        watermarks: dict[tuple[str, str], float] = {}
        for part in partitions.values():
            for sid, state in part.systems.items():
                if sid in self._retired_systems:
                    continue
                counters[sid] = dict(state.counters)
                for name, value in state.counters.items():
                    self.stream.labels(sid, name).set(value)
                    self._stream_labels.add((sid, name))
                for stream, mark in zip(_STREAMS, _marks(state), strict=True):
                    if mark is not None and np.isfinite(mark):
                        watermarks[(sid, stream)] = mark
                        self.watermark.labels(sid, stream).set(mark)
        for sid, stream in set(self._stream_state.watermarks) - set(watermarks):
            with contextlib.suppress(KeyError):
                self.watermark.remove(sid, stream)
        self._stream_state = _Stream(counters, watermarks)
        for histogram, observed in (
            (self.label_delay, delays),
            (self.prediction_latency, latencies or {}),
        ):
            histogram.observe(
                {
                    sid: values
                    for sid, values in observed.items()
                    if sid not in self._retired_systems
                }
            )

    def partition_dropped(self, systems: Iterable[str]) -> None:
        """A rebalance took a partition away: its systems' measurements are the new owner's."""
        for sid in systems:
            for key, known in self._objectives.items():
                if key[0] == sid:
                    self._forget_measurements((*key, known.metric))
                    self.state.labels(*key, known.metric).set(0)
            self._forget_system(sid)

    def latest_verdicts(self, systems: Iterable[str]) -> dict[tuple[str, str], EvaluationStatus]:
        """The newest pass or breach of each known objective of ``systems`` in the database
        (blocking: run it in a thread)."""
        if self._db is None:
            return {}
        wanted = set(systems)
        keys = [key for key in list(self._objectives) if key[0] in wanted]
        found: dict[tuple[str, str], EvaluationStatus] = {}
        with self._db.session() as session:
            for sid, oid in keys:
                stmt = (
                    select(EvaluationRow.status)
                    .where(
                        EvaluationRow.system_id == sid,
                        EvaluationRow.objective_id == oid,
                        col(EvaluationRow.status).in_([s.value for s in _VERDICTS]),
                    )
                    .order_by(
                        col(EvaluationRow.window_end).desc(), col(EvaluationRow.revision).desc()
                    )
                    .limit(1)
                )
                status = session.exec(stmt).first()
                if status is not None:
                    found[(sid, oid)] = EvaluationStatus(status)
        return found

    def seed(self, verdicts: Mapping[tuple[str, str], EvaluationStatus]) -> None:
        """State and breach of objectives from their newest verdicts (a partition taken over)."""
        for key, status in verdicts.items():
            known = self._objectives.get(key)
            if known is None or key in self._retired:
                continue
            labels = (*key, known.metric)
            self.state.labels(*labels).set(_STATE_OF[status])
            self.breached.labels(*labels).set(1 if status is EvaluationStatus.BREACH else 0)

    def record(self, result: EvaluationResult) -> None:
        key = (result.system_id, result.objective_id)
        if key in self._retired or result.system_id in self._retired_systems:
            return  # decided before the retirement reached this instance
        if key not in self._objectives:
            self._objectives[key] = _Objective(result.metric)
        labels = (result.system_id, result.objective_id, result.metric)
        if result.value is not None:
            self.value.labels(*labels).set(result.value)
        if result.status in _VERDICTS:  # a data gap or an error leaves the verdict as it was
            self.breached.labels(*labels).set(1 if result.status is EvaluationStatus.BREACH else 0)
            self.state.labels(*labels).set(_STATE_OF[result.status])
        for status in EvaluationStatus:
            self.status.labels(*labels, status.value).set(1 if status is result.status else 0)
        if result.label_coverage is not None:
            self.label_coverage.labels(*labels).set(result.label_coverage)
        self.objective_evaluations.labels(*labels, result.status.value).inc()
        self.evaluations.labels(result.system_id, result.status.value).inc()


def _marks(state: SystemState) -> tuple[float | None, float | None]:
    return state.predictions, state.outcomes


class _StreamCollector(Collector):
    """Durable per-system counts (received, dropped, labelled) of the last checkpoint, 0 for
    every other system the registry names; the watermark lag at scrape time."""

    def __init__(self, metrics: EvaluatorMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[MetricFamily]:
        stream = self._metrics._stream_state
        systems = sorted(
            (self._metrics._known | set(stream.counters)) - self._metrics._retired_systems
        )
        received = CounterMetricFamily(
            "watchkeeper_evaluator_received_events",
            "Predictions and outcomes the evaluator read per system (the durable count of the "
            "checkpoint, since the system was first seen)",
            labels=["system", "kind"],
        )
        dropped = CounterMetricFamily(
            "watchkeeper_evaluator_dropped_events",
            "Events read but not used, by reason: duplicate (event_id seen before), expired "
            "(outcome after the label horizon), unmatched (outcome whose prediction never came)",
            labels=["system", "kind", "reason"],
        )
        labelled = CounterMetricFamily(
            "watchkeeper_evaluator_labelled_predictions",
            "Predictions joined to their outcome (label coverage: its increase over that of "
            "received predictions)",
            labels=["system"],
        )
        for sid in systems:
            counts = stream.counters.get(sid, {})
            for name, kind in _RECEIVED.items():
                received.add_metric([sid, kind], counts.get(name, 0))
            for name, (kind, reason) in _DROPPED.items():
                dropped.add_metric([sid, kind, reason], counts.get(name, 0))
            labelled.add_metric([sid], counts.get("labelled", 0))
        yield received
        yield dropped
        yield labelled
        lag = GaugeMetricFamily(
            "watchkeeper_evaluator_watermark_lag_seconds",
            "Wall clock minus the event-time watermark of the last checkpoint, per system and "
            "stream (how far behind real time the evaluated data is)",
            labels=["system", "stream"],
        )
        now = time.time()
        for (sid, name), mark in sorted(stream.watermarks.items()):
            lag.add_metric([sid, name], now - mark)
        yield lag


class _SystemHistogram(Collector):
    """A histogram per system filled a whole checkpoint at a time (numpy buckets, not one
    ``observe`` per event), with every known system's series from the start (at 0)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Sequence[float],
        systems: Callable[[], Iterable[str]],
        *,
        scale: float = 1.0,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._buckets = tuple(buckets)
        self._bounds = np.asarray(buckets, dtype=np.float64)
        self._systems = systems
        self._scale = scale
        self._counts: dict[str, npt.NDArray[np.int64]] = {}
        self._sums: dict[str, float] = {}

    def observe(self, observed: Mapping[str, Sequence[npt.NDArray[np.float64]]]) -> None:
        """Values per system (times ``scale``; NaN: not given, skipped; negatives as 0)."""
        for sid, arrays in observed.items():
            if not arrays:
                continue
            joined = np.concatenate([np.asarray(a, dtype=np.float64) for a in arrays])
            values = np.clip(joined[~np.isnan(joined)] * self._scale, 0, None)
            if values.size == 0:
                continue
            bins = np.bincount(
                np.searchsorted(self._bounds, values, side="left"),
                minlength=len(self._bounds) + 1,
            )
            counts = self._counts.get(sid)
            self._counts[sid] = bins if counts is None else counts + bins
            self._sums[sid] = self._sums.get(sid, 0.0) + float(values.sum())

    def forget(self, systems: Iterable[str]) -> None:
        for sid in systems:
            self._counts.pop(sid, None)
            self._sums.pop(sid, None)

    def collect(self) -> Iterator[MetricFamily]:
        family = HistogramMetricFamily(self._name, self._documentation, labels=["system"])
        empty = np.zeros(len(self._bounds) + 1, dtype=np.int64)
        for sid in sorted(set(self._systems()) | set(self._counts)):
            cumulative = np.cumsum(self._counts.get(sid, empty)).tolist()
            buckets = [
                (_bound(b), float(n))
                for b, n in zip([*self._buckets, float("inf")], cumulative, strict=True)
            ]
            family.add_metric([sid], buckets, self._sums.get(sid, 0.0))
        yield family


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(value)


class _WindowStates(Collector):
    """Window state of the owned partitions in the database, read at scrape time: how many
    windows and how many bytes of state (open windows and label windows)."""

    def __init__(self, db: Database, stream: str, owned: Callable[[], Sequence[int]]) -> None:
        self._db = db
        self._stream = stream
        self._owned = owned

    def collect(self) -> Iterator[MetricFamily]:
        owned = list(self._owned())
        sizes: dict[str, tuple[int, int]] = {"open": (0, 0), "label": (0, 0)}
        if owned:
            try:
                sizes = {
                    "open": self._size(WindowCheckpoint, owned),
                    "label": self._size(LabelWindowCheckpoint, owned),
                }
            except Exception:  # the database is down: no window-state series this scrape
                return
        count = GaugeMetricFamily(
            "watchkeeper_evaluator_window_states",
            "Window states checkpointed for the owned partitions (open: windows still "
            "accumulating; label: closed windows waiting for labels)",
            labels=["kind"],
        )
        size = GaugeMetricFamily(
            "watchkeeper_evaluator_window_state_bytes",
            "Bytes of checkpointed window state of the owned partitions",
            labels=["kind"],
        )
        for kind, (n, nbytes) in sizes.items():
            count.add_metric([kind], n)
            size.add_metric([kind], nbytes)
        yield count
        yield size

    def _size(
        self, table: type[WindowCheckpoint] | type[LabelWindowCheckpoint], owned: list[int]
    ) -> tuple[int, int]:
        postgres = self._db.engine.dialect.name == "postgresql"
        length = (
            func.octet_length(table.state)
            if postgres
            else func.length(cast(table.state, LargeBinary))
        )
        with self._db.session() as session:
            stmt = select(func.count(), func.coalesce(func.sum(length), 0)).where(
                table.stream == self._stream, col(table.partition).in_(owned)
            )
            n, nbytes = session.exec(stmt).one()
        return int(n), int(nbytes)
