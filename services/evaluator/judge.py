"""Computing an objective's metric over one window, and judging it (pure).

Label-free metrics read the window's accumulators; label metrics read the window's joined
rows (:class:`LabelRows`, from the durable join state) as of a label cut-off. ``judge`` turns a
value into pass / breach / insufficient_data, or error when the metric could not be computed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from shared.contracts import EvaluationStatus, Objective, Task
from shared.stats import (
    Binning,
    CategoricalAccumulator,
    ConfusionAccumulator,
    ExpectedConfusionAccumulator,
    FairnessAccumulator,
    InsufficientData,
    NumericAccumulator,
    OperationsAccumulator,
    ReferenceProfile,
    RegressionAccumulator,
    accuracy,
    brier,
    column_drift,
    dataset_drift_share,
    demographic_parity_difference,
    disparate_impact_ratio,
    equal_opportunity_difference,
    estimated_accuracy,
    estimated_f1,
    estimated_precision,
    estimated_recall,
    expected_calibration_error,
    f1,
    label_coverage,
    label_delay_percentile,
    latency_percentile,
    log_loss,
    mae,
    mape,
    missing_rate,
    out_of_range_rate,
    precision,
    r2,
    recall,
    rmse,
    roc_auc,
    unseen_category_rate,
)
from shared.stats.drift import DriftMethod

from .plan import PREDICTION, WindowPlan, column_of, positive_label
from .window import WindowState

__all__ = ["Judgement", "LabelRows", "Measurement", "judge", "measure_labels", "measure_window"]


@dataclass(frozen=True, slots=True)
class Measurement:
    value: float
    n_samples: int
    estimated: bool = False
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Judgement:
    value: float | None
    status: EvaluationStatus
    n_samples: int
    label_coverage: float | None
    estimated: bool = False
    detail: str | None = None


class ConfigurationError(ValueError):
    """The objective cannot be computed for this system (unknown feature, no reference...)."""


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


def _percentile(objective: Objective) -> float:
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
        value = latency_percentile(ops, _percentile(objective))
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
        detail = "computed on a uniform sample of the window" if result.approximate else None
        return Measurement(result.value, acc.count, detail=detail)
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
        return Measurement(
            drift.share, n, detail=f"{drift.n_drifted} of {drift.n_columns} features drifted"
        )
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
        cbpe = window.accumulators.get(("cbpe", positive_label(objective)))
        if not isinstance(cbpe, ExpectedConfusionAccumulator):
            raise InsufficientData("no scored predictions accumulated")
        estimate = {
            "estimated_accuracy": estimated_accuracy,
            "estimated_precision": estimated_precision,
            "estimated_recall": estimated_recall,
            "estimated_f1": estimated_f1,
        }[metric](cbpe)
        return Measurement(estimate, cbpe.n, estimated=True)
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


@dataclass(frozen=True, slots=True)
class LabelRows:
    """A window's accepted predictions and, for those labelled before the cut-off, outcomes."""

    predicted: npt.NDArray[Any]
    actual: npt.NDArray[Any]
    """Object array, None where the label has not arrived (before the cut-off)."""
    scores: list[dict[str, float] | None]
    attributes: list[dict[str, Any] | None]
    delay_s: npt.NDArray[np.float64]
    """Outcome time minus prediction time, NaN where unlabelled."""

    @property
    def total(self) -> int:
        return int(self.predicted.size)

    @property
    def labelled(self) -> npt.NDArray[np.bool_]:
        return np.asarray([a is not None for a in self.actual.tolist()], dtype=np.bool_)

    @property
    def coverage(self) -> float | None:
        return float(self.labelled.mean()) if self.total else None


def _scores_of(rows: LabelRows, mask: npt.NDArray[np.bool_], label: str) -> npt.NDArray[np.float64]:
    chosen = [s for s, m in zip(rows.scores, mask.tolist(), strict=True) if m]
    return np.asarray(
        [math.nan if s is None or label not in s else s[label] for s in chosen], dtype=np.float64
    )


def measure_labels(objective: Objective, task: Task, rows: LabelRows) -> Measurement:
    """A label metric over the window's labelled rows (raises InsufficientData)."""
    metric = objective.metric
    labelled = rows.labelled
    n = int(labelled.sum())
    if metric == "label_coverage":
        ops = OperationsAccumulator()
        ops.update_predictions(np.full(rows.total, math.nan))
        ops.update_outcomes(rows.delay_s[labelled])
        return Measurement(label_coverage(ops), rows.total)
    if metric == "label_delay_percentile":
        ops = OperationsAccumulator()
        ops.update_outcomes(rows.delay_s[labelled])
        return Measurement(label_delay_percentile(ops, _percentile(objective)), n)
    if n == 0:
        raise InsufficientData("no labelled predictions in the window")
    predicted = rows.predicted[labelled]
    actual = rows.actual[labelled]
    if metric in ("mae", "rmse", "mape", "r2"):
        if task is not Task.REGRESSION:
            raise ConfigurationError(f"{metric} needs a regression system")
        reg = RegressionAccumulator()
        reg.update(_floats(actual), _floats(predicted))
        regression = {"mae": mae, "rmse": rmse, "mape": mape, "r2": r2}[metric]
        return Measurement(regression(reg), reg.n)
    label = positive_label(objective)
    if metric == "equal_opportunity_difference":
        fair = FairnessAccumulator(positive_label=label)
        attribute = objective.parameters.get("attribute", "")
        groups = np.asarray(
            [None if a is None else a.get(attribute) for a in rows.attributes], dtype=object
        )
        fair.update(groups, rows.predicted)
        fair.update_labelled(groups[labelled], predicted, actual)
        value = equal_opportunity_difference(
            fair, privileged=objective.parameters.get("privileged")
        )
        return Measurement(value, n)
    scored = metric in ("roc_auc", "log_loss", "brier", "calibration_error")
    explicit = objective.parameters.get("positive_label")
    conf = ConfusionAccumulator(positive_label=label if scored or explicit else None)
    conf.update(actual, predicted, _scores_of(rows, labelled, label) if scored else None)
    if metric == "accuracy":
        return Measurement(accuracy(conf), conf.n)
    if metric in ("precision", "recall", "f1"):
        fn = {"precision": precision, "recall": recall, "f1": f1}[metric]
        return Measurement(fn(conf, positive_label=explicit), conf.n)
    if metric == "roc_auc":
        return Measurement(roc_auc(conf), conf.n_scored)
    if metric == "log_loss":
        return Measurement(log_loss(conf), conf.n_scored)
    if metric == "brier":
        return Measurement(brier(conf), conf.n_scored)
    if metric == "calibration_error":
        return Measurement(expected_calibration_error(conf), conf.n_scored)
    raise ConfigurationError(f"metric {metric!r} is not a label metric")


def _floats(values: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    return np.asarray(
        [v if isinstance(v, int | float) and not isinstance(v, bool) else math.nan for v in values],
        dtype=np.float64,
    )


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
    status = (
        EvaluationStatus.PASS
        if objective.comparator.met(m.value, objective.threshold)
        else EvaluationStatus.BREACH
    )
    detail = m.detail
    if m.n_samples < objective.min_samples and objective.metric != "volume":
        status = EvaluationStatus.INSUFFICIENT_DATA
        detail = f"{m.n_samples} samples, the objective needs {objective.min_samples}"
    needed = objective.parameters.get("min_label_coverage")
    if needs_labels and needed is not None and (label_coverage or 0.0) < float(needed):
        status = EvaluationStatus.INSUFFICIENT_DATA
        detail = f"label coverage {label_coverage or 0.0:.3f} is below {needed}"
    return Judgement(m.value, status, m.n_samples, label_coverage, m.estimated, detail)
