"""A realised metric's sampling error is the spread of that metric over windows of its size.

For each metric, 300 windows are drawn from one population; the mean of the sampling errors the
accumulators report must be within 20 % of the standard deviation of the windows' values.
"""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest

from shared.stats._error_moments import ErrorMoments
from shared.stats.accumulators import ConfusionAccumulator, RegressionAccumulator
from shared.stats.performance import (
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
    sampling_error,
)

WINDOWS = 300
CLASSIFICATION = {
    "accuracy": accuracy,
    "precision": precision,
    "recall": recall,
    "f1": f1,
    "roc_auc": roc_auc,
    "log_loss": log_loss,
    "brier": brier,
    "calibration_error": expected_calibration_error,
}
REGRESSION = {"mae": mae, "rmse": rmse, "mape": mape, "r2": r2}


def _check(values: dict[str, list[float]], errors: dict[str, list[float]]) -> None:
    for metric, spread in values.items():
        assert float(np.mean(errors[metric])) == pytest.approx(float(np.std(spread)), rel=0.2), (
            metric
        )


@pytest.mark.parametrize("size, exact_scores", [(600, 10_000), (3_000, 100)])
def test_binary_classification(rng: np.random.Generator, size: int, exact_scores: int) -> None:
    """Exact score pairs, and (``exact_scores=100``) the histogram approximations."""
    values: dict[str, list[float]] = {m: [] for m in CLASSIFICATION}
    errors: dict[str, list[float]] = {m: [] for m in CLASSIFICATION}
    for _ in range(WINDOWS):
        scores = rng.beta(2.0, 3.0, size)
        actual = (rng.random(size) < np.clip(scores * 1.2, 0, 1)).astype(np.int64)
        predicted = (scores >= 0.4).astype(np.int64)
        acc = ConfusionAccumulator(positive_label=1, exact_scores=exact_scores)
        acc.update(actual, predicted, scores)
        for metric, fn in CLASSIFICATION.items():
            values[metric].append(fn(acc))
            se = sampling_error(metric, acc, positive_label=1)
            assert se is not None
            errors[metric].append(se)
    _check(values, errors)


def test_macro_averages_of_three_classes(rng: np.random.Generator) -> None:
    metrics = {"accuracy": accuracy, "precision": precision, "recall": recall, "f1": f1}
    values: dict[str, list[float]] = {m: [] for m in metrics}
    errors: dict[str, list[float]] = {m: [] for m in metrics}
    for _ in range(WINDOWS):
        actual = rng.choice(["a", "b", "c"], 900, p=[0.5, 0.3, 0.2])
        predicted = np.where(rng.random(900) < 0.7, actual, rng.choice(["a", "b", "c"], 900))
        acc = ConfusionAccumulator()
        acc.update(actual, predicted)
        for metric, fn in metrics.items():
            values[metric].append(fn(acc))
            se = sampling_error(metric, acc)
            assert se is not None
            errors[metric].append(se)
    _check(values, errors)


def test_regression(rng: np.random.Generator) -> None:
    values: dict[str, list[float]] = {m: [] for m in REGRESSION}
    errors: dict[str, list[float]] = {m: [] for m in REGRESSION}
    for _ in range(WINDOWS):
        x = rng.normal(size=800)
        actual = 1_000.0 + 3.0 * x + rng.normal(size=800) * (1.0 + np.abs(x))
        predicted = 1_000.0 + 2.8 * x
        halves = [RegressionAccumulator(), RegressionAccumulator()]
        for acc, rows in zip(halves, np.array_split(np.arange(800), 2), strict=True):
            for part in np.array_split(rows, 3):
                acc.update(actual[part], predicted[part])
        merged = RegressionAccumulator.from_state(orjson.loads(orjson.dumps(halves[0].to_state())))
        merged.merge(halves[1])
        for metric, fn in REGRESSION.items():
            values[metric].append(fn(merged))
            se = sampling_error(metric, merged)
            assert se is not None
            errors[metric].append(se)
    _check(values, errors)


def test_error_moments_merge_equals_one_pass(rng: np.random.Generator) -> None:
    actual = 1e6 + rng.normal(size=5_000) * 10
    error = np.abs(rng.normal(size=5_000))
    percentage = error / np.abs(actual)
    whole = ErrorMoments()
    whole.update(actual, error, percentage)
    parts = ErrorMoments()
    for rows in np.array_split(np.arange(5_000), 7):
        piece = ErrorMoments()
        piece.update(actual[rows], error[rows], percentage[rows])
        parts.merge(piece)
    deviation = actual - actual.mean()
    assert parts.m2 == pytest.approx(np.sum(deviation**2), rel=1e-9)
    assert parts.m4 == pytest.approx(np.sum(deviation**4), rel=1e-9)
    assert parts.m3 == pytest.approx(np.sum(deviation**3), rel=1e-6, abs=1e-6 * parts.m2**1.5)
    assert parts.e2_dev2 == pytest.approx(np.sum(error**2 * deviation**2), rel=1e-9)
    assert parts.e2_dev == pytest.approx(
        np.sum(error**2 * deviation), abs=1e-9 * np.sqrt(parts.e2 * parts.e2_dev2)
    )
    for name in ("n", "mean", "m2", "m4", "e2", "e2_dev2", "sum_fourth_error"):
        assert getattr(parts, name) == pytest.approx(getattr(whole, name), rel=1e-9), name


def test_a_checkpoint_from_before_the_moments_has_no_band_for_them() -> None:
    acc = RegressionAccumulator()
    acc.update(np.array([1.0, 2.0, 4.0]), np.array([1.5, 2.0, 3.0]))
    state = acc.to_state()
    del state["moments"]
    old = RegressionAccumulator.from_state(state)
    assert sampling_error("mae", old) is not None
    assert sampling_error("rmse", old) is None and sampling_error("r2", old) is None
    old.merge(acc)
    assert not old.moments.complete
    assert math.isfinite(rmse(old))
