"""Group fairness across one attribute, from per-group counts.

Without a ``privileged`` group the metrics compare the best and the worst group (fairlearn's
between-groups definitions); with one, every other group is compared with it and the worst
comparison is reported. Groups without the rows a rate needs (no predictions; no actual
positives for the true positive rate) are left out.

* demographic parity difference: largest gap in positive-prediction rate (0 is parity).
* equal opportunity difference: largest gap in true positive rate among labelled rows.
* disparate impact ratio: smallest ratio of positive-prediction rates (1 is parity; the
  "four-fifths rule" asks for >= 0.8).
* equalized odds difference: the larger of the gaps in true positive rate and in false
  positive rate among labelled rows (fairlearn's ``equalized_odds_difference``); it needs the
  labelled positive predictions per group, which :class:`GroupConfusionAccumulator` keeps.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import numpy.typing as npt

from ._common import InsufficientData, IntArray, Scalar, State, category_key, category_keys
from .accumulators import FairnessAccumulator

__all__ = [
    "GroupConfusionAccumulator",
    "demographic_parity_difference",
    "disparate_impact_ratio",
    "equal_opportunity_difference",
    "equalized_odds_difference",
    "group_rates",
]

_COLUMNS = {
    "n": 0,
    "predicted_positive": 1,
    "labelled": 2,
    "actual_positive": 3,
    "true_positive": 4,
    "labelled_predicted_positive": 5,
}


def group_rates(acc: FairnessAccumulator, numerator: str, denominator: str) -> dict[str, float]:
    """Per group ``numerator / denominator`` (column names of ``FairnessAccumulator.table``)."""
    table = {group: _row(acc, row) for group, row in acc.groups.items()}
    return {
        group: float(row[numerator]) / float(row[denominator])
        for group, row in sorted(table.items())
        if row[denominator] > 0
    }


def _row(acc: FairnessAccumulator, row: IntArray) -> dict[str, int]:
    counts = {name: int(row[i]) for name, i in _COLUMNS.items() if i < row.size}
    if isinstance(acc, GroupConfusionAccumulator):
        counts["false_positive"] = counts["labelled_predicted_positive"] - counts["true_positive"]
        counts["actual_negative"] = counts["labelled"] - counts["actual_positive"]
    return counts


def _split(rates: dict[str, float], privileged: Scalar | None) -> tuple[float | None, list[float]]:
    if len(rates) < 2:
        raise InsufficientData("fairness needs at least two groups with data")
    if privileged is None:
        return None, list(rates.values())
    key = category_key(privileged)
    if key not in rates:
        raise InsufficientData(f"no data for the privileged group {key!r}")
    return rates[key], [rate for group, rate in rates.items() if group != key]


def _largest_gap(rates: dict[str, float], privileged: Scalar | None) -> float:
    reference, others = _split(rates, privileged)
    if reference is None:
        return max(others) - min(others)
    return max(abs(rate - reference) for rate in others)


def demographic_parity_difference(
    acc: FairnessAccumulator, *, privileged: Scalar | None = None
) -> float:
    return _largest_gap(group_rates(acc, "predicted_positive", "n"), privileged)


def equal_opportunity_difference(
    acc: FairnessAccumulator, *, privileged: Scalar | None = None
) -> float:
    return _largest_gap(group_rates(acc, "true_positive", "actual_positive"), privileged)


def disparate_impact_ratio(acc: FairnessAccumulator, *, privileged: Scalar | None = None) -> float:
    """min rate / max rate, or min over groups of rate / privileged rate. 0/0 counts as parity."""
    reference, others = _split(group_rates(acc, "predicted_positive", "n"), privileged)
    if reference is None:
        reference, others = max(others), [min(others)]
    if reference == 0:
        if all(rate == 0 for rate in others):
            return 1.0
        raise InsufficientData("the privileged group has no positive predictions")
    return min(others) / reference


def equalized_odds_difference(
    acc: GroupConfusionAccumulator, *, privileged: Scalar | None = None
) -> float:
    """max(true positive rate gap, false positive rate gap) across the groups."""
    gaps = [
        _largest_gap(group_rates(acc, "true_positive", "actual_positive"), privileged),
        _largest_gap(group_rates(acc, "false_positive", "actual_negative"), privileged),
    ]
    return max(gaps)


class GroupConfusionAccumulator(FairnessAccumulator):
    """Per group, the labelled rows' confusion counts: besides ``FairnessAccumulator``'s
    columns, the labelled positive predictions (so false positives are known). Labelled rows
    without a group, prediction or outcome are counted in ``missing``."""

    def update_labelled(
        self, groups: npt.ArrayLike, predicted: npt.ArrayLike, actual: npt.ArrayLike
    ) -> None:
        group_keys, predicted_positive, valid = self._keys(groups, predicted)
        actual_keys, actual_missing = category_keys(actual)
        valid &= ~actual_missing
        self.missing += int(np.count_nonzero(~valid))
        actual_positive = (actual_keys == self.positive_label)[valid]
        predicted_positive = predicted_positive[valid]
        zeros = np.zeros(actual_positive.size, dtype=np.bool_)
        self._add(
            group_keys[valid],
            [
                zeros,
                zeros,
                np.ones_like(zeros),
                actual_positive,
                actual_positive & predicted_positive,
                predicted_positive,
            ],
        )

    def update(self, groups: npt.ArrayLike, predicted: npt.ArrayLike) -> None:
        raise TypeError("a GroupConfusionAccumulator counts labelled rows only")

    def table(self) -> dict[str, dict[str, int]]:
        return {group: _row(self, row) for group, row in sorted(self.groups.items())}

    @classmethod
    def from_state(cls, state: State) -> Self:
        acc = super().from_state(state)
        if any(row.size != len(_COLUMNS) for row in acc.groups.values()):
            raise ValueError("group confusion state has rows of the wrong width")
        return acc
