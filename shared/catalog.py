"""The evaluator's metric catalog, published as data so the registry can validate objectives.

Each entry says which parameters a metric takes, whether it needs ground-truth labels, and
which direction is better. The evaluator implements exactly the metrics listed here; the
registry refuses an objective naming any other metric or parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from shared.contracts import Task

__all__ = ["CATALOG", "Direction", "Family", "MetricSpec", "ParameterSpec", "get_metric"]


class Family(StrEnum):
    PERFORMANCE = "performance"
    DRIFT = "drift"
    DATA_QUALITY = "data_quality"
    FAIRNESS = "fairness"
    OPERATIONS = "operations"


class Direction(StrEnum):
    HIGHER_IS_BETTER = "higher_is_better"
    LOWER_IS_BETTER = "lower_is_better"


@dataclass(frozen=True, slots=True)
class ParameterSpec:
    name: str
    description: str
    required: bool = True
    choices: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class MetricSpec:
    id: str
    family: Family
    description: str
    direction: Direction
    needs_labels: bool
    tasks: frozenset[Task] = field(default_factory=lambda: frozenset(Task))
    parameters: tuple[ParameterSpec, ...] = ()


_CLASSIFICATION = frozenset({Task.BINARY_CLASSIFICATION, Task.MULTICLASS_CLASSIFICATION})

CATALOG: dict[str, MetricSpec] = {
    spec.id: spec
    for spec in (
        MetricSpec(
            id="accuracy",
            family=Family.PERFORMANCE,
            description="Share of labelled predictions equal to the actual outcome.",
            direction=Direction.HIGHER_IS_BETTER,
            needs_labels=True,
            tasks=_CLASSIFICATION,
        ),
        MetricSpec(
            id="volume",
            family=Family.OPERATIONS,
            description="Number of predictions in the window.",
            direction=Direction.HIGHER_IS_BETTER,
            needs_labels=False,
        ),
    )
}


def get_metric(metric_id: str) -> MetricSpec | None:
    return CATALOG.get(metric_id)
