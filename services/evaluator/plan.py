"""What a system's objectives of one window size need accumulated (pure).

A :class:`WindowPlan` is derived from the system's definition, its active objectives of one
window size and its reference profile. It names the accumulators a window keeps (one per
column, shared by every drift and data-quality objective on it; operations; CBPE and fairness
counts) and builds them on the reference's bins. Objectives whose metric needs labels are not
accumulated here: they are computed from the durable join state when their window's labels are
due (see ``labels``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.catalog import CATALOG, Family
from shared.contracts import FeatureType, Objective, SystemSnapshot, Task
from shared.stats import (
    CategoricalAccumulator,
    CategoricalReference,
    ExpectedConfusionAccumulator,
    FairnessAccumulator,
    NumericAccumulator,
    NumericReference,
    OperationsAccumulator,
    ReferenceProfile,
)
from shared.stats.cbpe import ScoreRankAccumulator
from shared.stats.distribution import EXACT_WINDOW_VALUES
from shared.stats.dle import LossEstimateAccumulator

from . import estimation

__all__ = [
    "DEFAULT_POSITIVE_LABEL",
    "LABEL_METRICS",
    "Accumulator",
    "ColumnSpec",
    "NeedKey",
    "WindowPlan",
    "column_of",
    "is_label_metric",
    "positive_label",
]

DEFAULT_POSITIVE_LABEL = "1"

LABEL_METRICS = frozenset(
    {
        spec.id
        for spec in CATALOG.values()
        if spec.family is Family.PERFORMANCE and not spec.id.startswith("estimated_")
    }
    | {
        "equal_opportunity_difference",
        "equalized_odds_difference",
        "label_coverage",
        "label_delay_percentile",
    }
)
"""Metrics computed from joined labels (revised when late labels arrive)."""

Accumulator = (
    NumericAccumulator
    | CategoricalAccumulator
    | OperationsAccumulator
    | ExpectedConfusionAccumulator
    | FairnessAccumulator
    | ScoreRankAccumulator
    | LossEstimateAccumulator
)
NeedKey = tuple[str, ...]
"""("ops",) | ("column", name) | ("fairness", attribute, label) | ("cbpe", label) |
("cbpe_auc", label) | ("dle",), the last three also behind ("segment", attribute, value)."""

PREDICTION = "prediction"


def is_label_metric(metric: str) -> bool:
    return metric in LABEL_METRICS


def positive_label(objective: Objective) -> str:
    return objective.parameters.get("positive_label", DEFAULT_POSITIVE_LABEL)


def column_of(objective: Objective) -> str:
    """The column an objective looks at: ``feature:<name>`` or the prediction."""
    feature = objective.parameters.get("feature")
    return PREDICTION if feature is None else f"feature:{feature}"


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    name: str
    numeric: bool
    drift: bool
    reference: NumericReference | CategoricalReference | None
    lower: float | None = None
    upper: float | None = None
    categories: tuple[str, ...] | None = None


def _drift_objective(objective: Objective) -> bool:
    spec = CATALOG.get(objective.metric)
    return spec is not None and spec.family is Family.DRIFT


@dataclass(slots=True)
class WindowPlan:
    system: SystemSnapshot
    size: int
    objectives: list[Objective]
    reference: ReferenceProfile | None
    columns: dict[str, ColumnSpec] = field(default_factory=dict)
    unknown_columns: set[str] = field(default_factory=set)
    needs: list[NeedKey] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        system: SystemSnapshot,
        size: int,
        objectives: Sequence[Objective],
        reference: ReferenceProfile | None,
    ) -> WindowPlan:
        plan = cls(system, size, [o for o in objectives if o.window_seconds == size], reference)
        needs: dict[NeedKey, None] = {("ops",): None}
        drift_columns: set[str] = set()
        wanted: set[str] = set()
        for objective in plan.objectives:
            if is_label_metric(objective.metric):
                continue
            metric = objective.metric
            if metric == "dataset_drift_share":
                names = list(reference.features) if reference is not None else []
                wanted.update(f"feature:{n}" for n in names)
                drift_columns.update(f"feature:{n}" for n in names)
            elif _drift_objective(objective) or metric in (
                "missing_rate",
                "out_of_range_rate",
                "unseen_category_rate",
            ):
                wanted.add(column_of(objective))
                if _drift_objective(objective):
                    drift_columns.add(column_of(objective))
            elif metric.startswith("estimated_"):
                try:
                    needs[estimation.window_need(objective)] = None
                except estimation.SegmentError:
                    continue  # judged as an error (the registry refuses such a segment)
            elif metric in ("demographic_parity_difference", "disparate_impact_ratio"):
                attribute = objective.parameters.get("attribute", "")
                needs[("fairness", attribute, positive_label(objective))] = None
        for name in sorted(wanted):
            spec = plan._column_spec(name, drift=name in drift_columns)
            if spec is None:
                plan.unknown_columns.add(name)
                continue
            plan.columns[name] = spec
            needs[("column", name)] = None
        plan.needs = list(needs)
        return plan

    def _column_spec(self, name: str, *, drift: bool) -> ColumnSpec | None:
        reference: NumericReference | CategoricalReference | None = None
        if name == PREDICTION:
            numeric = self.system.task is Task.REGRESSION
            if self.reference is not None:
                reference = self.reference.prediction
            return ColumnSpec(name, numeric, drift, reference)
        feature = name.removeprefix("feature:")
        if self.reference is not None:
            reference = self.reference.features.get(feature)
        spec = next((f for f in self.system.features if f.name == feature), None)
        if spec is None:
            if reference is None:
                return None
            return ColumnSpec(name, isinstance(reference, NumericReference), drift, reference)
        numeric = spec.type is FeatureType.NUMERIC
        categories = None
        if not numeric:
            if spec.categories is not None:
                categories = tuple(spec.categories)
            elif isinstance(reference, CategoricalReference):
                categories = tuple(sorted(reference.counts))
        return ColumnSpec(
            name, numeric, drift, reference, lower=spec.min, upper=spec.max, categories=categories
        )

    def new_accumulator(self, key: NeedKey) -> Accumulator:
        estimate = estimation.new_accumulator(key)
        if estimate is not None:
            return estimate
        kind = key[0]
        if kind == "ops":
            return OperationsAccumulator()
        if kind == "fairness":
            return FairnessAccumulator(positive_label=key[2])
        spec = self.columns[key[1]]
        if spec.numeric:
            ref = spec.reference if isinstance(spec.reference, NumericReference) else None
            exact_limit = EXACT_WINDOW_VALUES if spec.drift else 0
            if ref is not None:
                return NumericAccumulator.for_reference(
                    ref, lower=spec.lower, upper=spec.upper, exact_limit=exact_limit
                )
            return NumericAccumulator(lower=spec.lower, upper=spec.upper, exact_limit=exact_limit)
        return CategoricalAccumulator(categories=spec.categories)


def accumulator_from_state(key: NeedKey, numeric: bool, state: dict[str, Any]) -> Accumulator:
    estimate = estimation.accumulator_from_state(key, state)
    if estimate is not None:
        return estimate
    kind = key[0]
    if kind == "ops":
        return OperationsAccumulator.from_state(state)
    if kind == "fairness":
        return FairnessAccumulator.from_state(state)
    if numeric:
        return NumericAccumulator.from_state(state)
    return CategoricalAccumulator.from_state(state)
