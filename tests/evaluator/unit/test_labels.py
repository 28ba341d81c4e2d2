"""Label windows (``services.evaluator.labels``): labels bucketed by revision and merged when
their revision is emitted, late labels counted only from the revision they belong to, and the
label metrics of the merged labels against scikit-learn and fairlearn."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import pytest
from fairlearn.metrics import (  # type: ignore[import-untyped]
    equal_opportunity_difference,
    equalized_odds_difference,
)
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
)

from services.evaluator.judge import ConfigurationError, judge
from services.evaluator.labels import LabelBatch, LabelSet, LabelWindow, label_needs, measure_labels
from shared.contracts import EvaluationStatus, Objective, Task
from shared.stats import InsufficientData

from ..conftest import objective


def texts(values: Sequence[Any]) -> list[str | None]:
    """Values as the join state stores them: one JSON text each (None: absent)."""
    return [None if v is None else orjson.dumps(v).decode() for v in values]


def labels(
    predicted: Sequence[Any],
    actual: Sequence[Any],
    *,
    scores: Sequence[float | None] | None = None,
    positive: str = "1",
    attributes: Sequence[dict[str, Any]] | None = None,
    delays: Sequence[float] | None = None,
    partition: int = 0,
    first_offset: int = 0,
) -> LabelBatch:
    n = len(actual)
    return LabelBatch(
        predicted=texts(predicted),
        actual=texts(actual),
        scores=texts(
            [None] * n
            if scores is None
            else [None if s is None else {positive: s, "other": 1 - s} for s in scores]
        ),
        attributes=texts([None] * n if attributes is None else attributes),
        delay_s=np.asarray([60.0] * n if delays is None else delays, dtype=np.float64),
        partitions=np.full(n, partition, dtype=np.int64),
        offsets=np.arange(first_offset, first_offset + n, dtype=np.int64),
    )


def window_with(
    objectives: Sequence[Objective], batch: LabelBatch, *, total: int | None = None
) -> LabelWindow:
    """A closed window whose labels all belong to revision 0, emitted."""
    window = LabelWindow(start=1_800_000_000, size=60)
    window.closed = True
    window.total = batch.size if total is None else total
    window.add(0, label_needs(objectives), batch)
    window.merge_through(0)
    return window


def measured(
    target: Objective, batch: LabelBatch, task: Task = Task.BINARY_CLASSIFICATION
) -> float:
    return measure_labels(target, task, window_with([target], batch)).value


def binary_case(n: int = 400, seed: int = 4) -> tuple[np.ndarray[Any, Any], ...]:
    rng = np.random.default_rng(seed)
    score = rng.uniform(0.01, 0.99, n)
    actual = (rng.uniform(size=n) < score).astype(int)
    predicted = (score >= 0.5).astype(int)
    return actual, predicted, score


def test_objectives_reading_the_same_labels_share_one_need() -> None:
    needs = label_needs(
        [
            objective("accuracy", 0.9),
            objective("f1", 0.9),
            objective("roc_auc", 0.8),
            objective("brier", 0.2, "lt"),
            objective("log_loss", 0.5, "lt", parameters={"positive_label": "yes"}),
            objective("mae", 1.0, "lt"),
            objective("rmse", 1.0, "lt"),
            objective("equal_opportunity_difference", 0.1, "lt", parameters={"attribute": "g"}),
            objective("equalized_odds_difference", 0.1, "lt", parameters={"attribute": "g"}),
            objective("label_coverage", 0.5),  # count only
            objective("accuracy", 0.9, parameters={"segment": "region=eu"}),
            objective("accuracy", 0.9, parameters={"segment": "broken"}),  # measured as an error
        ]
    )
    assert needs == [
        ("confusion",),
        ("confusion", "1"),
        ("confusion", "yes"),
        ("regression",),
        ("fairness", "g", "1"),
        ("fairness_odds", "g", "1"),
        ("segment", "region", "eu", "confusion"),
    ]


def test_classification_metrics_match_scikit_learn() -> None:
    actual, predicted, score = binary_case()
    batch = labels(predicted.tolist(), actual.tolist(), scores=score.tolist())
    assert measured(objective("accuracy", 0.9), batch) == pytest.approx(
        accuracy_score(actual, predicted)
    )
    binary = {"positive_label": "1"}
    for metric, sk in (("precision", precision_score), ("recall", recall_score), ("f1", f1_score)):
        assert measured(objective(metric, 0.9, parameters=binary), batch) == pytest.approx(
            sk(actual, predicted)
        ), metric
        # without a positive label: the macro average over both classes
        assert measured(objective(metric, 0.9), batch) == pytest.approx(
            sk(actual, predicted, average="macro")
        ), metric
    assert measured(objective("roc_auc", 0.8), batch) == pytest.approx(roc_auc_score(actual, score))
    assert measured(objective("log_loss", 0.5, "lt"), batch) == pytest.approx(
        log_loss(actual, score)
    )
    assert measured(objective("brier", 0.2, "lt"), batch) == pytest.approx(
        brier_score_loss(actual, score)
    )


def test_accuracy_carries_the_binomial_standard_error() -> None:
    actual, predicted, _ = binary_case()
    m = measure_labels(
        objective("accuracy", 0.9),
        Task.BINARY_CLASSIFICATION,
        window_with([objective("accuracy", 0.9)], labels(predicted.tolist(), actual.tolist())),
    )
    p = accuracy_score(actual, predicted)
    assert m.n_samples == 400
    assert m.sampling_error == pytest.approx(math.sqrt(p * (1 - p) / 400))


def test_regression_metrics_match_scikit_learn() -> None:
    rng = np.random.default_rng(8)
    actual = rng.normal(10.0, 3.0, 300)
    predicted = actual + rng.normal(0.5, 1.0, 300)
    batch = labels(predicted.tolist(), actual.tolist())
    expected = {
        "mae": mean_absolute_error(actual, predicted),
        "rmse": math.sqrt(mean_squared_error(actual, predicted)),
        "mape": mean_absolute_percentage_error(actual, predicted),
        "r2": r2_score(actual, predicted),
    }
    for metric, value in expected.items():
        target = objective(metric, 1.0, "lt")
        assert measured(target, batch, Task.REGRESSION) == pytest.approx(value), metric


def test_group_fairness_of_labels_matches_fairlearn() -> None:
    actual, predicted, _ = binary_case(600, seed=12)
    groups = np.random.default_rng(13).choice(["a", "b", "c"], 600)
    batch = labels(predicted.tolist(), actual.tolist(), attributes=[{"g": g} for g in groups])
    params = {"attribute": "g"}
    opportunity = measured(
        objective("equal_opportunity_difference", 0.1, "lt", parameters=params), batch
    )
    assert opportunity == pytest.approx(
        equal_opportunity_difference(actual, predicted, sensitive_features=groups)
    )
    odds = measured(objective("equalized_odds_difference", 0.1, "lt", parameters=params), batch)
    assert odds == pytest.approx(
        equalized_odds_difference(actual, predicted, sensitive_features=groups)
    )


def test_a_segment_is_measured_on_its_own_labels_only() -> None:
    actual, predicted, _ = binary_case(500, seed=21)
    regions = np.random.default_rng(22).choice(["eu", "us"], 500)
    # one label without the attribute at all: it is in no segment
    attributes: list[dict[str, Any]] = [{"region": r} for r in regions[:-1]] + [{}]
    batch = labels(predicted.tolist(), actual.tolist(), attributes=attributes)
    target = objective("accuracy", 0.9, parameters={"segment": "region=eu"})
    m = measure_labels(target, Task.BINARY_CLASSIFICATION, window_with([target], batch))
    chosen = regions[:-1] == "eu"
    assert m.n_samples == int(chosen.sum())
    assert m.value == pytest.approx(accuracy_score(actual[:-1][chosen], predicted[:-1][chosen]))


def test_late_labels_count_only_from_the_revision_they_belong_to() -> None:
    target = objective("accuracy", 0.5)
    needs = label_needs([target])
    window = LabelWindow(start=0, size=60)
    window.closed, window.total = True, 10
    window.add(0, needs, labels([1, 1, 1, 1], [1, 1, 1, 1]))  # on time: all right
    window.add(2, needs, labels([1, 1, 1, 1], [0, 0, 0, 0], first_offset=10))  # late: all wrong
    window.add(1, needs, labels([0, 0], [0, 1], first_offset=20))  # a little late: half right

    window.merge_through(0)
    first = measure_labels(target, Task.BINARY_CLASSIFICATION, window)
    assert (first.value, first.n_samples) == (1.0, 4)
    assert sorted(window.buckets) == [1, 2]

    window.merge_through(1)
    second = measure_labels(target, Task.BINARY_CLASSIFICATION, window)
    assert (second.value, second.n_samples) == (5 / 6, 6)

    window.merge_through(None)  # the window is done: every label counts
    final = measure_labels(target, Task.BINARY_CLASSIFICATION, window)
    assert (final.value, final.n_samples) == (5 / 10, 10)
    assert window.buckets == {} and window.labels == 10


def test_each_objective_numbers_its_own_revisions_from_zero() -> None:
    window = LabelWindow(start=0, size=60)
    assert [window.next_revision("acc") for _ in range(3)] == [0, 1, 2]
    assert window.next_revision("f1") == 0
    assert window.revisions == {"acc": 2, "f1": 0}


def test_label_coverage_is_the_labelled_share_of_the_windows_predictions() -> None:
    target = objective("label_coverage", 0.5)
    window = window_with([target], labels([1, 0, 1], [1, 1, 1]), total=12)
    m = measure_labels(target, Task.BINARY_CLASSIFICATION, window)
    assert (m.value, m.n_samples) == (3 / 12, 12)


def test_label_delay_percentile_is_within_one_percent_of_the_exact_one() -> None:
    delays = np.random.default_rng(30).exponential(600.0, 1_000) + 1.0
    target = objective("label_delay_percentile", 3600, "lt", parameters={"percentile": "50"})
    window = window_with([target], labels([1] * 1_000, [1] * 1_000, delays=delays.tolist()))
    m = measure_labels(target, Task.BINARY_CLASSIFICATION, window)
    assert m.n_samples == 1_000
    assert m.value == pytest.approx(np.percentile(delays, 50), rel=0.02)


def test_no_labels_is_insufficient_data() -> None:
    window = LabelWindow(start=0, size=60)
    with pytest.raises(InsufficientData, match="no labelled predictions"):
        measure_labels(objective("accuracy", 0.9), Task.BINARY_CLASSIFICATION, window)


def test_an_objective_added_after_the_labels_came_is_computed_on_the_later_ones() -> None:
    target = objective("accuracy", 0.5)
    window = LabelWindow(start=0, size=60)
    window.add(0, [], labels([1, 1, 1], [0, 0, 0]))  # before the objective: not accumulated
    window.merge_through(0)
    with pytest.raises(InsufficientData, match="since the objective started"):
        measure_labels(target, Task.BINARY_CLASSIFICATION, window)
    window.add(1, label_needs([target]), labels([1, 0], [1, 0], first_offset=3))
    window.merge_through(1)
    m = measure_labels(target, Task.BINARY_CLASSIFICATION, window)
    assert (m.value, m.n_samples) == (1.0, 2)
    assert m.detail == "objective started during the window; computed on part of it"


def test_objectives_that_cannot_be_measured_on_labels_are_configuration_errors() -> None:
    batch = labels([1.0, 2.0], [1.0, 3.0])
    with pytest.raises(ConfigurationError, match="mae needs a regression system"):
        measured(objective("mae", 1.0, "lt"), batch, Task.BINARY_CLASSIFICATION)
    with pytest.raises(ConfigurationError, match="'psi' is not a label metric"):
        measured(objective("psi", 0.2, "lt"), batch)
    broken = objective("accuracy", 0.9, parameters={"segment": "broken"})
    with pytest.raises(ConfigurationError, match="segment 'broken' is not 'attribute=value'"):
        measured(broken, batch)


def test_a_label_set_keeps_the_offset_span_of_each_partition() -> None:
    first = LabelSet()
    first.update([], labels([1, 1], [1, 1], partition=0, first_offset=10))
    first.update([], labels([1], [1], partition=3, first_offset=7))
    second = LabelSet()
    second.update([], labels([1, 1, 1], [1, 1, 1], partition=0, first_offset=4))
    first.merge(second)
    assert first.n == 6
    assert first.offsets == {0: [4, 11], 3: [7, 7]}


def test_an_empty_batch_adds_nothing() -> None:
    found = LabelSet()
    found.update([("confusion",)], labels([], []))
    assert found.n == 0 and found.offsets == {} and found.accumulators == {}


def test_a_label_window_measures_the_same_after_a_round_trip_through_json() -> None:
    actual, predicted, score = binary_case(200, seed=40)
    objectives = [objective("roc_auc", 0.8), objective("accuracy", 0.8)]
    window = LabelWindow(start=60, size=60)
    window.total = 250
    needs = label_needs(objectives)
    window.add(
        0,
        needs,
        labels(predicted[:120].tolist(), actual[:120].tolist(), scores=score[:120].tolist()),
    )
    window.add(
        3,
        needs,
        labels(
            predicted[120:].tolist(),
            actual[120:].tolist(),
            scores=score[120:].tolist(),
            first_offset=120,
        ),
    )
    window.merge_through(0)
    window.next_revision(objectives[0].id)
    restored = LabelWindow.from_json(window.to_json())
    assert restored.to_json() == window.to_json()
    restored.merge_through(None)
    auc = measure_labels(objectives[0], Task.BINARY_CLASSIFICATION, restored)
    assert auc.value == pytest.approx(roc_auc_score(actual, score))
    assert restored.next_revision(objectives[0].id) == 1


def test_calibration_error_is_the_gap_per_equal_width_tenth_weighted_by_its_rows() -> None:
    actual, predicted, score = binary_case(800, seed=50)
    score = score**1.5  # miscalibrated: too low
    batch = labels(predicted.tolist(), actual.tolist(), scores=score.tolist())
    tenth = np.minimum((score * 10).astype(int), 9)  # no score lies on an edge here
    gaps = [abs(actual[tenth == b].sum() - score[tenth == b].sum()) for b in range(10)]
    assert measured(objective("calibration_error", 0.1, "lt"), batch) == pytest.approx(
        sum(gaps) / 800
    )


def test_multiclass_metrics_match_scikit_learns_macro_averages() -> None:
    rng = np.random.default_rng(60)
    actual = rng.choice(["cat", "dog", "emu"], 500, p=[0.5, 0.3, 0.2])
    noise = rng.choice(["cat", "dog", "emu"], 500)
    predicted = np.where(rng.uniform(size=500) < 0.7, actual, noise)
    batch = labels(predicted.tolist(), actual.tolist())
    task = Task.MULTICLASS_CLASSIFICATION
    assert measured(objective("accuracy", 0.9), batch, task) == pytest.approx(
        accuracy_score(actual, predicted)
    )
    for metric, sk in (("precision", precision_score), ("recall", recall_score), ("f1", f1_score)):
        assert measured(objective(metric, 0.9), batch, task) == pytest.approx(
            sk(actual, predicted, average="macro")
        ), metric
        one = objective(metric, 0.9, parameters={"positive_label": "emu"})
        assert measured(one, batch, task) == pytest.approx(
            sk(actual, predicted, average=None, labels=["emu"])[0]
        ), metric


def test_text_labels_are_scored_for_the_objectives_positive_label() -> None:
    actual, predicted, score = binary_case(300, seed=70)
    names = np.array(["no", "yes"])
    batch = labels(
        names[predicted].tolist(), names[actual].tolist(), scores=score.tolist(), positive="yes"
    )
    params = {"positive_label": "yes"}
    assert measured(objective("roc_auc", 0.8, parameters=params), batch) == pytest.approx(
        roc_auc_score(actual, score)
    )
    assert measured(objective("brier", 0.3, "lt", parameters=params), batch) == pytest.approx(
        brier_score_loss(actual, score)
    )
    assert measured(objective("precision", 0.8, parameters=params), batch) == pytest.approx(
        precision_score(actual, predicted)
    )


def test_labels_without_scores_count_for_accuracy_but_not_for_scored_metrics() -> None:
    actual, predicted, score = binary_case(400, seed=80)
    has_score = np.random.default_rng(81).uniform(size=400) < 0.6
    given = [float(s) if h else None for s, h in zip(score, has_score, strict=True)]
    batch = labels(predicted.tolist(), actual.tolist(), scores=given)
    auc = objective("roc_auc", 0.8)
    accuracy = objective("accuracy", 0.8)
    window = window_with([auc, accuracy], batch)
    scored = measure_labels(auc, Task.BINARY_CLASSIFICATION, window)
    assert scored.n_samples == int(has_score.sum())
    assert scored.value == pytest.approx(roc_auc_score(actual[has_score], score[has_score]))
    assert measure_labels(accuracy, Task.BINARY_CLASSIFICATION, window).n_samples == 400


def test_a_window_with_predictions_and_no_labels_has_zero_coverage() -> None:
    target = objective("label_coverage", 0.5)
    window = LabelWindow(start=0, size=60)
    empty = judge(target, lambda: measure_labels(target, Task.BINARY_CLASSIFICATION, window))
    assert empty.status is EvaluationStatus.INSUFFICIENT_DATA  # no predictions either
    assert empty.detail == "no predictions in the window"
    window.closed, window.total = True, 10
    unlabelled = judge(target, lambda: measure_labels(target, Task.BINARY_CLASSIFICATION, window))
    assert (unlabelled.value, unlabelled.n_samples) == (0.0, 10)
    assert unlabelled.status is EvaluationStatus.BREACH


def test_no_label_delays_is_insufficient_data() -> None:
    target = objective("label_delay_percentile", 3600, "lt")
    window = LabelWindow(start=0, size=60)
    verdict = judge(target, lambda: measure_labels(target, Task.BINARY_CLASSIFICATION, window))
    assert verdict.status is EvaluationStatus.INSUFFICIENT_DATA and verdict.value is None
