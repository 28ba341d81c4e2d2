"""Performance metrics against scikit-learn, with data arriving in batches, merged and
checkpointed."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from shared.stats import (
    ConfusionAccumulator,
    InsufficientData,
    RegressionAccumulator,
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

RELATIVE = 1e-9


def round_trip(acc: Any) -> Any:
    return type(acc).from_state(orjson.loads(orjson.dumps(acc.to_state())))


def batched(make: Any, arrays: tuple[np.ndarray, ...], n_batches: int = 9) -> Any:
    """Two accumulators over the two halves, each fed in batches, checkpointed, merged."""
    n = arrays[0].size
    halves = [tuple(a[: n // 2] for a in arrays), tuple(a[n // 2 :] for a in arrays)]
    parts = []
    for half in halves:
        acc = make()
        for batch in zip(*(np.array_split(a, n_batches) for a in half), strict=True):
            acc.update(*batch)
        parts.append(round_trip(acc))
    parts[0].merge(parts[1])
    return parts[0]


@pytest.fixture
def binary(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = 6_000
    scores = rng.beta(2.0, 3.0, n)
    scores[:5] = [0.0, 1.0, 0.0, 1.0, 0.5]  # log loss must clip like scikit-learn
    actual = (rng.random(n) < scores).astype(np.int64)
    actual[:4] = [0, 1, 1, 0]
    predicted = (scores >= 0.4).astype(np.int64)
    return actual, predicted, np.round(scores, 3)  # rounding creates ties for ROC AUC


def test_binary_metrics_match_scikit_learn(binary: tuple[np.ndarray, ...]) -> None:
    actual, predicted, scores = binary
    acc = batched(lambda: ConfusionAccumulator(positive_label=1), (actual, predicted, scores))

    assert accuracy(acc) == pytest.approx(skm.accuracy_score(actual, predicted), rel=RELATIVE)
    assert precision(acc) == pytest.approx(skm.precision_score(actual, predicted), rel=RELATIVE)
    assert recall(acc) == pytest.approx(skm.recall_score(actual, predicted), rel=RELATIVE)
    assert f1(acc) == pytest.approx(skm.f1_score(actual, predicted), rel=RELATIVE)
    assert precision(acc, positive_label=0) == pytest.approx(
        skm.precision_score(actual, predicted, pos_label=0), rel=RELATIVE
    )
    assert roc_auc(acc) == pytest.approx(skm.roc_auc_score(actual, scores), rel=RELATIVE)
    assert roc_auc_error_bound(acc) == 0.0
    assert log_loss(acc) == pytest.approx(skm.log_loss(actual, y_proba=scores), rel=RELATIVE)
    assert brier(acc) == pytest.approx(skm.brier_score_loss(actual, scores), rel=RELATIVE)


def test_expected_calibration_error_matches_calibration_curve(
    binary: tuple[np.ndarray, ...],
) -> None:
    actual, predicted, scores = binary
    acc = batched(lambda: ConfusionAccumulator(positive_label=1), (actual, predicted, scores))
    fraction_positive, mean_score = calibration_curve(actual, scores, n_bins=10)
    # calibration_curve drops empty bins; its bins are searchsorted(edges[1:-1], scores)
    bins = np.searchsorted(np.linspace(0, 1, 11)[1:-1], scores)
    weights = np.bincount(bins, minlength=10)
    weights = weights[weights > 0] / scores.size
    expected = float(np.sum(weights * np.abs(fraction_positive - mean_score)))
    assert expected_calibration_error(acc) == pytest.approx(expected, rel=1e-9)


def test_roc_auc_beyond_the_exact_cap_is_within_its_bound(rng: np.random.Generator) -> None:
    n = 50_000
    scores = rng.beta(2.0, 5.0, n)
    actual = (rng.random(n) < scores).astype(np.int64)
    acc = batched(
        lambda: ConfusionAccumulator(positive_label=1, exact_scores=10_000),
        (actual, actual, scores),
    )
    assert acc.exact_pairs() is None
    bound = roc_auc_error_bound(acc)
    assert 0 < bound < 1e-3
    assert abs(roc_auc(acc) - skm.roc_auc_score(actual, scores)) <= bound


def test_multiclass_metrics_are_macro_averages(rng: np.random.Generator) -> None:
    n = 5_000
    labels = np.array(["bird", "cat", "dog", "eel"])
    actual = rng.choice(labels, n, p=[0.1, 0.4, 0.3, 0.2])
    predicted = np.where(rng.random(n) < 0.6, actual, rng.choice(labels[:3], n))
    acc = batched(ConfusionAccumulator, (actual, predicted))

    assert accuracy(acc) == pytest.approx(skm.accuracy_score(actual, predicted), rel=RELATIVE)
    for ours, theirs in [
        (precision, skm.precision_score),
        (recall, skm.recall_score),
        (f1, skm.f1_score),
    ]:
        assert ours(acc) == pytest.approx(
            theirs(actual, predicted, average="macro"), rel=RELATIVE
        ), ours.__name__


def test_zero_division_gives_zero_as_scikit_learn() -> None:
    acc = ConfusionAccumulator(positive_label=1)
    acc.update([0, 0, 1], [0, 0, 0])
    actual, predicted = [0, 0, 1], [0, 0, 0]
    assert precision(acc) == skm.precision_score(actual, predicted, zero_division=0) == 0.0
    assert f1(acc) == skm.f1_score(actual, predicted, zero_division=0) == 0.0


def test_undefined_metrics_raise_insufficient_data() -> None:
    acc = ConfusionAccumulator(positive_label=1)
    with pytest.raises(InsufficientData):
        accuracy(acc)
    acc.update([1, 1], [1, 0], [0.9, 0.2])
    with pytest.raises(InsufficientData):
        roc_auc(acc)  # one class only
    with pytest.raises(InsufficientData):
        r2(RegressionAccumulator())
    with pytest.raises(ValueError):
        log_loss(ConfusionAccumulator())  # no positive label: no scores


def test_regression_metrics_match_scikit_learn(rng: np.random.Generator) -> None:
    n = 8_000
    actual = rng.gamma(2.0, 50.0, n)
    actual[:3] = [0.0, 1e-12, -5.0]  # MAPE's epsilon guard
    predicted = actual + rng.normal(0, 20, n)
    acc = batched(RegressionAccumulator, (actual, predicted))

    assert mae(acc) == pytest.approx(skm.mean_absolute_error(actual, predicted), rel=RELATIVE)
    assert rmse(acc) == pytest.approx(skm.root_mean_squared_error(actual, predicted), rel=RELATIVE)
    assert mape(acc) == pytest.approx(
        skm.mean_absolute_percentage_error(actual, predicted), rel=RELATIVE
    )
    assert r2(acc) == pytest.approx(skm.r2_score(actual, predicted), rel=RELATIVE)


def test_regression_ignores_rows_without_both_values() -> None:
    acc = RegressionAccumulator()
    acc.update([1.0, np.nan, 3.0, 4.0], [1.5, 2.0, np.nan, 3.0])
    assert acc.n == 2
    assert mae(acc) == pytest.approx(skm.mean_absolute_error([1.0, 4.0], [1.5, 3.0]))


def test_r2_of_a_constant_target_follows_scikit_learn() -> None:
    perfect, off = RegressionAccumulator(), RegressionAccumulator()
    perfect.update([2.0, 2.0, 2.0], [2.0, 2.0, 2.0])
    off.update([2.0, 2.0, 2.0], [2.0, 2.0, 3.0])
    assert r2(perfect) == skm.r2_score([2.0] * 3, [2.0] * 3) == 1.0
    assert r2(off) == skm.r2_score([2.0] * 3, [2.0, 2.0, 3.0]) == 0.0
