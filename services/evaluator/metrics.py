"""The evaluator's Prometheus metrics (labels bounded by what the registry holds)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.contracts import EvaluationResult, EvaluationStatus

__all__ = ["EvaluatorMetrics"]

_VERDICTS = (EvaluationStatus.PASS, EvaluationStatus.BREACH)


class EvaluatorMetrics:
    """Labels are system, objective and metric (plus small fixed sets): bounded cardinality."""

    def __init__(self, registry: CollectorRegistry) -> None:
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
        self.breached = Gauge(
            "watchkeeper_objective_breached",
            "1 when the newest evaluated window breached the objective, else 0",
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
        self.label_coverage = Gauge(
            "watchkeeper_objective_label_coverage",
            "Label coverage of the newest evaluation of a label objective",
            ["system", "objective", "metric"],
            registry=registry,
        )
        self.evaluations = Counter(
            "watchkeeper_evaluations",
            "Evaluations written, by status",
            ["system", "status"],
            registry=registry,
        )
        self.checkpoint_seconds = Histogram(
            "watchkeeper_evaluator_checkpoint_seconds",
            "Time to write a checkpoint (state, evaluations, offsets)",
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

    def known_systems(self, systems: Iterable[str]) -> None:
        """Start the per-system counters at 0, so a rate over them exists before any event."""
        for sid in systems:
            self.late_predictions.labels(sid)
            for kind in ("prediction", "outcome"):
                self.refused_events.labels(sid, kind, "future")

    def count_tallies(self, tallies: Mapping[tuple[str, str], int]) -> None:
        """Late and refused events a checkpoint made durable (``StreamProcessor.tallied``)."""
        for (sid, name), n in tallies.items():
            if name == "late_predictions":
                self.late_predictions.labels(sid).inc(n)
            elif name.startswith("future_"):
                kind = name.removeprefix("future_").removesuffix("s")
                self.refused_events.labels(sid, kind, "future").inc(n)

    def record(self, result: EvaluationResult) -> None:
        labels = (result.system_id, result.objective_id, result.metric)
        if result.value is not None:
            self.value.labels(*labels).set(result.value)
        if result.status in _VERDICTS:  # a data gap or an error leaves the breach as it was
            self.breached.labels(*labels).set(1 if result.status is EvaluationStatus.BREACH else 0)
        for status in EvaluationStatus:
            self.status.labels(*labels, status.value).set(1 if status is result.status else 0)
        if result.label_coverage is not None:
            self.label_coverage.labels(*labels).set(result.label_coverage)
        self.evaluations.labels(result.system_id, result.status.value).inc()
