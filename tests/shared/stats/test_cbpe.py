"""CBPE estimates the performance of a calibrated model before its labels arrive."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from sklearn import metrics as skm

from shared.stats import (
    ExpectedConfusionAccumulator,
    InsufficientData,
    estimated_accuracy,
    estimated_f1,
    estimated_precision,
    estimated_recall,
    expected_confusion,
)


@pytest.mark.parametrize("alpha, beta", [(2.0, 2.0), (0.5, 0.5), (2.0, 6.0)])
def test_estimates_are_within_two_points_of_the_realised_metrics(
    rng: np.random.Generator, alpha: float, beta: float
) -> None:
    n = 20_000
    scores = rng.beta(alpha, beta, n)
    actual = (rng.random(n) < scores).astype(np.int64)  # calibrated by construction
    predicted = (scores >= 0.5).astype(np.int64)
    halves = [ExpectedConfusionAccumulator(positive_label=1) for _ in range(2)]
    for acc, part in zip(halves, np.array_split(np.arange(n), 2), strict=True):
        for rows in np.array_split(part, 8):
            acc.update(predicted[rows], scores[rows])
    acc = ExpectedConfusionAccumulator.from_state(orjson.loads(orjson.dumps(halves[0].to_state())))
    acc.merge(halves[1])

    assert estimated_accuracy(acc) == pytest.approx(skm.accuracy_score(actual, predicted), abs=0.02)
    assert estimated_precision(acc) == pytest.approx(
        skm.precision_score(actual, predicted, zero_division=0), abs=0.02
    )
    assert estimated_recall(acc) == pytest.approx(
        skm.recall_score(actual, predicted, zero_division=0), abs=0.02
    )
    assert estimated_f1(acc) == pytest.approx(
        skm.f1_score(actual, predicted, zero_division=0), abs=0.02
    )


def test_expected_confusion_is_the_sum_of_probabilities() -> None:
    acc = ExpectedConfusionAccumulator(positive_label="fraud")
    acc.update(["fraud", "fraud", "ok", "ok", None], [0.9, 0.6, 0.2, 0.1, 0.5])
    c = expected_confusion(acc)
    assert (c.tp, c.fp, c.fn, c.tn) == pytest.approx((1.5, 0.5, 0.3, 1.7))
    assert estimated_accuracy(acc) == pytest.approx(3.2 / 4)


def test_no_scores_no_estimate() -> None:
    with pytest.raises(InsufficientData):
        estimated_accuracy(ExpectedConfusionAccumulator(positive_label=1))
