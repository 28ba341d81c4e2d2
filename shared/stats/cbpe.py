"""Confidence-based performance estimation (CBPE, as NannyML) for binary classifiers.

Before labels arrive, a calibrated model's scores already say how often it should be right: a
row predicted positive with P(positive) = p is a true positive with probability p and a false
positive with probability 1 - p. Summing these gives the expected confusion matrix, and the
metrics below are NannyML's ratios of expected counts. The estimate is only as good as the
calibration of the scores (NannyML calibrates on reference data first; we expect calibrated
scores). Results are reported with ``estimated=True``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._common import InsufficientData
from .accumulators import ExpectedConfusionAccumulator

__all__ = [
    "ExpectedConfusion",
    "estimated_accuracy",
    "estimated_f1",
    "estimated_precision",
    "estimated_recall",
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
