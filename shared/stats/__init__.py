"""The evaluator's metric maths: pure, vectorised, no I/O.

A window's events go into accumulators (``accumulators``) built against the system's reference
profile (``reference``); the metric functions (``drift``, ``performance``, ``fairness``,
``quality``, ``cbpe``, ``operations``) turn accumulators into floats, or raise
``InsufficientData`` when the window cannot support the metric.
"""

from ._common import InsufficientData, State, category_key, category_keys
from .accumulators import (
    CategoricalAccumulator,
    ConfusionAccumulator,
    ExpectedConfusionAccumulator,
    FairnessAccumulator,
    NumericAccumulator,
    OperationsAccumulator,
    QuantileSketch,
    RegressionAccumulator,
    Reservoir,
)
from .cbpe import (
    ExpectedConfusion,
    estimated_accuracy,
    estimated_f1,
    estimated_precision,
    estimated_recall,
    expected_confusion,
)
from .drift import (
    DEFAULT_DRIFT_SHARE,
    DEFAULT_THRESHOLDS,
    Binning,
    DatasetDrift,
    DriftMethod,
    DriftResult,
    column_drift,
    dataset_drift_share,
    default_method,
)
from .fairness import (
    demographic_parity_difference,
    disparate_impact_ratio,
    equal_opportunity_difference,
)
from .operations import label_coverage, label_delay_percentile, latency_percentile, volume
from .performance import (
    accuracy,
    brier,
    expected_calibration_error,
    f1,
    log_loss,
    mae,
    mape,
    precision,
    r2,
    recall,
    rmse,
    roc_auc,
    roc_auc_error_bound,
)
from .quality import missing_rate, out_of_range_rate, unseen_category_rate
from .reference import (
    CategoricalReference,
    ColumnReference,
    NumericReference,
    ReferenceProfile,
)

__all__ = [
    "DEFAULT_DRIFT_SHARE",
    "DEFAULT_THRESHOLDS",
    "Binning",
    "CategoricalAccumulator",
    "CategoricalReference",
    "ColumnReference",
    "ConfusionAccumulator",
    "DatasetDrift",
    "DriftMethod",
    "DriftResult",
    "ExpectedConfusion",
    "ExpectedConfusionAccumulator",
    "FairnessAccumulator",
    "InsufficientData",
    "NumericAccumulator",
    "NumericReference",
    "OperationsAccumulator",
    "QuantileSketch",
    "ReferenceProfile",
    "RegressionAccumulator",
    "Reservoir",
    "State",
    "accuracy",
    "brier",
    "category_key",
    "category_keys",
    "column_drift",
    "dataset_drift_share",
    "default_method",
    "demographic_parity_difference",
    "disparate_impact_ratio",
    "equal_opportunity_difference",
    "estimated_accuracy",
    "estimated_f1",
    "estimated_precision",
    "estimated_recall",
    "expected_calibration_error",
    "expected_confusion",
    "f1",
    "label_coverage",
    "label_delay_percentile",
    "latency_percentile",
    "log_loss",
    "mae",
    "mape",
    "missing_rate",
    "out_of_range_rate",
    "precision",
    "r2",
    "recall",
    "rmse",
    "roc_auc",
    "roc_auc_error_bound",
    "unseen_category_rate",
    "volume",
]
