"""Performance segments and estimated performance of a window without labels
(``services.evaluator.estimation``): the ``segment`` parameter, the rows of a segment, the
accumulators an ``estimated_*`` objective needs and CBPE's expected confusion by hand."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from services.evaluator.columns import objects
from services.evaluator.estimation import (
    SegmentError,
    accumulator_from_state,
    measure,
    new_accumulator,
    segment_of,
    segment_rows,
    segmented,
    split_segment,
    window_need,
)
from services.evaluator.judge import ConfigurationError
from services.evaluator.plan import WindowPlan
from services.evaluator.window import WindowState
from shared.contracts import Objective, Task
from shared.stats import InsufficientData

from ..conftest import objective, system
from .events import columns, every_row, prediction


@pytest.mark.parametrize(
    ("raw", "segment"),
    [
        (None, None),
        ("region=eu", ("region", "eu")),
        ("region=", ("region", "")),  # the empty value is a value
        ("expr=a=b", ("expr", "a=b")),  # split at the first "="
    ],
)
def test_a_segment_is_attribute_equals_value(raw: str | None, segment: Any) -> None:
    params = {} if raw is None else {"segment": raw}
    assert segment_of(objective("accuracy", 0.8, parameters=params)) == segment


@pytest.mark.parametrize("raw", ["region", "=eu", ""])
def test_a_segment_without_an_attribute_or_equals_sign_is_refused(raw: str) -> None:
    with pytest.raises(SegmentError, match="is not 'attribute=value'"):
        segment_of(objective("accuracy", 0.8, parameters={"segment": raw}))


def test_a_segmented_need_is_the_plain_one_behind_the_segment_and_splits_back() -> None:
    target = objective("accuracy", 0.8, parameters={"segment": "region=eu"})
    key = segmented(target, ("cbpe", "1"))
    assert key == ("segment", "region", "eu", "cbpe", "1")
    assert split_segment(key) == (("cbpe", "1"), ("region", "eu"))
    assert split_segment(("cbpe", "1")) == (("cbpe", "1"), None)
    assert segmented(objective("accuracy", 0.8), ("cbpe", "1")) == ("cbpe", "1")
    assert segmented(target, None) is None


def test_segment_rows_compare_values_as_the_contract_keys_them() -> None:
    values = objects(["eu", None, "us", "eu", 1, "1", True])
    assert segment_rows(values, ("region", "eu")).tolist() == [
        True,
        False,
        False,
        True,
        False,
        False,
        False,
    ]
    # 1 and "1" are the same category; True is not
    assert segment_rows(values, ("region", "1")).tolist() == [
        False,
        False,
        False,
        False,
        True,
        True,
        False,
    ]


def test_each_estimated_metric_names_its_accumulator() -> None:
    assert window_need(objective("estimated_accuracy", 0.8)) == ("cbpe", "1")
    assert window_need(objective("estimated_f1", 0.8, parameters={"positive_label": "y"})) == (
        "cbpe",
        "y",
    )
    assert window_need(objective("estimated_roc_auc", 0.8)) == ("cbpe_auc", "1")
    assert window_need(objective("estimated_rmse", 1.0, "lt")) == ("dle",)
    segment = {"segment": "g=a"}
    assert window_need(objective("estimated_mae", 1.0, "lt", parameters=segment)) == (
        "segment",
        "g",
        "a",
        "dle",
    )


def test_other_needs_are_left_to_the_window() -> None:
    assert new_accumulator(("ops",)) is None
    assert new_accumulator(("segment", "g", "a", "column", "x")) is None
    assert accumulator_from_state(("column", "feature:x1"), {}) is None


def scored_window(
    targets: list[Objective], predicted: list[int], scores: list[float], regions: list[str]
) -> WindowState:
    plan = WindowPlan.build(system(targets), 60, targets, None)
    window = WindowState(start=0, size=60, reference_hash=None)
    events = [
        prediction(i, prediction=p, scores={"1": s, "0": 1 - s}, attributes={"region": r})
        for i, (p, s, r) in enumerate(zip(predicted, scores, regions, strict=True))
    ]
    batch = columns(events)
    window.update(plan, batch, every_row(batch), 0, batch.offsets)
    return WindowState.from_json(window.to_json())  # estimates survive a checkpoint


def test_expected_confusion_without_calibration_reads_the_scores_as_probabilities() -> None:
    rng = np.random.default_rng(17)
    scores = rng.uniform(0.02, 0.98, 300)
    predicted = (scores >= 0.5).astype(int)
    regions = rng.choice(["eu", "us"], 300)
    targets = [
        objective("estimated_accuracy", 0.8),
        objective("estimated_precision", 0.8),
        objective("estimated_recall", 0.8),
        objective("estimated_accuracy", 0.8, parameters={"segment": "region=eu"}),
    ]
    window = scored_window(targets, predicted.tolist(), scores.tolist(), regions.tolist())
    # each prediction is right with probability s (predicted 1) or 1 - s (predicted 0)
    right = np.where(predicted == 1, scores, 1 - scores)
    tp = scores[predicted == 1].sum()
    expected = {
        0: right.mean(),
        1: tp / (predicted == 1).sum(),
        2: tp / scores.sum(),
        3: right[regions == "eu"].mean(),
    }
    for i, target in enumerate(targets):
        m = measure(target, window, None)
        assert m.estimated is True and m.value == pytest.approx(expected[i]), target.metric
        assert m.sampling_error is not None and m.sampling_error > 0
    assert measure(targets[3], window, None).n_samples == int((regions == "eu").sum())


def test_estimated_roc_auc_is_the_auc_with_each_row_weighted_by_its_score() -> None:
    rng = np.random.default_rng(19)
    scores = np.round(rng.uniform(0.02, 0.98, 200), 2)  # ties included
    predicted = (scores >= 0.5).astype(int)
    target = objective("estimated_roc_auc", 0.7)
    window = scored_window([target], predicted.tolist(), scores.tolist(), ["eu"] * 200)
    # every row is a positive with weight s and a negative with weight 1 - s
    y = np.concatenate([np.ones(200), np.zeros(200)])
    weights = np.concatenate([scores, 1 - scores])
    expected = roc_auc_score(y, np.concatenate([scores, scores]), sample_weight=weights)
    m = measure(target, window, None)
    assert m.value == pytest.approx(expected) and m.n_samples == 200


def test_a_segment_without_predictions_has_no_estimate() -> None:
    target = objective("estimated_accuracy", 0.8, parameters={"segment": "region=apac"})
    window = scored_window([target], [1, 0], [0.9, 0.2], ["eu", "us"])
    with pytest.raises(InsufficientData):
        measure(target, window, None)


def test_estimated_loss_needs_a_reference_with_outcomes() -> None:
    target = objective("estimated_mae", 1.0, "lt")
    plan = WindowPlan.build(system([target], task=Task.REGRESSION), 60, [target], None)
    window = WindowState(start=0, size=60, reference_hash=None)
    batch = columns([prediction(i, prediction=float(i)) for i in range(3)])
    window.update(plan, batch, every_row(batch), 0, batch.offsets)
    with pytest.raises(ConfigurationError, match="the reference profile has no outcomes"):
        measure(target, window, None)
