"""Group fairness across one attribute, from per-group counts.

Without a ``privileged`` group the metrics compare the best and the worst group (fairlearn's
between-groups definitions); with one, every other group is compared with it and the worst
comparison is reported. Groups without the rows a rate needs (no predictions; no actual
positives for the true positive rate) are left out.

* demographic parity difference: largest gap in positive-prediction rate (0 is parity).
* equal opportunity difference: largest gap in true positive rate among labelled rows.
* disparate impact ratio: smallest ratio of positive-prediction rates (1 is parity; the
  "four-fifths rule" asks for >= 0.8).
"""

from __future__ import annotations

from ._common import InsufficientData, Scalar, category_key
from .accumulators import FairnessAccumulator

__all__ = [
    "demographic_parity_difference",
    "disparate_impact_ratio",
    "equal_opportunity_difference",
    "group_rates",
]

_COLUMNS = {
    "n": 0,
    "predicted_positive": 1,
    "labelled": 2,
    "actual_positive": 3,
    "true_positive": 4,
}


def group_rates(acc: FairnessAccumulator, numerator: str, denominator: str) -> dict[str, float]:
    """Per group ``numerator / denominator`` (column names of ``FairnessAccumulator.table``)."""
    top, bottom = _COLUMNS[numerator], _COLUMNS[denominator]
    return {
        group: float(row[top]) / float(row[bottom])
        for group, row in sorted(acc.groups.items())
        if row[bottom] > 0
    }


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
