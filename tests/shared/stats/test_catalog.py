"""The metric catalog names exactly the drift methods and binnings the stats implement."""

from __future__ import annotations

from shared.catalog import CATALOG, Direction, Family
from shared.stats import DEFAULT_THRESHOLDS, Binning, DriftMethod


def test_every_drift_method_is_a_catalog_metric_with_evidentlys_direction() -> None:
    for method in DriftMethod:
        spec = CATALOG[method.value]
        assert spec.family is Family.DRIFT
        assert not spec.needs_labels
        p_value = method in (DriftMethod.KS, DriftMethod.CHISQUARE)
        expected = Direction.HIGHER_IS_BETTER if p_value else Direction.LOWER_IS_BETTER
        assert spec.direction is expected
        assert str(DEFAULT_THRESHOLDS[method]).rstrip("0") in spec.description


def test_parameter_choices_are_the_implemented_ones() -> None:
    parameters = {p.name: p for p in CATALOG["dataset_drift_share"].parameters}
    assert set(parameters["method"].choices or ()) == {m.value for m in DriftMethod}
    assert set(parameters["binning"].choices or ()) == {b.value for b in Binning}


def test_every_implemented_metric_is_in_the_catalog() -> None:
    implemented = {
        "accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "brier",
        "calibration_error", "mae", "rmse", "mape", "r2", "estimated_accuracy",
        "estimated_precision", "estimated_recall", "estimated_f1", "estimated_roc_auc",
        "estimated_mae", "estimated_rmse", "equalized_odds_difference", "dataset_drift_share",
        "missing_rate", "out_of_range_rate", "unseen_category_rate",
        "demographic_parity_difference", "equal_opportunity_difference",
        "disparate_impact_ratio", "volume", "latency_percentile", "label_coverage",
        "label_delay_percentile",
    } | {m.value for m in DriftMethod}  # fmt: skip
    assert implemented == set(CATALOG)


def test_every_performance_metric_takes_a_segment_and_a_band_option() -> None:
    for spec in CATALOG.values():
        names = {p.name for p in spec.parameters}
        performance = spec.family is Family.PERFORMANCE
        assert ({"segment", "breach_on"} <= names) == performance, spec.id
        if performance:
            low, high = spec.bounds
            assert low is not None or high is not None, spec.id
