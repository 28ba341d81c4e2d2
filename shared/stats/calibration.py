"""Calibration of a binary classifier's scores on the reference, as NannyML's CBPE does it.

CBPE (``cbpe``) reads a score as the probability of the positive class, so its estimates are
only as good as that reading. NannyML 0.13 therefore checks the reference scores first
(``nannyml.calibration.needs_calibration``) and, when they are miscalibrated, maps every score
through an isotonic regression of the reference's outcomes on its scores before estimating.
This module does the same without scikit-learn or scipy (the registry, which fits it when a
reference is uploaded, imports neither):

* :func:`isotonic_fit` is scikit-learn's ``IsotonicRegression(out_of_bounds="clip")``: ties in
  the score averaged (``_make_unique``), the pool-adjacent-violators algorithm, redundant
  interior points dropped; :meth:`ScoreCalibration.calibrate` is its ``predict`` (``np.interp``
  after clipping). ``tests/shared/stats/test_calibration.py`` checks both against scikit-learn.
* :func:`calibrate_scores` decides as NannyML does: no calibration when the reference holds one
  class or the scores separate it almost perfectly (ROC AUC > 0.999); otherwise ten stratified
  90/10 splits, an isotonic map fitted on each 90 % and applied to its 10 %, and the expected
  calibration error of the ten held-out parts taken together (ten equal-count bins over the
  sorted scores) before and after; calibration is applied when it lowers that error. The splits
  are scikit-learn's ``StratifiedShuffleSplit(random_state=42)`` draw for draw (numpy's legacy
  ``RandomState``), so the decision is NannyML's on the same reference, borderline ones
  included; the errors and the decision are recorded in the profile.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict

from ._common import FloatArray, IntArray

__all__ = [
    "CALIBRATION_BINS",
    "CALIBRATION_SPLITS",
    "ScoreCalibration",
    "calibrate_scores",
    "equal_count_ece",
    "isotonic_fit",
]

CALIBRATION_BINS = 10
CALIBRATION_SPLITS = 10
TEST_SHARE = 0.1
SEPARABLE_AUC = 0.999
"""NannyML does not calibrate scores that separate the reference's classes this well."""


class ScoreCalibration(BaseModel):
    """How one class's scores are read as probabilities: as given, or through an isotonic map."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    method: Literal["none", "isotonic"]
    reason: str
    """Why, in words (the decision and the errors it was based on)."""
    n: int
    """Reference rows with both a score and an outcome."""
    ece_before: float | None = None
    """Held-out expected calibration error of the scores as given (None: not tested)."""
    ece_after: float | None = None
    """... and after an isotonic map fitted on the rest of the reference."""
    x: tuple[float, ...] = ()
    """Isotonic map: score thresholds (increasing); empty without calibration."""
    y: tuple[float, ...] = ()
    """... and the probability at each threshold, linear in between, constant outside."""

    @property
    def applied(self) -> bool:
        return self.method == "isotonic"

    @cached_property
    def _x(self) -> FloatArray:
        return np.asarray(self.x, dtype=np.float64)

    @cached_property
    def _y(self) -> FloatArray:
        return np.asarray(self.y, dtype=np.float64)

    def calibrate(self, scores: npt.ArrayLike) -> FloatArray:
        """The calibrated probabilities of ``scores`` (NaN stays NaN)."""
        p = np.asarray(scores, dtype=np.float64)
        if not self.applied:
            return p
        result: FloatArray = np.interp(np.clip(p, self._x[0], self._x[-1]), self._x, self._y)
        return np.where(np.isnan(p), np.nan, result)


def _make_unique(x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """scikit-learn's ``_make_unique`` on sorted ``x``: x values closer than float64's
    resolution to the first of their run are one value, with the mean of their y."""
    eps = float(np.finfo(np.float64).resolution)
    values, starts = np.unique(x, return_index=True)
    if values.size > 1 and np.any(np.diff(values) < eps):  # runs of near-equal values
        first = [0]
        current = float(x[0])
        for j, value in enumerate(x.tolist()):
            if value - current >= eps:
                first.append(j)
                current = value
        starts = np.asarray(first, dtype=np.int64)
    weights = np.diff(np.append(starts, x.size)).astype(np.float64)
    sums = np.add.reduceat(y, starts)
    return x[starts], sums / weights, weights


def _pava(y: FloatArray, w: FloatArray) -> FloatArray:
    """Weighted pool-adjacent-violators (increasing), as scikit-learn's contiguous solver."""
    y = y.copy()
    w = w.copy()
    n = y.size
    target = list(range(n))
    values, weights = y.tolist(), w.tolist()
    i = 0
    while i < n:
        k = target[i] + 1
        if k == n:
            break
        if values[i] < values[k]:
            i = k
            continue
        sum_wy = weights[i] * values[i]
        sum_w = weights[i]
        while True:
            previous = values[k]
            sum_wy += weights[k] * values[k]
            sum_w += weights[k]
            k = target[k] + 1
            if k == n or previous < values[k]:
                values[i] = sum_wy / sum_w
                weights[i] = sum_w
                target[i] = k - 1
                target[k - 1] = i
                if i > 0:
                    i = target[i - 1]
                break
    result = np.empty(n, dtype=np.float64)
    i = 0
    while i < n:
        k = target[i] + 1
        result[i:k] = values[i]
        i = k
    return result


def isotonic_fit(scores: npt.ArrayLike, outcomes: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Thresholds (x, y) of the increasing isotonic regression of ``outcomes`` on ``scores``."""
    x = np.asarray(scores, dtype=np.float64)
    target = np.asarray(outcomes, dtype=np.float64)
    order = np.lexsort((target, x))
    unique_x, unique_y, weights = _make_unique(x[order], target[order])
    fitted = _pava(unique_y, weights)
    keep = np.ones(fitted.size, dtype=np.bool_)
    keep[1:-1] = (fitted[1:-1] != fitted[:-2]) | (fitted[1:-1] != fitted[2:])
    return unique_x[keep], fitted[keep]


def _interp(x: FloatArray, y: FloatArray, scores: FloatArray) -> FloatArray:
    result: FloatArray = np.interp(np.clip(scores, x[0], x[-1]), x, y)
    return result


def equal_count_ece(
    outcomes: FloatArray, scores: FloatArray, bins: int = CALIBRATION_BINS
) -> float:
    """NannyML's expected calibration error: rows sorted by score, ``bins`` bins of equal
    count (the last takes the remainder), ``sum(share * |mean score - positive rate|)``."""
    n = scores.size
    if n <= 2 * bins:
        bins = max(n // 2, 1)
    order = np.argsort(scores)  # NannyML's (unstable) order: ties fall into bins as there
    p, y = scores[order], outcomes[order]
    width = n // bins
    edges = np.arange(0, n + 1, width)
    edges[-1] = n
    total = 0.0
    for left, right in zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True):
        part = slice(left, right)
        total += (right - left) / n * abs(float(np.mean(p[part])) - float(np.mean(y[part])))
    return total


def _auc(outcomes: FloatArray, scores: FloatArray) -> float:
    """Mann-Whitney ROC AUC with ties counted one half."""
    levels, inverse = np.unique(scores, return_inverse=True)
    positive = outcomes > 0.5
    pos = np.bincount(inverse[positive], minlength=levels.size).astype(np.float64)
    neg = np.bincount(inverse[~positive], minlength=levels.size).astype(np.float64)
    below = np.cumsum(neg) - neg
    return float(np.sum(pos * (below + 0.5 * neg)) / (pos.sum() * neg.sum()))


def _approximate_mode(class_counts: IntArray, n_draws: int, rng: np.random.RandomState) -> IntArray:
    """scikit-learn's ``_approximate_mode`` (the draws' rounding, ties broken by ``rng``)."""
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need_to_add = int(n_draws - floored.sum())
    if need_to_add > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (inds,) = np.where(remainder == value)
            add_now = min(len(inds), need_to_add)
            inds = rng.choice(inds, size=add_now, replace=False)
            floored[inds] += 1
            need_to_add -= add_now
            if need_to_add == 0:
                break
    result: IntArray = floored.astype(np.int64)
    return result


def _stratified_test_sets(
    outcomes: FloatArray, splits: int, seed: int
) -> list[npt.NDArray[np.intp]]:
    """The test sets of ``StratifiedShuffleSplit(n_splits, test_size=0.1, random_state=seed)``,
    draw for draw (legacy ``RandomState``, as scikit-learn), so the decision is NannyML's."""
    n = outcomes.size
    n_test = math.ceil(TEST_SHARE * n)
    n_train = n - n_test
    _, y_indices, class_counts = np.unique(outcomes, return_inverse=True, return_counts=True)
    class_indices = np.split(np.argsort(y_indices, kind="stable"), np.cumsum(class_counts)[:-1])
    rng = np.random.RandomState(seed)
    result = []
    for _ in range(splits):
        n_i = _approximate_mode(class_counts, n_train, rng)
        t_i = _approximate_mode(class_counts - n_i, n_test, rng)
        test: list[int] = []
        for i in range(class_counts.size):
            permutation = rng.permutation(class_counts[i])
            chosen = class_indices[i].take(permutation, mode="clip")
            test.extend(chosen[n_i[i] : n_i[i] + t_i[i]].tolist())
        rng.permutation(n_train)  # scikit-learn shuffles the train indices here
        result.append(rng.permutation(np.asarray(test, dtype=np.intp)))
    return result


def calibrate_scores(
    scores: npt.ArrayLike,
    outcomes: npt.ArrayLike,
    *,
    splits: int = CALIBRATION_SPLITS,
    bins: int = CALIBRATION_BINS,
    seed: int = 42,
) -> ScoreCalibration:
    """Decide, as NannyML's ``needs_calibration``, whether the scores need an isotonic map
    (``outcomes``: 1 for the positive class, 0 otherwise; rows with a NaN score are left out)."""
    p = np.asarray(scores, dtype=np.float64)
    y = np.asarray(outcomes, dtype=np.float64)
    known = np.isfinite(p) & np.isfinite(y)
    p, y = p[known], y[known]
    n = int(p.size)
    positives = int(np.count_nonzero(y > 0.5))
    if positives in (0, n):
        return ScoreCalibration(
            method="none", reason="the reference outcomes hold one class: nothing to fit", n=n
        )
    auc = _auc(y, p)
    if auc > SEPARABLE_AUC:
        return ScoreCalibration(
            method="none",
            reason=f"the scores separate the reference's classes (ROC AUC {auc:.4f} > 0.999)",
            n=n,
        )
    if min(positives, n - positives) < 2 or n < 2 * bins:
        return ScoreCalibration(
            method="none", reason=f"too few reference outcomes to test calibration ({n})", n=n
        )
    tests = _stratified_test_sets(y, splits, seed)
    raw, calibrated, truth = [], [], []
    for test in tests:
        train = np.ones(n, dtype=np.bool_)
        train[test] = False
        x_fit, y_fit = isotonic_fit(p[train], y[train])
        raw.append(p[test])
        calibrated.append(_interp(x_fit, y_fit, p[test]))
        truth.append(y[test])
    held_out = np.concatenate(truth)
    before = equal_count_ece(held_out, np.concatenate(raw), bins)
    after = equal_count_ece(held_out, np.concatenate(calibrated), bins)
    if before <= after:
        return ScoreCalibration(
            method="none",
            reason=(
                f"calibrated already: held-out ECE {before:.4f} would not fall "
                f"with an isotonic map ({after:.4f})"
            ),
            n=n,
            ece_before=before,
            ece_after=after,
        )
    x_map, y_map = isotonic_fit(p, y)
    return ScoreCalibration(
        method="isotonic",
        reason=f"miscalibrated: held-out ECE {before:.4f}, {after:.4f} after an isotonic map",
        n=n,
        ece_before=before,
        ece_after=after,
        x=tuple(x_map.tolist()),
        y=tuple(y_map.tolist()),
    )
