"""Model performance from labelled accumulators, with scikit-learn's definitions.

Where scikit-learn divides by zero (no predicted positives for precision, ...) it returns 0 and
warns; these functions return 0 too. Where a metric is undefined for the window as a whole (no
labels, a single class for ROC AUC, fewer than two rows for R^2) they raise
:class:`InsufficientData` so the evaluator can report ``insufficient_data``.
"""

from __future__ import annotations

import math

import numpy as np

from ._common import FloatArray, InsufficientData, IntArray, Scalar, category_key
from .accumulators import ConfusionAccumulator, RegressionAccumulator

__all__ = [
    "accuracy",
    "brier",
    "expected_calibration_error",
    "f1",
    "log_loss",
    "mae",
    "mape",
    "precision",
    "r2",
    "recall",
    "rmse",
    "roc_auc",
    "roc_auc_error_bound",
]


def _labelled(acc: ConfusionAccumulator) -> None:
    if acc.n == 0:
        raise InsufficientData("no labelled predictions in the window")


def _ratio(numerator: FloatArray, denominator: FloatArray) -> FloatArray:
    """Element-wise division with scikit-learn's zero_division=0."""
    safe = np.where(denominator > 0, denominator, 1.0)
    result: FloatArray = np.where(denominator > 0, numerator / safe, 0.0)
    return result


def _counts(
    acc: ConfusionAccumulator, positive_label: Scalar | None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(tp, fp, fn): one entry for the positive label, else one per label (macro average)."""
    _labelled(acc)
    label = acc.positive_label if positive_label is None else category_key(positive_label)
    labels = acc.labels
    if label is not None and label not in labels:
        labels = [*labels, label]
    matrix = acc.matrix(labels).astype(np.float64)
    tp = np.diag(matrix)
    fp = matrix.sum(axis=0) - tp
    fn = matrix.sum(axis=1) - tp
    if label is not None:
        i = labels.index(label)
        return tp[i : i + 1], fp[i : i + 1], fn[i : i + 1]
    return tp, fp, fn


def accuracy(acc: ConfusionAccumulator) -> float:
    _labelled(acc)
    correct = sum(n for (actual, predicted), n in acc.counts.items() if actual == predicted)
    return correct / acc.n


def precision(acc: ConfusionAccumulator, *, positive_label: Scalar | None = None) -> float:
    """Binary precision of ``positive_label`` (default: the accumulator's); macro without one."""
    tp, fp, _ = _counts(acc, positive_label)
    return float(np.mean(_ratio(tp, tp + fp)))


def recall(acc: ConfusionAccumulator, *, positive_label: Scalar | None = None) -> float:
    tp, _, fn = _counts(acc, positive_label)
    return float(np.mean(_ratio(tp, tp + fn)))


def f1(acc: ConfusionAccumulator, *, positive_label: Scalar | None = None) -> float:
    """Per-class F1 = 2tp / (2tp + fp + fn), macro-averaged without a positive label."""
    tp, fp, fn = _counts(acc, positive_label)
    return float(np.mean(_ratio(2 * tp, 2 * tp + fp + fn)))


def _scored(acc: ConfusionAccumulator) -> None:
    if acc.positive_label is None:
        raise ValueError("score metrics need an accumulator with a positive_label")
    if acc.n_scored == 0:
        raise InsufficientData("no labelled predictions with scores in the window")


def _auc(positive: FloatArray, negative: FloatArray) -> float:
    """Mann-Whitney AUC over ordered score levels; ties within a level count one half."""
    n_pos, n_neg = float(positive.sum()), float(negative.sum())
    if n_pos == 0 or n_neg == 0:
        raise InsufficientData("ROC AUC needs both classes among the labelled predictions")
    negatives_below = np.cumsum(negative) - negative
    return float(np.sum(positive * (negatives_below + 0.5 * negative)) / (n_pos * n_neg))


def roc_auc(acc: ConfusionAccumulator) -> float:
    """Exact (as ``roc_auc_score``) while the accumulator holds every pair, else from the fine
    score histograms, within :func:`roc_auc_error_bound`."""
    _scored(acc)
    pairs = acc.exact_pairs()
    if pairs is not None:
        scores, is_positive = pairs
        levels, inverse = np.unique(scores, return_inverse=True)
        positive = np.bincount(inverse[is_positive], minlength=levels.size)
        negative = np.bincount(inverse[~is_positive], minlength=levels.size)
        return _auc(positive.astype(np.float64), negative.astype(np.float64))
    return _auc(acc.positive_hist.astype(np.float64), acc.negative_hist.astype(np.float64))


def roc_auc_error_bound(acc: ConfusionAccumulator) -> float:
    """Largest possible |roc_auc(acc) - exact AUC|: half the share of (positive, negative)
    pairs whose scores share a histogram bin; 0 while the pairs are exact."""
    _scored(acc)
    if acc.exact_pairs() is not None:
        return 0.0
    positive: IntArray = acc.positive_hist
    negative: IntArray = acc.negative_hist
    pairs = float(positive.sum()) * float(negative.sum())
    if pairs == 0:
        raise InsufficientData("ROC AUC needs both classes among the labelled predictions")
    return float(np.sum(positive.astype(np.float64) * negative)) / (2.0 * pairs)


def log_loss(acc: ConfusionAccumulator) -> float:
    """Mean negative log-likelihood, probabilities clipped to [eps, 1 - eps] as scikit-learn."""
    _scored(acc)
    return acc.log_loss_sum / acc.n_scored


def brier(acc: ConfusionAccumulator) -> float:
    _scored(acc)
    return acc.brier_sum / acc.n_scored


def expected_calibration_error(acc: ConfusionAccumulator) -> float:
    """sum over bins of (n_bin / n) * |positive rate - mean score| on equal-width bins."""
    _scored(acc)
    gap = np.abs(acc.calibration_positive - acc.calibration_score_sum)
    return float(gap.sum()) / acc.n_scored


def _regression(acc: RegressionAccumulator) -> None:
    if acc.n == 0:
        raise InsufficientData("no labelled predictions in the window")


def mae(acc: RegressionAccumulator) -> float:
    _regression(acc)
    return acc.sum_abs_error / acc.n


def rmse(acc: RegressionAccumulator) -> float:
    _regression(acc)
    return math.sqrt(acc.sum_squared_error / acc.n)


def mape(acc: RegressionAccumulator) -> float:
    """Mean |error| / max(|actual|, eps), a fraction (0.1 = 10 %), as scikit-learn."""
    _regression(acc)
    return acc.sum_abs_percentage_error / acc.n


def r2(acc: RegressionAccumulator) -> float:
    """1 - SSE / SS_tot; a constant target gives 1 for a perfect fit else 0 (scikit-learn)."""
    if acc.n < 2:
        raise InsufficientData("R^2 needs at least two labelled predictions")
    if acc.actual_m2 == 0:
        return 1.0 if acc.sum_squared_error == 0 else 0.0
    return 1.0 - acc.sum_squared_error / acc.actual_m2
