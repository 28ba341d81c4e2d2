"""What a window accumulates for a system's objectives of one window size
(``services.evaluator.plan``): one need per column whatever reads it, operations always,
label metrics never, estimation and fairness needs, and accumulators built on the reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from services.evaluator.plan import (
    WindowPlan,
    accumulator_from_state,
    column_of,
    is_label_metric,
    positive_label,
)
from shared.contracts import FeatureSpec, FeatureType, Objective, Task
from shared.stats import (
    CategoricalAccumulator,
    CategoricalReference,
    ExpectedConfusionAccumulator,
    FairnessAccumulator,
    NumericAccumulator,
    NumericReference,
    OperationsAccumulator,
    ReferenceProfile,
)
from shared.stats.cbpe import ScoreRankAccumulator
from shared.stats.distribution import EXACT_WINDOW_VALUES
from shared.stats.dle import LossEstimateAccumulator

from ..conftest import objective, reference_profile, system


def plan_of(
    objectives: list[Objective],
    reference: ReferenceProfile | None = None,
    *,
    size: int = 60,
    features: list[FeatureSpec] | None = None,
    task: Task = Task.BINARY_CLASSIFICATION,
) -> WindowPlan:
    snapshot = system(objectives, reference=reference, features=features, task=task)
    return WindowPlan.build(snapshot, size, objectives, reference)


def test_operations_are_always_accumulated_even_without_objectives() -> None:
    plan = plan_of([])
    assert plan.needs == [("ops",)]
    assert isinstance(plan.new_accumulator(("ops",)), OperationsAccumulator)


def test_only_objectives_of_the_plans_window_size_are_planned() -> None:
    minute = objective("psi", 0.2, "lt", parameters={"feature": "x1"}, window_seconds=60)
    hour = objective("missing_rate", 0.1, "lt", parameters={"feature": "x2"}, window_seconds=3600)
    plan = plan_of([minute, hour], reference_profile())
    assert plan.objectives == [minute]
    assert plan.needs == [("ops",), ("column", "feature:x1")]


def test_label_metrics_are_not_accumulated_in_the_window() -> None:
    label_objectives = [
        objective("accuracy", 0.9),
        objective("roc_auc", 0.8),
        objective("mae", 1.0, "lt"),
        objective("label_coverage", 0.5),
        objective("equal_opportunity_difference", 0.1, "lt", parameters={"attribute": "g"}),
    ]
    plan = plan_of(label_objectives)
    assert plan.needs == [("ops",)] and plan.columns == {}


def test_objectives_on_one_column_share_its_accumulator_and_drift_keeps_values() -> None:
    objectives = [
        objective("missing_rate", 0.1, "lt", parameters={"feature": "x1"}),
        objective("psi", 0.2, "lt", parameters={"feature": "x1"}),
        objective("ks", 0.05, "gt", parameters={"feature": "x1"}),
        objective("out_of_range_rate", 0.1, "lt", parameters={"feature": "x2"}),
    ]
    plan = plan_of(objectives, reference_profile())
    assert plan.needs == [("ops",), ("column", "feature:x1"), ("column", "feature:x2")]
    assert plan.columns["feature:x1"].drift is True
    assert plan.columns["feature:x2"].drift is False
    drifting = plan.new_accumulator(("column", "feature:x1"))
    quality = plan.new_accumulator(("column", "feature:x2"))
    assert isinstance(drifting, NumericAccumulator) and isinstance(quality, NumericAccumulator)
    # a drift column keeps its values for exact tests; a quality-only column keeps none
    assert drifting.values.limit == EXACT_WINDOW_VALUES
    assert quality.values.limit == 0
    # the registered range travels to the accumulator
    assert (quality.lower, quality.upper) == (-4.0, 4.0)
    # bins on the reference's cut points
    reference = plan.columns["feature:x1"].reference
    assert isinstance(reference, NumericReference)
    assert np.array_equal(drifting.cut_points, reference.cut_points)


def test_dataset_drift_share_reads_every_feature_of_the_reference() -> None:
    plan = plan_of([objective("dataset_drift_share", 0.5, "lt")], reference_profile())
    names = ["feature:c", "feature:x1", "feature:x2", "feature:x3"]
    assert plan.needs == [("ops",), *[("column", n) for n in names]]
    assert all(plan.columns[n].drift for n in names)
    # without a reference there is nothing to compare, so nothing to keep
    assert plan_of([objective("dataset_drift_share", 0.5, "lt")]).needs == [("ops",)]


def test_a_feature_neither_registered_nor_in_the_reference_is_unknown() -> None:
    plan = plan_of([objective("missing_rate", 0.1, "lt", parameters={"feature": "zz"})])
    assert plan.unknown_columns == {"feature:zz"}
    assert plan.needs == [("ops",)]


def test_a_feature_only_the_reference_has_is_typed_by_the_reference() -> None:
    reference = reference_profile()
    only_c = [FeatureSpec(name="c", type=FeatureType.CATEGORICAL)]
    plan = plan_of(
        [objective("psi", 0.2, "lt", parameters={"feature": "x3"})], reference, features=only_c
    )
    spec = plan.columns["feature:x3"]
    assert spec.numeric is True and spec.lower is None and spec.upper is None


def test_categories_come_from_the_registration_else_from_the_reference() -> None:
    reference = ReferenceProfile.build(
        pd.DataFrame({"c": ["b", "a", "b", "d"]}), {"c": FeatureType.CATEGORICAL}
    )
    assert isinstance(reference.features["c"], CategoricalReference)
    target = objective("unseen_category_rate", 0.1, "lt", parameters={"feature": "c"})
    registered = [FeatureSpec(name="c", type=FeatureType.CATEGORICAL, categories=["x", "y"])]
    unlisted = [FeatureSpec(name="c", type=FeatureType.CATEGORICAL)]
    assert plan_of([target], reference, features=registered).columns["feature:c"].categories == (
        "x",
        "y",
    )
    from_reference = plan_of([target], reference, features=unlisted)
    assert from_reference.columns["feature:c"].categories == ("a", "b", "d")
    acc = from_reference.new_accumulator(("column", "feature:c"))
    assert isinstance(acc, CategoricalAccumulator)
    assert acc.categories == frozenset({"a", "b", "d"})


@pytest.mark.parametrize(
    ("task", "numeric"), [(Task.REGRESSION, True), (Task.BINARY_CLASSIFICATION, False)]
)
def test_the_prediction_column_is_numeric_only_for_regression(task: Task, numeric: bool) -> None:
    plan = plan_of([objective("psi", 0.2, "lt")], task=task)
    assert plan.columns["prediction"].numeric is numeric
    kind = NumericAccumulator if numeric else CategoricalAccumulator
    assert isinstance(plan.new_accumulator(("column", "prediction")), kind)


def test_estimated_and_fairness_objectives_plan_their_own_accumulators() -> None:
    objectives = [
        objective("estimated_accuracy", 0.8),
        objective("estimated_precision", 0.8),  # same need as estimated_accuracy
        objective("estimated_roc_auc", 0.7, parameters={"positive_label": "yes"}),
        objective("estimated_mae", 1.0, "lt"),
        objective("estimated_accuracy", 0.8, parameters={"segment": "region=eu"}),
        objective("demographic_parity_difference", 0.1, "lt", parameters={"attribute": "sex"}),
    ]
    plan = plan_of(objectives)
    assert plan.needs == [
        ("ops",),
        ("cbpe", "1"),
        ("cbpe_auc", "yes"),
        ("dle",),
        ("segment", "region", "eu", "cbpe", "1"),
        ("fairness", "sex", "1"),
    ]
    kinds = [type(plan.new_accumulator(k)) for k in plan.needs]
    assert kinds == [
        OperationsAccumulator,
        ExpectedConfusionAccumulator,
        ScoreRankAccumulator,
        LossEstimateAccumulator,
        ExpectedConfusionAccumulator,
        FairnessAccumulator,
    ]


def test_a_malformed_segment_plans_nothing_for_its_objective() -> None:
    plan = plan_of([objective("estimated_accuracy", 0.8, parameters={"segment": "no-equals"})])
    assert plan.needs == [("ops",)]


def test_accumulators_survive_a_round_trip_through_their_state() -> None:
    objectives = [
        objective("psi", 0.2, "lt", parameters={"feature": "x1"}),
        objective("unseen_category_rate", 0.1, "lt", parameters={"feature": "c"}),
        objective("estimated_accuracy", 0.8),
        objective("demographic_parity_difference", 0.1, "lt", parameters={"attribute": "g"}),
    ]
    plan = plan_of(objectives, reference_profile())
    for key in plan.needs:
        acc = plan.new_accumulator(key)
        numeric = isinstance(acc, NumericAccumulator)
        restored = accumulator_from_state(key, numeric, acc.to_state())
        assert type(restored) is type(acc)
        assert restored.to_state() == acc.to_state()


def test_which_metrics_need_labels() -> None:
    for metric in ("accuracy", "f1", "roc_auc", "mae", "r2", "label_coverage"):
        assert is_label_metric(metric), metric
    for metric in ("estimated_accuracy", "estimated_mae", "psi", "volume", "missing_rate"):
        assert not is_label_metric(metric), metric
    assert is_label_metric("equalized_odds_difference")
    assert not is_label_metric("demographic_parity_difference")  # predictions only


def test_positive_label_and_column_default_to_1_and_the_prediction() -> None:
    assert positive_label(objective("precision", 0.8)) == "1"
    assert positive_label(objective("precision", 0.8, parameters={"positive_label": "y"})) == "y"
    assert column_of(objective("psi", 0.2, "lt")) == "prediction"
    assert column_of(objective("psi", 0.2, "lt", parameters={"feature": "x1"})) == "feature:x1"
