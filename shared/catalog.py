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
    bounds: tuple[float | None, float | None] = (None, None)
    """The values the metric can take; a sampling-error band is clipped to them."""


_CLASSIFICATION = frozenset({Task.BINARY_CLASSIFICATION, Task.MULTICLASS_CLASSIFICATION})
_BINARY = frozenset({Task.BINARY_CLASSIFICATION})
_REGRESSION = frozenset({Task.REGRESSION})

_DRIFT_METHODS = ("psi", "ks", "wasserstein", "jensenshannon", "chisquare", "hellinger")
_BINNINGS = ("evidently", "reference")

_POSITIVE_LABEL = ParameterSpec(
    name="positive_label",
    description="Class treated as positive (binary metrics); its probability score is used.",
    required=False,
)
_AVERAGED_POSITIVE_LABEL = ParameterSpec(
    name="positive_label",
    description="Class treated as positive; without it the macro average over all classes.",
    required=False,
)
_FEATURE = ParameterSpec(
    name="feature",
    description="Feature to compare with the reference dataset; omit for the model's prediction.",
    required=False,
)
_REQUIRED_FEATURE = ParameterSpec(name="feature", description="Feature to check.")
_BINNING = ParameterSpec(
    name="binning",
    description=(
        "Bins of numeric columns: 'evidently' (Evidently's, the default) or 'reference' "
        "(the reference dataset's 10 quantile bins, exact for any window size)."
    ),
    required=False,
    choices=_BINNINGS,
)
_ATTRIBUTE = ParameterSpec(name="attribute", description="Prediction attribute naming the group.")
_PRIVILEGED = ParameterSpec(
    name="privileged",
    description="Group compared with every other; without it the best and worst groups.",
    required=False,
)
_PERCENTILE = ParameterSpec(name="percentile", description="Percentile, a number in [0, 100].")
_SEGMENT = ParameterSpec(
    name="segment",
    description=(
        "Restrict the metric to the predictions whose attribute has one value: "
        "'attribute=value' (a declared attribute); each segment is its own objective and "
        "fingerprint."
    ),
    required=False,
)
_BREACH_ON = ParameterSpec(
    name="breach_on",
    description=(
        "'value' (the default): the value breaches when it misses the threshold; 'band': only "
        "when the whole sampling-error band (value +/- 3 standard errors, in the evidence) "
        "misses it, so a small window's noise does not page."
    ),
    required=False,
    choices=("value", "band"),
)
_MIN_LABEL_COVERAGE = ParameterSpec(
    name="min_label_coverage",
    description=(
        "Share of the window's predictions whose outcome must have arrived, a number in [0, 1]; "
        "below it the window is insufficient data instead of a verdict on a few early labels."
    ),
    required=False,
)
_PERFORMANCE_OPTIONS = (_SEGMENT, _BREACH_ON)
_RATE = (0.0, 1.0)
_NON_NEGATIVE = (0.0, None)


def _performance(
    metric_id: str,
    description: str,
    direction: Direction,
    tasks: frozenset[Task],
    parameters: tuple[ParameterSpec, ...] = (),
    bounds: tuple[float | None, float | None] = _RATE,
) -> MetricSpec:
    return MetricSpec(
        id=metric_id,
        family=Family.PERFORMANCE,
        description=description,
        direction=direction,
        needs_labels=True,
        tasks=tasks,
        parameters=(*parameters, *_PERFORMANCE_OPTIONS, _MIN_LABEL_COVERAGE),
        bounds=bounds,
    )


def _estimated(metric_id: str, description: str) -> MetricSpec:
    return MetricSpec(
        id=metric_id,
        family=Family.PERFORMANCE,
        description=(
            f"{description} Estimated before labels arrive from the scores, read through the "
            "reference's calibration (CBPE, as NannyML)."
        ),
        direction=Direction.HIGHER_IS_BETTER,
        needs_labels=False,
        tasks=_BINARY,
        parameters=(_POSITIVE_LABEL, *_PERFORMANCE_OPTIONS),
        bounds=_RATE,
    )


def _estimated_loss(metric_id: str, description: str) -> MetricSpec:
    return MetricSpec(
        id=metric_id,
        family=Family.PERFORMANCE,
        description=(
            f"{description} Estimated before labels arrive by the reference's loss model "
            "(direct loss estimation, as NannyML's DLE); needs a reference with its outcomes."
        ),
        direction=Direction.LOWER_IS_BETTER,
        needs_labels=False,
        tasks=_REGRESSION,
        parameters=_PERFORMANCE_OPTIONS,
        bounds=_NON_NEGATIVE,
    )


def _drift(metric_id: str, description: str, direction: Direction, binned: bool) -> MetricSpec:
    return MetricSpec(
        id=metric_id,
        family=Family.DRIFT,
        description=description,
        direction=direction,
        needs_labels=False,
        parameters=(_FEATURE, _BINNING) if binned else (_FEATURE,),
    )


def _quality(metric_id: str, description: str) -> MetricSpec:
    return MetricSpec(
        id=metric_id,
        family=Family.DATA_QUALITY,
        description=description,
        direction=Direction.LOWER_IS_BETTER,
        needs_labels=False,
        parameters=(_REQUIRED_FEATURE,),
    )


def _fairness(
    metric_id: str, description: str, direction: Direction, needs_labels: bool
) -> MetricSpec:
    return MetricSpec(
        id=metric_id,
        family=Family.FAIRNESS,
        description=description,
        direction=direction,
        needs_labels=needs_labels,
        tasks=_CLASSIFICATION,
        parameters=(_ATTRIBUTE, _PRIVILEGED, _POSITIVE_LABEL)
        + ((_MIN_LABEL_COVERAGE,) if needs_labels else ()),
    )


_HIGHER = Direction.HIGHER_IS_BETTER
_LOWER = Direction.LOWER_IS_BETTER

CATALOG: dict[str, MetricSpec] = {
    spec.id: spec
    for spec in (
        _performance(
            "accuracy",
            "Share of labelled predictions equal to the actual outcome.",
            _HIGHER,
            _CLASSIFICATION,
        ),
        _performance(
            "precision",
            "Share of positive predictions that are right (scikit-learn's precision_score).",
            _HIGHER,
            _CLASSIFICATION,
            (_AVERAGED_POSITIVE_LABEL,),
        ),
        _performance(
            "recall",
            "Share of actual positives predicted positive (scikit-learn's recall_score).",
            _HIGHER,
            _CLASSIFICATION,
            (_AVERAGED_POSITIVE_LABEL,),
        ),
        _performance(
            "f1",
            "Harmonic mean of precision and recall (scikit-learn's f1_score).",
            _HIGHER,
            _CLASSIFICATION,
            (_AVERAGED_POSITIVE_LABEL,),
        ),
        _performance(
            "roc_auc",
            "Area under the ROC curve of the positive class's score.",
            _HIGHER,
            _BINARY,
            (_POSITIVE_LABEL,),
        ),
        _performance(
            "log_loss",
            "Mean negative log-likelihood of the actual outcome under the scores.",
            _LOWER,
            _BINARY,
            (_POSITIVE_LABEL,),
            _NON_NEGATIVE,
        ),
        _performance(
            "brier",
            "Mean squared difference between the positive score and the outcome.",
            _LOWER,
            _BINARY,
            (_POSITIVE_LABEL,),
        ),
        _performance(
            "calibration_error",
            "Expected calibration error: |positive rate - mean score| on 10 equal-width score "
            "bins, weighted by the bins' shares.",
            _LOWER,
            _BINARY,
            (_POSITIVE_LABEL,),
        ),
        _performance("mae", "Mean absolute error.", _LOWER, _REGRESSION, (), _NON_NEGATIVE),
        _performance("rmse", "Root mean squared error.", _LOWER, _REGRESSION, (), _NON_NEGATIVE),
        _performance(
            "mape",
            "Mean absolute percentage error, as a fraction (0.1 = 10 %).",
            _LOWER,
            _REGRESSION,
            (),
            _NON_NEGATIVE,
        ),
        _performance(
            "r2", "Coefficient of determination R^2.", _HIGHER, _REGRESSION, (), (None, 1.0)
        ),
        _estimated("estimated_accuracy", "Expected accuracy."),
        _estimated("estimated_precision", "Expected precision."),
        _estimated("estimated_recall", "Expected recall."),
        _estimated("estimated_f1", "Expected F1."),
        _estimated(
            "estimated_roc_auc",
            "Expected area under the ROC curve: rows ranked by score, each an expected positive "
            "by its calibrated probability.",
        ),
        _estimated_loss("estimated_mae", "Expected mean absolute error."),
        _estimated_loss("estimated_rmse", "Expected root mean squared error."),
        _drift(
            "psi",
            "Population stability index against the reference (Evidently: drift at >= 0.1).",
            _LOWER,
            binned=True,
        ),
        _drift(
            "ks",
            "Two-sample Kolmogorov-Smirnov p-value, numeric only (Evidently: drift at <= 0.05).",
            _HIGHER,
            binned=False,
        ),
        _drift(
            "wasserstein",
            "Wasserstein distance divided by the reference's standard deviation, numeric only "
            "(Evidently: drift at >= 0.1).",
            _LOWER,
            binned=False,
        ),
        _drift(
            "jensenshannon",
            "Jensen-Shannon distance against the reference (Evidently: drift at >= 0.1).",
            _LOWER,
            binned=True,
        ),
        _drift(
            "chisquare",
            "Chi-square test p-value, categorical only (Evidently: drift at < 0.05).",
            _HIGHER,
            binned=False,
        ),
        _drift(
            "hellinger",
            "Hellinger distance against the reference (Evidently: drift at >= 0.1).",
            _LOWER,
            binned=True,
        ),
        MetricSpec(
            id="dataset_drift_share",
            family=Family.DRIFT,
            description=(
                "Share of features that drifted by the method's Evidently threshold "
                "(Evidently's dataset drift: share >= 0.5)."
            ),
            direction=_LOWER,
            needs_labels=False,
            parameters=(
                ParameterSpec(
                    name="method",
                    description=(
                        "Drift method for every feature; default wasserstein for numeric and "
                        "jensenshannon for categorical features."
                    ),
                    required=False,
                    choices=_DRIFT_METHODS,
                ),
                ParameterSpec(
                    name="method_threshold",
                    description="Per-feature drift threshold; default: the method's Evidently one.",
                    required=False,
                ),
                _BINNING,
            ),
        ),
        _quality("missing_rate", "Share of the feature's values that are missing."),
        _quality(
            "out_of_range_rate",
            "Share of the numeric feature's values outside its registered min/max.",
        ),
        _quality(
            "unseen_category_rate",
            "Share of the categorical feature's values outside its registered categories.",
        ),
        _fairness(
            "demographic_parity_difference",
            "Largest gap in positive-prediction rate between groups of the attribute.",
            _LOWER,
            needs_labels=False,
        ),
        _fairness(
            "equal_opportunity_difference",
            "Largest gap in true positive rate between groups of the attribute.",
            _LOWER,
            needs_labels=True,
        ),
        _fairness(
            "disparate_impact_ratio",
            "Smallest ratio of positive-prediction rates between groups (1 is parity).",
            _HIGHER,
            needs_labels=False,
        ),
        _fairness(
            "equalized_odds_difference",
            "Larger of the largest gaps in true positive rate and in false positive rate "
            "between groups of the attribute (fairlearn's equalized_odds_difference).",
            _LOWER,
            needs_labels=True,
        ),
        MetricSpec(
            id="volume",
            family=Family.OPERATIONS,
            description="Number of predictions in the window.",
            direction=Direction.HIGHER_IS_BETTER,
            needs_labels=False,
        ),
        MetricSpec(
            id="latency_percentile",
            family=Family.OPERATIONS,
            description="Prediction latency in milliseconds at a percentile (1 % accuracy).",
            direction=_LOWER,
            needs_labels=False,
            parameters=(_PERCENTILE,),
        ),
        MetricSpec(
            id="label_coverage",
            family=Family.OPERATIONS,
            description="Share of the window's predictions whose outcome has arrived.",
            direction=_HIGHER,
            needs_labels=False,
        ),
        MetricSpec(
            id="label_delay_percentile",
            family=Family.OPERATIONS,
            description="Seconds from prediction to outcome at a percentile (1 % accuracy).",
            direction=_LOWER,
            needs_labels=True,
            parameters=(_PERCENTILE, _MIN_LABEL_COVERAGE),
        ),
    )
}


def get_metric(metric_id: str) -> MetricSpec | None:
    return CATALOG.get(metric_id)
