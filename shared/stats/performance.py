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
    "auc_standard_error",
    "brier",
    "confusion_standard_error",
    "expected_calibration_error",
    "f1",
    "f1_standard_error",
    "log_loss",
    "mae",
    "mape",
    "precision",
    "proportion_standard_error",
    "r2",
    "recall",
    "rmse",
    "roc_auc",
    "roc_auc_error_bound",
    "sampling_error",
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


def _score_levels(acc: ConfusionAccumulator) -> tuple[FloatArray, FloatArray]:
    """(positives, negatives) per score level, increasing: the exact distinct scores while the
    accumulator holds every pair, else its fine histogram bins."""
    pairs = acc.exact_pairs()
    if pairs is not None:
        scores, is_positive = pairs
        levels, inverse = np.unique(scores, return_inverse=True)
        positive = np.bincount(inverse[is_positive], minlength=levels.size)
        negative = np.bincount(inverse[~is_positive], minlength=levels.size)
        return positive.astype(np.float64), negative.astype(np.float64)
    return acc.positive_hist.astype(np.float64), acc.negative_hist.astype(np.float64)


def roc_auc(acc: ConfusionAccumulator) -> float:
    """Exact (as ``roc_auc_score``) while the accumulator holds every pair, else from the fine
    score histograms, within :func:`roc_auc_error_bound`."""
    _scored(acc)
    return _auc(*_score_levels(acc))


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


# --- sampling error -------------------------------------------------------------------------
#
# The standard error of a window's value: how far the same metric would typically move on
# another window of the same size drawn from the same data. NannyML computes it with each
# metric's standard-error-of-the-mean formula, taking the spread from the reference; here the
# same formulas take it from the window itself (its confusion counts, or expected counts for
# an estimate), so they need no labelled reference and follow a shifted class balance.


def proportion_standard_error(value: float, n: float) -> float:
    """sqrt(p (1 - p) / n): a share of ``n`` rows (NannyML's std / sqrt(n) of a 0/1 column)."""
    if n <= 0:
        return math.nan
    return math.sqrt(max(value * (1.0 - value), 0.0) / n)


def f1_standard_error(tp: float, fp: float, fn: float) -> float:
    """Delta-method standard error of F1 = 2tp / (2tp + fp + fn) over multinomial counts:
    sqrt(4 tp (fp + fn) (tp + fp + fn)) / (2tp + fp + fn)^2. NannyML's formula (the spread of
    per-row values c or 0 over the tp + fp + fn relevant rows) overstates it by about half:
    on 400 windows of 500 calibrated predictions F1 spread 0.025, NannyML's formula said 0.036,
    this one 0.024 (``tests/shared/stats/test_cbpe_nannyml.py``)."""
    denominator = 2.0 * tp + fp + fn
    if denominator <= 0:
        return math.nan
    return math.sqrt(max(4.0 * tp * (fp + fn) * (tp + fp + fn), 0.0)) / denominator**2


def confusion_standard_error(metric: str, tp: float, fp: float, fn: float, tn: float) -> float:
    """Standard error of accuracy, precision, recall or F1 at these (possibly expected) counts."""
    n = tp + fp + fn + tn
    if metric == "accuracy":
        return proportion_standard_error((tp + tn) / n if n > 0 else 0.0, n)
    if metric == "precision":
        return proportion_standard_error(tp / (tp + fp) if tp + fp > 0 else 0.0, tp + fp)
    if metric == "recall":
        return proportion_standard_error(tp / (tp + fn) if tp + fn > 0 else 0.0, tp + fn)
    if metric == "f1":
        return f1_standard_error(tp, fp, fn)
    raise ValueError(f"no confusion standard error for {metric!r}")


def auc_standard_error(positive: FloatArray, negative: FloatArray) -> float:
    """DeLong's standard error of the Mann-Whitney AUC over ordered score levels (weights may be
    expected counts): the variance of the positives' placements among the negatives over the
    number of positives, plus the same for the negatives. NannyML keeps only the first term
    (for the minority class), so this band is a little wider than NannyML's."""
    n_pos, n_neg = float(positive.sum()), float(negative.sum())
    if n_pos <= 0 or n_neg <= 0:
        return math.nan
    area = _auc(positive, negative)
    below = (np.cumsum(negative) - negative + 0.5 * negative) / n_neg
    above = (n_pos - np.cumsum(positive) + 0.5 * positive) / n_pos
    s10 = float(np.sum(positive * np.square(below - area))) / max(n_pos - 1.0, 1.0)
    s01 = float(np.sum(negative * np.square(above - area))) / max(n_neg - 1.0, 1.0)
    return math.sqrt(s10 / n_pos + s01 / n_neg)


def _mean_standard_error(first: float, second: float, n: float) -> float:
    """Standard error of a mean from the sum and the sum of squares of n values."""
    if n <= 0:
        return math.nan
    mean = first / n
    return math.sqrt(max(second / n - mean * mean, 0.0) / n)


def _score_loss_error(acc: ConfusionAccumulator, metric: str) -> float:
    """Log loss or Brier: per-row terms from the exact pairs, else from the histogram bins'
    centres (the second moment only; the mean is the exact sum)."""
    eps = float(np.finfo(np.float64).eps)
    pairs = acc.exact_pairs()
    if pairs is not None:
        p, y = pairs
        if metric == "log_loss":
            terms = -np.log(np.clip(np.where(y, p, 1.0 - p), eps, 1.0 - eps))
        else:
            terms = np.square(y - p)
        return _mean_standard_error(float(terms.sum()), float(np.square(terms).sum()), p.size)
    centres = (np.arange(acc.score_bins, dtype=np.float64) + 0.5) / acc.score_bins
    if metric == "log_loss":
        pos_terms = -np.log(np.clip(centres, eps, 1.0 - eps))
        neg_terms = -np.log(np.clip(1.0 - centres, eps, 1.0 - eps))
        total = acc.log_loss_sum
    else:
        pos_terms, neg_terms = np.square(1.0 - centres), np.square(centres)
        total = acc.brier_sum
    second = float(
        np.sum(acc.positive_hist * np.square(pos_terms) + acc.negative_hist * np.square(neg_terms))
    )
    return _mean_standard_error(total, second, acc.n_scored)


def _classification_error(
    metric: str, acc: ConfusionAccumulator, positive_label: Scalar | None
) -> float:
    if metric == "accuracy":
        return proportion_standard_error(accuracy(acc), acc.n)
    if metric in ("precision", "recall", "f1"):
        tp, fp, fn = _counts(acc, positive_label)
        tn = acc.n - tp - fp - fn
        errors = [
            confusion_standard_error(metric, *counts)
            for counts in zip(tp.tolist(), fp.tolist(), fn.tolist(), tn.tolist(), strict=True)
        ]
        # macro average: the mean of per-class values, their covariances neglected
        return math.sqrt(sum(e * e for e in errors)) / len(errors)
    _scored(acc)
    if metric == "roc_auc":
        return auc_standard_error(*_score_levels(acc))
    if metric in ("log_loss", "brier"):
        return _score_loss_error(acc, metric)
    if metric == "calibration_error":
        count = acc.calibration_count.astype(np.float64)
        rate = _ratio(acc.calibration_positive.astype(np.float64), count)
        return math.sqrt(float(np.sum(count * rate * (1.0 - rate)))) / acc.n_scored
    raise ValueError(f"no sampling error for {metric!r}")


def _regression_error(metric: str, acc: RegressionAccumulator) -> float | None:
    n = float(acc.n)
    moments = acc.moments
    if metric == "mae":
        return _mean_standard_error(acc.sum_abs_error, acc.sum_squared_error, n)
    if not moments.complete:
        return None  # restored from a checkpoint older than the moments
    if metric == "rmse":
        mse_error = _mean_standard_error(acc.sum_squared_error, moments.sum_fourth_error, n)
        value = math.sqrt(acc.sum_squared_error / n)
        return 0.0 if value == 0 else mse_error / (2.0 * value)
    if metric == "mape":
        return _mean_standard_error(
            acc.sum_abs_percentage_error, moments.sum_squared_percentage_error, n
        )
    if metric == "r2":
        if n < 2 or moments.m2 == 0:
            return None
        u = acc.sum_squared_error / n
        v = moments.m2 / n
        var_u = moments.sum_fourth_error / n - u * u
        var_v = moments.m4 / n - v * v
        cov = moments.e2_dev2 / n - u * v
        variance = (var_u / v**2 + u * u * var_v / v**4 - 2.0 * u * cov / v**3) / n
        return math.sqrt(max(variance, 0.0))
    raise ValueError(f"no sampling error for {metric!r}")


def sampling_error(
    metric: str,
    acc: ConfusionAccumulator | RegressionAccumulator,
    *,
    positive_label: Scalar | None = None,
) -> float | None:
    """Standard error of ``metric`` on this window (None when it cannot be told)."""
    if isinstance(acc, RegressionAccumulator):
        _regression(acc)
        value = _regression_error(metric, acc)
    else:
        value = _classification_error(metric, acc, positive_label)
    return None if value is None or not math.isfinite(value) else value
