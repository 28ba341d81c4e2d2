"""Data-quality rates of one column in one window (ISO/IEC 42001 A.7.4 evidence)."""

from __future__ import annotations

from ._common import InsufficientData
from .accumulators import CategoricalAccumulator, NumericAccumulator

__all__ = ["missing_rate", "out_of_range_rate", "unseen_category_rate"]


def missing_rate(acc: NumericAccumulator | CategoricalAccumulator) -> float:
    """Share of values that are missing (None, NaN; for numeric columns also +/-inf)."""
    if acc.total == 0:
        raise InsufficientData("no values in the window")
    return acc.missing / acc.total


def out_of_range_rate(acc: NumericAccumulator) -> float:
    """Share of present values outside the accumulator's [lower, upper]."""
    if acc.lower is None and acc.upper is None:
        raise ValueError("the accumulator has no valid range")
    if acc.count == 0:
        raise InsufficientData("no present values in the window")
    return acc.out_of_range / acc.count


def unseen_category_rate(acc: CategoricalAccumulator) -> float:
    """Share of present values outside the accumulator's known categories."""
    if acc.categories is None:
        raise ValueError("the accumulator has no known categories")
    if acc.count == 0:
        raise InsufficientData("no present values in the window")
    return acc.unseen / acc.count
