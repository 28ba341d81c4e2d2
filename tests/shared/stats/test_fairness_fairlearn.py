"""Fairness metrics equal fairlearn 0.15's on the same predictions (exactly, to rounding)."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from fairlearn import metrics as flm

from shared.stats.accumulators import FairnessAccumulator
from shared.stats.fairness import (
    GroupConfusionAccumulator,
    demographic_parity_difference,
    disparate_impact_ratio,
    equal_opportunity_difference,
    equalized_odds_difference,
)


def population(rng: np.random.Generator, n: int, groups: int) -> dict[str, np.ndarray]:
    names = np.array([f"g{i}" for i in range(groups)], dtype=object)
    group = rng.choice(names, n, p=rng.dirichlet(np.full(groups, 3.0)))
    bias = 0.3 + 0.4 * (np.searchsorted(names, group) / max(groups - 1, 1))
    actual = (rng.random(n) < bias).astype(np.int64)
    predicted = np.where(rng.random(n) < 0.75, actual, 1 - actual)
    predicted = np.where(rng.random(n) < 0.1 * bias, 1, predicted)
    return {"group": group, "actual": actual, "predicted": predicted}


def accumulate(
    data: dict[str, np.ndarray],
) -> tuple[FairnessAccumulator, GroupConfusionAccumulator]:
    """Both accumulators fed in pieces, one checkpointed and merged, as a window would be."""
    counts = [FairnessAccumulator(positive_label=1) for _ in range(2)]
    confusion = [GroupConfusionAccumulator(positive_label=1) for _ in range(2)]
    n = data["group"].size
    for k, part in enumerate(np.array_split(np.arange(n), 2)):
        for rows in np.array_split(part, 3):
            group, predicted, actual = (data[c][rows] for c in ("group", "predicted", "actual"))
            counts[k].update(group, predicted)
            counts[k].update_labelled(group, predicted, actual)
            confusion[k].update_labelled(group, predicted, actual)
    first = FairnessAccumulator.from_state(orjson.loads(orjson.dumps(counts[0].to_state())))
    first.merge(counts[1])
    state = orjson.loads(orjson.dumps(confusion[0].to_state()))
    restored = GroupConfusionAccumulator.from_state(state)
    restored.merge(confusion[1])
    return first, restored


@pytest.mark.parametrize("groups", [2, 3, 7])
def test_group_metrics_equal_fairlearns(rng: np.random.Generator, groups: int) -> None:
    data = population(rng, 6_000, groups)
    counts, confusion = accumulate(data)
    y, pred, sensitive = data["actual"], data["predicted"], data["group"]
    assert demographic_parity_difference(counts) == pytest.approx(
        flm.demographic_parity_difference(y, pred, sensitive_features=sensitive), abs=1e-12
    )
    assert disparate_impact_ratio(counts) == pytest.approx(
        flm.demographic_parity_ratio(y, pred, sensitive_features=sensitive), abs=1e-12
    )
    assert equal_opportunity_difference(counts) == pytest.approx(
        flm.equal_opportunity_difference(y, pred, sensitive_features=sensitive), abs=1e-12
    )
    assert equalized_odds_difference(confusion) == pytest.approx(
        flm.equalized_odds_difference(y, pred, sensitive_features=sensitive), abs=1e-12
    )


def test_equalized_odds_against_a_privileged_group_is_the_worst_comparison(
    rng: np.random.Generator,
) -> None:
    data = population(rng, 5_000, 4)
    _, confusion = accumulate(data)
    frame = flm.MetricFrame(
        metrics={"tpr": flm.true_positive_rate, "fpr": flm.false_positive_rate},
        y_true=data["actual"],
        y_pred=data["predicted"],
        sensitive_features=data["group"],
    ).by_group
    expected = max(
        float((frame[rate] - frame.loc["g0", rate]).abs().max()) for rate in ("tpr", "fpr")
    )
    assert equalized_odds_difference(confusion, privileged="g0") == pytest.approx(
        expected, abs=1e-12
    )


def test_group_confusion_counts_labelled_rows_only() -> None:
    acc = GroupConfusionAccumulator(positive_label="yes")
    acc.update_labelled(
        ["a", "a", "a", "b", None],
        ["yes", "no", "yes", "yes", "yes"],
        ["yes", "yes", "no", "no", "yes"],
    )
    table = acc.table()
    assert table["a"]["true_positive"] == 1 and table["a"]["false_positive"] == 1
    assert table["a"]["actual_negative"] == 1 and table["b"]["false_positive"] == 1
    assert acc.missing == 1
    with pytest.raises(TypeError):
        acc.update(["a"], ["yes"])
