"""Computing an objective's metric over one window, and judging it (pure).

Label-free metrics read the window's accumulators (label metrics: ``labels``; estimated ones:
``estimation``). ``judge`` turns a value into pass / breach / insufficient_data, or error when the
metric could not be computed. A performance value comes with its sampling error; ``judge`` makes
it the evidence's band (value +/- 3 standard errors, clipped to the metric's range) and, for an
objective with ``breach_on: band``, breaches only when the whole band misses the threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from shared.catalog import CATALOG
from shared.contracts import Comparator, EvaluationStatus, Objective, SamplingBand
from shared.stats import (
    Binning,
    CategoricalAccumulator,
    FairnessAccumulator,
    InsufficientData,
    NumericAccumulator,
    OperationsAccumulator,
    ReferenceProfile,
    column_drift,
    dataset_drift_share,
    demographic_parity_difference,
    disparate_impact_ratio,
    latency_percentile,
    missing_rate,
    out_of_range_rate,
    unseen_category_rate,
)
from shared.stats.drift import DriftMethod

from . import estimation
from .errors import ConfigurationError
from .plan import PREDICTION, WindowPlan, column_of, positive_label
from .window import WindowState

__all__ = [
    "JUDGING_OPTIONS",
    "ConfigurationError",
    "Judgement",
    "Measurement",
    "judge",
    "measure_window",
    "percentile_of",
    "result_parameters",
]


@dataclass(frozen=True, slots=True)
class Measurement:
    value: float
    n_samples: int
    estimated: bool = False
    detail: str | None = None
    approximate: bool = False
    sampling_error: float | None = None
    """Standard error of the value on a window of this size (performance metrics)."""


@dataclass(frozen=True, slots=True)
class Judgement:
    value: float | None
    status: EvaluationStatus
    n_samples: int
    label_coverage: float | None
    estimated: bool = False
    detail: str | None = None
    approximate: bool = False
    band: SamplingBand | None = None


BAND_WIDTH = 3.0
"""Standard errors either side of the value (NannyML's ``SAMPLING_ERROR_RANGE``)."""


def _drift_method(metric: str) -> DriftMethod | None:
    try:
        return DriftMethod(metric)
    except ValueError:
        return None


def _column(
    plan: WindowPlan, window: WindowState, name: str
) -> NumericAccumulator | CategoricalAccumulator:
    if name in plan.unknown_columns or name not in plan.columns:
        raise ConfigurationError(f"{name} is not a registered column of the system")
    acc = window.accumulators.get(("column", name))
    if not isinstance(acc, NumericAccumulator | CategoricalAccumulator):
        raise InsufficientData(f"{name} was not accumulated in this window")
    return acc


def _reference_column(reference: ReferenceProfile | None, name: str) -> Any:
    if reference is None:
        raise ConfigurationError("the system has no reference dataset profile")
    column = (
        reference.prediction
        if name == PREDICTION
        else reference.features.get(name.removeprefix("feature:"))
    )
    if column is None:
        raise ConfigurationError(f"the reference profile has no {name}")
    return column


def percentile_of(objective: Objective) -> float:
    raw = objective.parameters.get("percentile", "95")
    value = float(raw)
    if not 0.0 <= value <= 100.0:
        raise ConfigurationError(f"percentile {raw} is not in [0, 100]")
    return value


def measure_window(
    objective: Objective, plan: WindowPlan, window: WindowState, reference: ReferenceProfile | None
) -> Measurement:
    """A label-free metric from the window's accumulators (raises InsufficientData)."""
    metric = objective.metric
    params = objective.parameters
    ops = window.accumulators.get(("ops",))
    if metric == "volume":
        return Measurement(float(window.n), window.n)
    if metric == "latency_percentile":
        if not isinstance(ops, OperationsAccumulator):
            raise InsufficientData("no predictions")
        value = latency_percentile(ops, percentile_of(objective))
        return Measurement(value, ops.latency_ms.count)
    method = _drift_method(metric)
    if method is not None:
        name = column_of(objective)
        acc = _column(plan, window, name)
        result = column_drift(
            _reference_column(reference, name),
            acc,
            method,
            binning=Binning(params.get("binning", Binning.EVIDENTLY.value)),
        )
        return Measurement(
            result.value, acc.count, detail=result.detail or None, approximate=result.approximate
        )
    if metric == "dataset_drift_share":
        if reference is None:
            raise ConfigurationError("the system has no reference dataset profile")
        results = []
        n = 0
        raw_threshold = params.get("method_threshold")
        for feature, column in sorted(reference.features.items()):
            found = window.accumulators.get(("column", f"feature:{feature}"))
            if (
                not isinstance(found, NumericAccumulator | CategoricalAccumulator)
                or not found.count
            ):
                continue
            n = max(n, found.count)
            results.append(
                column_drift(
                    column,
                    found,
                    params.get("method"),
                    threshold=None if raw_threshold is None else float(raw_threshold),
                    binning=Binning(params.get("binning", Binning.EVIDENTLY.value)),
                )
            )
        drift = dataset_drift_share(results)
        detail = f"{drift.n_drifted} of {drift.n_columns} features drifted"
        approximate = [r for r in results if r.approximate]
        if approximate:
            largest = max(r.bound for r in approximate)
            detail += (
                f"; {len(approximate)} compared approximately (largest bound {largest:.2g}), "
                f"e.g. {approximate[0].detail}"
            )
        else:
            detail += "; every column compared exactly"
        return Measurement(drift.share, n, detail=detail, approximate=bool(approximate))
    if metric in ("missing_rate", "out_of_range_rate", "unseen_category_rate"):
        acc = _column(plan, window, column_of(objective))
        if metric == "missing_rate":
            return Measurement(missing_rate(acc), acc.total)
        if metric == "out_of_range_rate":
            if not isinstance(acc, NumericAccumulator):
                raise ConfigurationError("out_of_range_rate needs a numeric feature")
            if acc.lower is None and acc.upper is None:
                raise ConfigurationError("the feature has no registered min or max")
            return Measurement(out_of_range_rate(acc), acc.count)
        if not isinstance(acc, CategoricalAccumulator) or acc.categories is None:
            raise ConfigurationError(
                "unseen_category_rate needs a categorical feature with categories"
            )
        return Measurement(unseen_category_rate(acc), acc.count)
    if metric.startswith("estimated_"):
        return estimation.measure(objective, window, reference)
    if metric in ("demographic_parity_difference", "disparate_impact_ratio"):
        fair = window.accumulators.get(
            ("fairness", params.get("attribute", ""), positive_label(objective))
        )
        if not isinstance(fair, FairnessAccumulator):
            raise InsufficientData("no predictions accumulated for the attribute")
        privileged = params.get("privileged")
        fn = (
            demographic_parity_difference
            if metric == "demographic_parity_difference"
            else disparate_impact_ratio
        )
        n = sum(int(row[0]) for row in fair.groups.values())
        return Measurement(fn(fair, privileged=privileged), n)
    raise ConfigurationError(f"metric {metric!r} is not a label-free metric")


def judge(
    objective: Objective,
    measure: Any,
    *,
    label_coverage: float | None = None,
    needs_labels: bool = False,
) -> Judgement:
    """Run ``measure()`` and judge its value against the objective."""
    try:
        m: Measurement = measure()
    except InsufficientData as exc:
        return Judgement(
            None, EvaluationStatus.INSUFFICIENT_DATA, 0, label_coverage, detail=str(exc)
        )
    except Exception as exc:  # a metric that cannot be computed is reported, never fatal
        return Judgement(
            None, EvaluationStatus.ERROR, 0, label_coverage, detail=f"{type(exc).__name__}: {exc}"
        )
    if not math.isfinite(m.value):
        return Judgement(
            None, EvaluationStatus.ERROR, m.n_samples, label_coverage, m.estimated, "not finite"
        )
    band = _band(objective.metric, m.value, m.sampling_error)
    judged = m.value
    detail = m.detail
    if objective.parameters.get("breach_on") == "band":
        if band is None:
            detail = _note(detail, "no sampling error: judged on the value")
        else:
            # the band's end nearest to meeting the objective
            judged = (
                band.upper if objective.comparator in (Comparator.GT, Comparator.GE) else band.lower
            )
            detail = _note(detail, f"judged on the band's bound {judged:.6g}")
    status = (
        EvaluationStatus.PASS
        if objective.comparator.met(judged, objective.threshold)
        else EvaluationStatus.BREACH
    )
    if m.n_samples < objective.min_samples and objective.metric != "volume":
        status = EvaluationStatus.INSUFFICIENT_DATA
        detail = f"{m.n_samples} samples, the objective needs {objective.min_samples}"
    needed = objective.parameters.get("min_label_coverage")
    if needs_labels and needed is not None and (label_coverage or 0.0) < float(needed):
        status = EvaluationStatus.INSUFFICIENT_DATA
        detail = f"label coverage {label_coverage or 0.0:.3f} is below {needed}"
    return Judgement(
        m.value, status, m.n_samples, label_coverage, m.estimated, detail, m.approximate, band
    )


JUDGING_OPTIONS = frozenset({"breach_on"})
"""Objective parameters that say how a value is judged, not what is measured."""


def result_parameters(objective: Objective) -> dict[str, str]:
    """The objective's parameters a result carries: the metric's (``segment`` included), not
    the judging options, so switching ``breach_on`` keeps the fingerprint and its open
    nonconformity (the objective version in the evidence says how it was judged)."""
    return {k: v for k, v in objective.parameters.items() if k not in JUDGING_OPTIONS}


def _note(detail: str | None, note: str) -> str:
    return note if detail is None else f"{detail}; {note}"


def _band(metric: str, value: float, error: float | None) -> SamplingBand | None:
    if error is None or not math.isfinite(error):
        return None
    spec = CATALOG.get(metric)
    low, high = spec.bounds if spec is not None else (None, None)
    lower = value - BAND_WIDTH * error
    upper = value + BAND_WIDTH * error
    return SamplingBand(
        sampling_error=error,
        lower=lower if low is None else max(low, lower),
        upper=upper if high is None else min(high, upper),
        multiplier=BAND_WIDTH,
    )
