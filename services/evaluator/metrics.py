from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from shared.contracts import EvaluationResult, EvaluationStatus

__all__ = ["EvaluatorMetrics"]


class EvaluatorMetrics:
    """Labels are system, objective and metric only: bounded by what the registry holds."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "watchkeeper_evaluator_events",
            "Events made durable in the join state",
            ["kind"],
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
        self.evaluations = Counter(
            "watchkeeper_evaluations",
            "Evaluations written, by status",
            ["system", "status"],
            registry=registry,
        )

    def record(self, result: EvaluationResult) -> None:
        labels = (result.system_id, result.objective_id, result.metric)
        if result.value is not None:
            self.value.labels(*labels).set(result.value)
        self.breached.labels(*labels).set(1 if result.status is EvaluationStatus.BREACH else 0)
        self.evaluations.labels(result.system_id, result.status.value).inc()
