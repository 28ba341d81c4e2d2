"""Confidence-based performance estimation (CBPE, as NannyML) for binary classifiers.

Before labels arrive, a calibrated model's scores already say how often it should be right: a
row predicted positive with P(positive) = p is a true positive with probability p and a false
positive with probability 1 - p. Summing these gives the expected confusion matrix, and the
metrics below are NannyML's ratios of expected counts. The estimate is only as good as the
calibration of the scores (NannyML calibrates on reference data first; we expect calibrated
scores). Results are reported with ``estimated=True``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Self

import numpy as np
import numpy.typing as npt

from ._common import (
    FloatArray,
    InsufficientData,
    IntArray,
    Scalar,
    State,
    as_float_array,
    category_key,
    decode_array,
    encode_array,
)
from .accumulators import ExpectedConfusionAccumulator
from .performance import auc_standard_error, confusion_standard_error

__all__ = [
    "ESTIMATES",
    "ExpectedConfusion",
    "ScoreRankAccumulator",
    "estimate_sampling_error",
    "estimated_accuracy",
    "estimated_f1",
    "estimated_precision",
    "estimated_recall",
    "estimated_roc_auc",
    "estimated_roc_auc_error_bound",
    "estimated_roc_auc_sampling_error",
    "expected_confusion",
]


@dataclass(frozen=True, slots=True)
class ExpectedConfusion:
    tp: float
    fp: float
    fn: float
    tn: float


def expected_confusion(acc: ExpectedConfusionAccumulator) -> ExpectedConfusion:
    if acc.n == 0:
        raise InsufficientData("no scored predictions in the window")
    tp = acc.expected_tp
    fn = acc.expected_fn
    return ExpectedConfusion(
        tp=tp,
        fp=acc.predicted_positive - tp,
        fn=fn,
        tn=(acc.n - acc.predicted_positive) - fn,
    )


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else 0.0


def estimated_accuracy(acc: ExpectedConfusionAccumulator) -> float:
    c = expected_confusion(acc)
    return (c.tp + c.tn) / acc.n


def estimated_precision(acc: ExpectedConfusionAccumulator) -> float:
    c = expected_confusion(acc)
    return _ratio(c.tp, c.tp + c.fp)


def estimated_recall(acc: ExpectedConfusionAccumulator) -> float:
    c = expected_confusion(acc)
    return _ratio(c.tp, c.tp + c.fn)


def estimated_f1(acc: ExpectedConfusionAccumulator) -> float:
    c = expected_confusion(acc)
    return _ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn)


ESTIMATES = {
    "estimated_accuracy": estimated_accuracy,
    "estimated_precision": estimated_precision,
    "estimated_recall": estimated_recall,
    "estimated_f1": estimated_f1,
}
"""The estimates read from an :class:`ExpectedConfusionAccumulator`."""


def estimate_sampling_error(metric: str, acc: ExpectedConfusionAccumulator) -> float | None:
    """Standard error of the metric on a window like this one, at its expected counts."""
    c = expected_confusion(acc)
    value = confusion_standard_error(metric.removeprefix("estimated_"), c.tp, c.fp, c.fn, c.tn)
    return value if math.isfinite(value) else None


class ScoreRankAccumulator:
    """Unlabelled scored predictions ranked by the model's score, with their calibrated
    probability of the positive class: what the estimated ROC AUC needs."""

    def __init__(
        self, *, positive_label: Scalar, score_bins: int = 10_000, exact_scores: int = 10_000
    ) -> None:
        self.positive_label = category_key(positive_label)
        self.score_bins = score_bins
        self.exact_scores = exact_scores
        self.n = 0
        self._scores: FloatArray | None = np.empty(0, dtype=np.float64)
        self._probabilities: FloatArray | None = np.empty(0, dtype=np.float64)
        self.count_hist: IntArray | None = None
        self.probability_hist: FloatArray | None = None

    @property
    def exact(self) -> bool:
        return self._scores is not None

    @property
    def nbytes(self) -> int:
        arrays = (self._scores, self._probabilities, self.count_hist, self.probability_hist)
        return sum(a.nbytes for a in arrays if a is not None)

    def update(self, scores: npt.ArrayLike, probabilities: npt.ArrayLike) -> None:
        """``scores`` as the model gave them, ``probabilities`` calibrated (NaN: no score)."""
        raw, p = as_float_array(scores), as_float_array(probabilities)
        if raw.shape != p.shape:
            raise ValueError("scores and probabilities differ in length")
        valid = np.isfinite(raw) & np.isfinite(p)
        if not valid.all():
            raw, p = raw[valid], p[valid]
        self._add(raw, p)

    def _add(self, raw: FloatArray, p: FloatArray) -> None:
        if raw.size == 0:
            return
        self.n += int(raw.size)
        if self._scores is not None and self._probabilities is not None:
            if self._scores.size + raw.size <= self.exact_scores:
                self._scores = np.concatenate([self._scores, raw])
                self._probabilities = np.concatenate([self._probabilities, p])
                return
            raw = np.concatenate([self._scores, raw])
            p = np.concatenate([self._probabilities, p])
            self._scores = self._probabilities = None
        self._add_binned(raw, p)

    def _bins(self, raw: FloatArray) -> npt.NDArray[np.intp]:
        return np.clip((raw * self.score_bins).astype(np.intp), 0, self.score_bins - 1)

    def _add_binned(self, raw: FloatArray, p: FloatArray) -> None:
        if self.count_hist is None or self.probability_hist is None:
            self.count_hist = np.zeros(self.score_bins, dtype=np.int64)
            self.probability_hist = np.zeros(self.score_bins, dtype=np.float64)
        bins = self._bins(raw)
        self.count_hist += np.bincount(bins, minlength=self.score_bins)
        self.probability_hist += np.bincount(bins, weights=p, minlength=self.score_bins)

    def levels(self) -> tuple[FloatArray, FloatArray]:
        """Expected (positives, negatives) per score level, increasing: one level per distinct
        score while exact, else per bin."""
        if self._scores is not None and self._probabilities is not None:
            levels, inverse = np.unique(self._scores, return_inverse=True)
            counts = np.bincount(inverse, minlength=levels.size).astype(np.float64)
            positives: FloatArray = np.bincount(
                inverse, weights=self._probabilities, minlength=levels.size
            ).astype(np.float64)
            return positives, counts - positives
        if self.count_hist is None or self.probability_hist is None:
            return np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.float64)
        return self.probability_hist, self.count_hist - self.probability_hist

    def merge(self, other: ScoreRankAccumulator) -> None:
        mine = (self.positive_label, self.score_bins, self.exact_scores)
        if mine != (other.positive_label, other.score_bins, other.exact_scores):
            raise ValueError("cannot merge score rank accumulators configured differently")
        if other._scores is not None and other._probabilities is not None:
            self._add(other._scores, other._probabilities)
            return
        if self._scores is not None and self._probabilities is not None:
            scores, probabilities = self._scores, self._probabilities
            self._scores = self._probabilities = None
            self._add_binned(scores, probabilities)
        assert other.count_hist is not None and other.probability_hist is not None
        assert self.count_hist is not None and self.probability_hist is not None
        self.n += other.n
        self.count_hist = self.count_hist + other.count_hist
        self.probability_hist = self.probability_hist + other.probability_hist

    def to_state(self) -> State:
        exact = self._scores is not None and self._probabilities is not None
        return {
            "positive_label": self.positive_label,
            "score_bins": self.score_bins,
            "exact_scores": self.exact_scores,
            "n": self.n,
            "scores": encode_array(self._scores) if self._scores is not None else None,
            "probabilities": encode_array(self._probabilities)
            if self._probabilities is not None
            else None,
            "count_hist": None
            if exact or self.count_hist is None
            else encode_array(self.count_hist),
            "probability_hist": None
            if exact or self.probability_hist is None
            else encode_array(self.probability_hist),
        }

    @classmethod
    def from_state(cls, state: State) -> Self:
        acc = cls(
            positive_label=str(state["positive_label"]),
            score_bins=int(state["score_bins"]),
            exact_scores=int(state["exact_scores"]),
        )
        acc.n = int(state["n"])
        if state["scores"] is not None:
            acc._scores = decode_array(state["scores"])
            acc._probabilities = decode_array(state["probabilities"])
        else:
            acc._scores = acc._probabilities = None
            acc.count_hist = decode_array(state["count_hist"]).astype(np.int64)
            acc.probability_hist = decode_array(state["probability_hist"])
        return acc


def _area(positive: FloatArray, negative: FloatArray) -> float:
    n_pos, n_neg = float(positive.sum()), float(negative.sum())
    if n_pos <= 0 or n_neg <= 0:
        raise InsufficientData("the expected ROC curve needs expected positives and negatives")
    below = np.cumsum(negative) - negative
    return float(np.sum(positive * (below + 0.5 * negative)) / (n_pos * n_neg))


def estimated_roc_auc(acc: ScoreRankAccumulator) -> float:
    """Area under the expected ROC curve (NannyML's ``estimate_roc_auc``)."""
    if acc.n == 0:
        raise InsufficientData("no scored predictions in the window")
    return _area(*acc.levels())


def estimated_roc_auc_error_bound(acc: ScoreRankAccumulator) -> float:
    """Largest change binning can make to :func:`estimated_roc_auc`: half the expected
    (positive, negative) pairs whose scores share a bin; 0 while the scores are exact."""
    if acc.exact:
        return 0.0
    positive, negative = acc.levels()
    pairs = float(positive.sum()) * float(negative.sum())
    if pairs <= 0:
        raise InsufficientData("the expected ROC curve needs expected positives and negatives")
    return float(np.sum(positive * negative)) / (2.0 * pairs)


def estimated_roc_auc_sampling_error(acc: ScoreRankAccumulator) -> float | None:
    value = auc_standard_error(*acc.levels())
    return value if math.isfinite(value) else None
