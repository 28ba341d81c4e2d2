"""Fairness metrics against a direct numpy computation on the raw arrays."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from shared.stats import (
    FairnessAccumulator,
    InsufficientData,
    demographic_parity_difference,
    disparate_impact_ratio,
    equal_opportunity_difference,
)


@pytest.fixture
def population(rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = 9_000
    group = rng.choice(np.array(["a", "b", "c"], dtype=object), n, p=[0.5, 0.3, 0.2])
    group[rng.random(n) < 0.02] = None
    bias = np.select([group == "a", group == "b"], [0.55, 0.40], 0.30)
    predicted = (rng.random(n) < bias).astype(np.int64)
    actual = (rng.random(n) < 0.5 * bias + 0.25 * predicted).astype(np.int64)
    labelled = rng.random(n) < 0.6
    return {"group": group, "predicted": predicted, "actual": actual, "labelled": labelled}


def accumulate(population: dict[str, np.ndarray]) -> FairnessAccumulator:
    halves = [FairnessAccumulator(positive_label=1), FairnessAccumulator(positive_label=1)]
    n = population["group"].size
    for acc, part in zip(halves, (slice(0, n // 3), slice(n // 3, n)), strict=True):
        group, predicted = population["group"][part], population["predicted"][part]
        labelled, actual = population["labelled"][part], population["actual"][part]
        for rows in np.array_split(np.arange(group.size), 4):
            acc.update(group[rows], predicted[rows])
            keep = rows[labelled[rows]]
            acc.update_labelled(group[keep], predicted[keep], actual[keep])
    first = FairnessAccumulator.from_state(orjson.loads(orjson.dumps(halves[0].to_state())))
    first.merge(halves[1])
    return first


def rates(population: dict[str, np.ndarray]) -> tuple[dict[str, float], dict[str, float]]:
    """Positive-prediction rate and true positive rate per group, straight from the arrays."""
    group, predicted = population["group"], population["predicted"]
    labelled, actual = population["labelled"], population["actual"]
    selection, tpr = {}, {}
    for g in ("a", "b", "c"):
        in_group = group == g
        selection[g] = predicted[in_group].mean()
        positives = in_group & labelled & (actual == 1)
        tpr[g] = predicted[positives].mean()
    return selection, tpr


def test_metrics_without_a_privileged_group(population: dict[str, np.ndarray]) -> None:
    acc = accumulate(population)
    selection, tpr = rates(population)
    assert acc.missing == np.count_nonzero(population["group"] == None)  # noqa: E711
    assert demographic_parity_difference(acc) == pytest.approx(
        max(selection.values()) - min(selection.values()), rel=1e-12
    )
    assert equal_opportunity_difference(acc) == pytest.approx(
        max(tpr.values()) - min(tpr.values()), rel=1e-12
    )
    assert disparate_impact_ratio(acc) == pytest.approx(
        min(selection.values()) / max(selection.values()), rel=1e-12
    )


def test_metrics_against_a_privileged_group(population: dict[str, np.ndarray]) -> None:
    acc = accumulate(population)
    selection, tpr = rates(population)
    others = ("b", "c")
    assert demographic_parity_difference(acc, privileged="a") == pytest.approx(
        max(abs(selection[g] - selection["a"]) for g in others), rel=1e-12
    )
    assert equal_opportunity_difference(acc, privileged="a") == pytest.approx(
        max(abs(tpr[g] - tpr["a"]) for g in others), rel=1e-12
    )
    assert disparate_impact_ratio(acc, privileged="a") == pytest.approx(
        min(selection[g] / selection["a"] for g in others), rel=1e-12
    )


def test_fairness_needs_two_groups_and_the_privileged_one() -> None:
    acc = FairnessAccumulator(positive_label="yes")
    acc.update(["a", "a"], ["yes", "no"])
    with pytest.raises(InsufficientData):
        demographic_parity_difference(acc)
    acc.update(["b"], ["no"])
    with pytest.raises(InsufficientData):
        disparate_impact_ratio(acc, privileged="z")
    assert demographic_parity_difference(acc) == 0.5
    assert disparate_impact_ratio(acc, privileged="a") == 0.0
