"""The evaluator's metric maths: pure, vectorised, no I/O.

A window's events go into accumulators (``accumulators``) built against the system's reference
profile (``reference``); the metric functions (``drift``, ``performance``, ``fairness``,
``quality``, ``cbpe``, ``operations``) turn accumulators into floats, or raise
``InsufficientData`` when the window cannot support the metric.

Exports load on first use (PEP 562), so a process that needs one module (the registry builds
reference profiles) does not pay for the others' imports (scipy, pandas). A new export goes in
``_MODULES``, in ``__all__`` and in the ``TYPE_CHECKING`` imports (mypy reads only the static
two; ``tests/shared/stats/test_exports.py`` checks the three agree).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_MODULES: dict[str, tuple[str, ...]] = {
    "_common": ("InsufficientData", "State", "category_key", "category_keys"),
    "accumulators": (
        "CategoricalAccumulator",
        "ConfusionAccumulator",
        "ExpectedConfusionAccumulator",
        "FairnessAccumulator",
        "NumericAccumulator",
        "OperationsAccumulator",
        "QuantileSketch",
        "RegressionAccumulator",
        "Reservoir",
    ),
    "cbpe": (
        "ExpectedConfusion",
        "estimated_accuracy",
        "estimated_f1",
        "estimated_precision",
        "estimated_recall",
        "expected_confusion",
    ),
    "drift": (
        "DEFAULT_DRIFT_SHARE",
        "DEFAULT_THRESHOLDS",
        "Binning",
        "DatasetDrift",
        "DriftMethod",
        "DriftResult",
        "column_drift",
        "dataset_drift_share",
        "default_method",
    ),
    "fairness": (
        "demographic_parity_difference",
        "disparate_impact_ratio",
        "equal_opportunity_difference",
    ),
    "operations": ("label_coverage", "label_delay_percentile", "latency_percentile", "volume"),
    "performance": (
        "accuracy",
        "brier",
        "expected_calibration_error",
        "f1",
        "log_loss",
        "mae",
        "mape",
        "precision",
        "r2",
        "recall",
        "rmse",
        "roc_auc",
        "roc_auc_error_bound",
    ),
    "quality": ("missing_rate", "out_of_range_rate", "unseen_category_rate"),
    "reference": (
        "CategoricalReference",
        "ColumnReference",
        "NumericReference",
        "ReferenceProfile",
    ),
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


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
