"""Higher moments of a regression's errors and target, for the sampling errors of RMSE, MAPE
and R^2 (``performance.sampling_error``). Mergeable and exact up to rounding: central moments
are combined with Pébay's formulas and the error-target co-moments re-centred on merge, so a
large target mean costs no precision."""

from __future__ import annotations

from typing import Self

import numpy as np

from ._common import FloatArray, State

__all__ = ["ErrorMoments"]

_FLOATS = (
    "sum_fourth_error",
    "sum_squared_percentage_error",
    "mean",
    "m2",
    "m3",
    "m4",
    "e2",
    "e2_dev",
    "e2_dev2",
)


class ErrorMoments:
    """Sums behind the variances of the squared error, the percentage error and R^2's terms.

    ``complete`` is False for an accumulator restored from a checkpoint written before these
    sums existed: its sampling errors are then unknown, not wrong.
    """

    def __init__(self) -> None:
        self.complete = True
        self.n = 0
        self.sum_fourth_error = 0.0
        self.sum_squared_percentage_error = 0.0
        self.mean = 0.0
        self.m2 = 0.0
        self.m3 = 0.0
        self.m4 = 0.0
        """Sums of the target's deviations from ``mean`` to the 2nd, 3rd, 4th power."""
        self.e2 = 0.0
        self.e2_dev = 0.0
        self.e2_dev2 = 0.0
        """Sums of e^2, e^2 (y - mean), e^2 (y - mean)^2."""

    def update(self, actual: FloatArray, error: FloatArray, percentage: FloatArray) -> None:
        """One batch: targets, absolute errors and absolute percentage errors (all finite)."""
        if actual.size == 0:
            return
        other = ErrorMoments()
        squared = np.square(error)
        other.n = int(actual.size)
        other.sum_fourth_error = float(np.square(squared).sum())
        other.sum_squared_percentage_error = float(np.square(percentage).sum())
        other.mean = float(actual.mean())
        deviation = actual - other.mean
        d2 = np.square(deviation)
        other.m2 = float(d2.sum())
        other.m3 = float((d2 * deviation).sum())
        other.m4 = float(np.square(d2).sum())
        other.e2 = float(squared.sum())
        other.e2_dev = float((squared * deviation).sum())
        other.e2_dev2 = float((squared * d2).sum())
        self.merge(other)

    def merge(self, other: ErrorMoments) -> None:
        self.complete = self.complete and other.complete
        if other.n == 0:
            return
        if self.n == 0:
            self.__dict__.update({**other.__dict__, "complete": self.complete})
            return
        na, nb = float(self.n), float(other.n)
        n = na + nb
        delta = other.mean - self.mean
        mean = self.mean + delta * nb / n
        m2 = self.m2 + other.m2 + delta**2 * na * nb / n
        m3 = (
            self.m3
            + other.m3
            + delta**3 * na * nb * (na - nb) / n**2
            + 3.0 * delta * (na * other.m2 - nb * self.m2) / n
        )
        m4 = (
            self.m4
            + other.m4
            + delta**4 * na * nb * (na * na - na * nb + nb * nb) / n**3
            + 6.0 * delta**2 * (na * na * other.m2 + nb * nb * self.m2) / n**2
            + 4.0 * delta * (na * other.m3 - nb * self.m3) / n
        )
        # re-centre each side's co-moments on the merged mean: d = own mean - merged mean
        e2_dev = e2_dev2 = 0.0
        for side in (self, other):
            d = side.mean - mean
            e2_dev += side.e2_dev + d * side.e2
            e2_dev2 += side.e2_dev2 + 2.0 * d * side.e2_dev + d * d * side.e2
        self.n = int(n)
        self.mean, self.m2, self.m3, self.m4 = mean, m2, m3, m4
        self.sum_fourth_error += other.sum_fourth_error
        self.sum_squared_percentage_error += other.sum_squared_percentage_error
        self.e2 += other.e2
        self.e2_dev, self.e2_dev2 = e2_dev, e2_dev2

    def to_state(self) -> State:
        return dict(self.__dict__)

    @classmethod
    def from_state(cls, state: State | None) -> Self:
        moments = cls()
        if state is None:
            moments.complete = False
            return moments
        moments.complete = bool(state["complete"])
        moments.n = int(state["n"])
        for name in _FLOATS:
            setattr(moments, name, float(state[name]))
        return moments
