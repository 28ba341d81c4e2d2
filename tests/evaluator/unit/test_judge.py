"""Judging a value against an objective (pass, breach, insufficient data, error; thresholds in
both directions; the sampling band and ``breach_on: band``) and measuring label-free metrics
from one window's accumulators (``services.evaluator.judge``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fairlearn.metrics import (  # type: ignore[import-untyped]
    demographic_parity_difference,
    demographic_parity_ratio,
)
from scipy.spatial.distance import jensenshannon
from scipy.stats import chisquare, ks_2samp, wasserstein_distance

from services.evaluator.judge import (
    ConfigurationError,
    Measurement,
    judge,
    measure_window,
    percentile_of,
    result_parameters,
)
from services.evaluator.plan import WindowPlan
from services.evaluator.window import WindowState
from shared.catalog import CATALOG
from shared.contracts import (
    EvaluationStatus,
    FeatureSpec,
    FeatureType,
    Objective,
    PredictionEvent,
)
from shared.stats import InsufficientData, ReferenceProfile

from ..conftest import objective, system
from .events import columns, every_row, prediction

PASS, BREACH = EvaluationStatus.PASS, EvaluationStatus.BREACH
INSUFFICIENT, ERROR = EvaluationStatus.INSUFFICIENT_DATA, EvaluationStatus.ERROR


def measured(value: float, n: int = 100, **kw: Any) -> Callable[[], Measurement]:
    return lambda: Measurement(value, n, **kw)


@pytest.mark.parametrize(
    ("comparator", "value", "status"),
    [
        ("ge", 0.80, PASS),  # exactly on the threshold
        ("ge", 0.79, BREACH),
        ("gt", 0.80, BREACH),
        ("gt", 0.81, PASS),
        ("le", 0.80, PASS),
        ("le", 0.81, BREACH),
        ("lt", 0.80, BREACH),
        ("lt", 0.79, PASS),
    ],
)
def test_a_value_meets_the_threshold_in_the_objectives_direction(
    comparator: str, value: float, status: EvaluationStatus
) -> None:
    verdict = judge(objective("volume", 0.80, comparator), measured(value))
    assert verdict.status is status
    assert verdict.value == value and verdict.n_samples == 100


def test_a_metric_without_enough_data_is_insufficient_not_a_breach() -> None:
    def no_data() -> Measurement:
        raise InsufficientData("no labelled predictions in the window")

    verdict = judge(objective("accuracy", 0.9), no_data, label_coverage=0.25)
    assert verdict.status is INSUFFICIENT
    assert verdict.value is None and verdict.n_samples == 0
    assert verdict.detail == "no labelled predictions in the window"
    assert verdict.label_coverage == 0.25


def test_a_metric_that_cannot_be_computed_is_an_error_naming_why() -> None:
    def broken() -> Measurement:
        raise ConfigurationError("feature:zz is not a registered column of the system")

    verdict = judge(objective("psi", 0.2, "lt"), broken)
    assert verdict.status is ERROR and verdict.value is None
    assert verdict.detail == (
        "ConfigurationError: feature:zz is not a registered column of the system"
    )


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_value_that_is_not_finite_is_an_error(value: float) -> None:
    verdict = judge(objective("mae", 1.0, "lt"), measured(value, 40))
    assert verdict.status is ERROR and verdict.detail == "not finite"
    assert verdict.value is None and verdict.n_samples == 40


def test_fewer_samples_than_the_objective_needs_is_insufficient_data() -> None:
    target = objective("accuracy", 0.9, min_samples=50)
    short = judge(target, measured(0.5, 49))
    assert short.status is INSUFFICIENT
    assert short.detail == "49 samples, the objective needs 50"
    assert short.value == 0.5  # the value is still reported
    assert judge(target, measured(0.5, 50)).status is BREACH


def test_volume_is_judged_however_few_predictions_came() -> None:
    # a volume objective is about having few predictions: min_samples must not hide its breach
    verdict = judge(objective("volume", 100, "ge", min_samples=500), measured(3.0, 3))
    assert verdict.status is BREACH


def test_label_coverage_below_the_objectives_minimum_is_insufficient_data() -> None:
    target = objective("accuracy", 0.9, parameters={"min_label_coverage": "0.5"})
    low = judge(target, measured(0.95), label_coverage=0.4, needs_labels=True)
    assert low.status is INSUFFICIENT
    assert low.detail == "label coverage 0.400 is below 0.5"
    unknown = judge(target, measured(0.95), label_coverage=None, needs_labels=True)
    assert unknown.status is INSUFFICIENT
    assert judge(target, measured(0.95), label_coverage=0.5, needs_labels=True).status is PASS
    # a label-free metric does not wait for labels
    assert judge(target, measured(0.95), label_coverage=0.0).status is PASS


def test_label_metrics_may_carry_the_min_label_coverage_judge_honours() -> None:
    label_metrics = [s for s in CATALOG.values() if s.needs_labels]
    assert label_metrics
    for spec in label_metrics:
        assert "min_label_coverage" in {p.name for p in spec.parameters}, spec.id


def test_a_sampling_error_becomes_a_band_of_three_standard_errors() -> None:
    verdict = judge(objective("mae", 1.0, "lt"), measured(0.5, sampling_error=0.1))
    assert verdict.band is not None
    assert verdict.band.lower == pytest.approx(0.2) and verdict.band.upper == pytest.approx(0.8)
    assert verdict.band.sampling_error == 0.1 and verdict.band.multiplier == 3.0


def test_the_band_is_clipped_to_the_metrics_range() -> None:
    rate = judge(objective("accuracy", 0.5), measured(0.95, sampling_error=0.05)).band
    assert rate is not None and rate.lower == pytest.approx(0.80) and rate.upper == 1.0
    loss = judge(objective("mae", 1.0, "lt"), measured(0.1, sampling_error=0.1)).band
    assert loss is not None and loss.lower == 0.0 and loss.upper == pytest.approx(0.4)


def test_no_band_without_a_finite_sampling_error() -> None:
    assert judge(objective("accuracy", 0.5), measured(0.9)).band is None
    assert judge(objective("accuracy", 0.5), measured(0.9, sampling_error=np.nan)).band is None


def test_breach_on_band_for_an_upper_limit_judges_the_bands_lower_bound() -> None:
    # mae 0.30 +/- 3 * 0.05 = [0.15, 0.45]: the value misses "< 0.2", the band does not
    target = objective("mae", 0.2, "lt", parameters={"breach_on": "band"})
    verdict = judge(target, measured(0.30, sampling_error=0.05))
    assert verdict.status is PASS and verdict.value == 0.30
    assert verdict.detail == "judged on the band's bound 0.15"
    assert judge(objective("mae", 0.2, "lt"), measured(0.30, sampling_error=0.05)).status is BREACH
    # the whole band above the limit: breach
    assert judge(target, measured(0.40, sampling_error=0.05)).status is BREACH


def test_breach_on_band_for_a_lower_limit_judges_the_bands_upper_bound() -> None:
    target = objective("accuracy", 0.80, "gt", parameters={"breach_on": "band"})
    assert judge(target, measured(0.75, sampling_error=0.02)).status is PASS  # upper 0.81
    assert judge(target, measured(0.73, sampling_error=0.02)).status is BREACH  # upper 0.79


def test_breach_on_band_without_a_sampling_error_judges_the_value_and_says_so() -> None:
    target = objective("psi", 0.2, "lt", parameters={"breach_on": "band"})
    verdict = judge(target, measured(0.25, detail="exact"))
    assert verdict.status is BREACH
    assert verdict.detail == "exact; no sampling error: judged on the value"


def test_a_result_carries_the_metrics_parameters_not_the_judging_options() -> None:
    target = objective(
        "accuracy",
        0.8,
        parameters={"breach_on": "band", "segment": "region=eu", "min_label_coverage": "0.5"},
    )
    assert result_parameters(target) == {"segment": "region=eu", "min_label_coverage": "0.5"}


def test_a_percentile_defaults_to_95_and_must_lie_in_0_to_100() -> None:
    assert percentile_of(objective("latency_percentile", 200, "lt")) == 95.0
    assert (
        percentile_of(objective("latency_percentile", 200, "lt", parameters={"percentile": "0"}))
        == 0.0
    )
    with pytest.raises(ConfigurationError, match=r"percentile 100\.5 is not in"):
        percentile_of(
            objective("latency_percentile", 200, "lt", parameters={"percentile": "100.5"})
        )


# measuring label-free metrics from a window's accumulators


def window_of(
    objectives: list[Objective], events: list[PredictionEvent]
) -> tuple[WindowPlan, WindowState]:
    plan = WindowPlan.build(system(objectives), 60, objectives, None)
    window = WindowState(start=1_800_000_000, size=60, reference_hash=None)
    batch = columns(events)
    window.update(plan, batch, every_row(batch), 0, batch.offsets)
    return plan, window


def measure(target: Objective, events: list[PredictionEvent]) -> Measurement:
    plan, window = window_of([target], events)
    return measure_window(target, plan, window, None)


def test_volume_counts_the_windows_predictions() -> None:
    found = measure(objective("volume", 1), [prediction(i) for i in range(7)])
    assert (found.value, found.n_samples) == (7.0, 7)


def test_missing_rate_is_the_share_of_absent_values() -> None:
    values = [1.0, None, 3.0, None, 5.0]  # x3 is nullable
    found = measure(
        objective("missing_rate", 0.1, "lt", parameters={"feature": "x3"}),
        [prediction(i, features={"x3": v}) for i, v in enumerate(values)],
    )
    assert (found.value, found.n_samples) == (2 / 5, 5)


def test_out_of_range_rate_counts_values_outside_the_features_min_and_max() -> None:
    values = [-5.0, -4.0, 0.0, 4.0, 4.0001, 9.0]  # x2 is registered with [-4, 4]
    found = measure(
        objective("out_of_range_rate", 0.1, "lt", parameters={"feature": "x2"}),
        [prediction(i, features={"x2": v}) for i, v in enumerate(values)],
    )
    assert (found.value, found.n_samples) == (3 / 6, 6)


def test_unseen_category_rate_counts_values_outside_the_registered_categories() -> None:
    values = ["a", "d", "b", "e", "c", "a", "zz", "b"]  # c's categories: a, b, c
    found = measure(
        objective("unseen_category_rate", 0.1, "lt", parameters={"feature": "c"}),
        [prediction(i, features={"c": v}) for i, v in enumerate(values)],
    )
    assert (found.value, found.n_samples) == (3 / 8, 8)


def test_latency_percentile_is_within_the_sketchs_one_percent_of_the_exact_one() -> None:
    latencies = np.random.default_rng(5).lognormal(4.0, 0.6, 2_000)
    target = objective("latency_percentile", 200, "lt", parameters={"percentile": "90"})
    found = measure(target, [prediction(i, latency_ms=float(v)) for i, v in enumerate(latencies)])
    assert found.n_samples == 2_000
    exact = np.percentile(latencies, 90)
    assert found.value == pytest.approx(exact, rel=0.02)


def test_demographic_parity_matches_fairlearn() -> None:
    rng = np.random.default_rng(9)
    groups = rng.choice(["f", "m", "x"], 600, p=[0.45, 0.45, 0.1])
    predicted = (rng.uniform(size=600) < np.where(groups == "f", 0.3, 0.5)).astype(int)
    events = [
        prediction(i, prediction=int(p), attributes={"sex": str(g)})
        for i, (p, g) in enumerate(zip(predicted, groups, strict=True))
    ]
    actual = np.zeros(600)  # fairlearn needs y_true; selection rates ignore it
    parity = measure(
        objective("demographic_parity_difference", 0.1, "lt", parameters={"attribute": "sex"}),
        events,
    )
    assert parity.n_samples == 600
    assert parity.value == pytest.approx(
        demographic_parity_difference(actual, predicted, sensitive_features=groups)
    )
    ratio = measure(
        objective("disparate_impact_ratio", 0.8, "ge", parameters={"attribute": "sex"}), events
    )
    assert ratio.value == pytest.approx(
        demographic_parity_ratio(actual, predicted, sensitive_features=groups)
    )


def test_a_feature_the_system_does_not_have_is_a_configuration_error() -> None:
    target = objective("missing_rate", 0.1, "lt", parameters={"feature": "zz"})
    with pytest.raises(ConfigurationError, match="feature:zz is not a registered column"):
        measure(target, [prediction(0)])


def test_drift_without_a_reference_profile_is_a_configuration_error() -> None:
    target = objective("psi", 0.2, "lt", parameters={"feature": "x1"})
    with pytest.raises(ConfigurationError, match="no reference dataset profile"):
        measure(target, [prediction(0, features={"x1": 0.5})])


def test_out_of_range_rate_of_a_feature_without_limits_is_a_configuration_error() -> None:
    target = objective("out_of_range_rate", 0.1, "lt", parameters={"feature": "x1"})
    with pytest.raises(ConfigurationError, match="no registered min or max"):
        measure(target, [prediction(0, features={"x1": 0.5})])


def test_an_empty_window_has_no_latency_to_measure() -> None:
    target = objective("latency_percentile", 200, "lt")
    plan = WindowPlan.build(system([target]), 60, [target], None)
    window = WindowState(start=0, size=60, reference_hash=None)
    verdict = judge(target, lambda: measure_window(target, plan, window, None))
    assert verdict.status is INSUFFICIENT and verdict.detail == "no predictions"


def test_a_label_metric_is_not_measured_from_the_window() -> None:
    target = objective("accuracy", 0.9)
    with pytest.raises(ConfigurationError, match="'accuracy' is not a label-free metric"):
        measure(target, [prediction(0)])


def drift_of(
    metrics: list[str], reference: Any, window: Any, kind: FeatureType
) -> dict[str, Measurement]:
    """Each drift metric of feature f between a reference and a window of its values."""
    profile = ReferenceProfile.build({"f": reference}, {"f": kind})
    targets = [objective(m, 0.1, "lt", parameters={"feature": "f"}) for m in metrics]
    snapshot = system(targets, reference=profile, features=[FeatureSpec(name="f", type=kind)])
    plan = WindowPlan.build(snapshot, 60, targets, profile)
    state = WindowState(start=0, size=60, reference_hash=profile.content_hash)
    batch = columns([prediction(i, features={"f": v}) for i, v in enumerate(window)])
    state.update(plan, batch, every_row(batch), 0, batch.offsets)
    return {t.metric: measure_window(t, plan, state, profile) for t in targets}


def test_numeric_drift_compares_the_windows_values_with_the_references() -> None:
    rng = np.random.default_rng(1)
    reference, current = rng.normal(size=1_000), rng.normal(0.3, 1.0, 300)
    found = drift_of(
        ["ks", "wasserstein"], reference, [float(v) for v in current], FeatureType.NUMERIC
    )
    assert found["ks"].value == pytest.approx(ks_2samp(reference, current).pvalue)
    # Evidently's normed Wasserstein distance: in reference standard deviations
    assert found["wasserstein"].value == pytest.approx(
        wasserstein_distance(reference, current) / np.std(reference)
    )
    assert found["ks"].n_samples == 300 and not found["ks"].approximate


def test_categorical_drift_compares_the_windows_shares_with_the_references() -> None:
    rng = np.random.default_rng(1)
    reference = rng.choice(list("abc"), 1_000, p=[0.5, 0.3, 0.2])
    current = rng.choice(list("abc"), 300, p=[0.4, 0.3, 0.3])
    found = drift_of(
        ["chisquare", "jensenshannon", "hellinger"],
        reference,
        [str(v) for v in current],
        FeatureType.CATEGORICAL,
    )
    ref = np.array([(reference == k).sum() for k in "abc"], dtype=float)
    cur = np.array([(current == k).sum() for k in "abc"], dtype=float)
    p, q = ref / ref.sum(), cur / cur.sum()
    assert found["chisquare"].value == pytest.approx(chisquare(cur, p * cur.sum()).pvalue)
    assert found["jensenshannon"].value == pytest.approx(jensenshannon(p, q))
    hellinger = np.sqrt(0.5 * np.sum((np.sqrt(p) - np.sqrt(q)) ** 2))
    assert found["hellinger"].value == pytest.approx(hellinger)
