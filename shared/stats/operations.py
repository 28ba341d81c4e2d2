"""Operational metrics of one window: volume, latency, label coverage and label delay."""

from __future__ import annotations

from ._common import InsufficientData
from .accumulators import OperationsAccumulator, QuantileSketch

__all__ = ["label_coverage", "label_delay_percentile", "latency_percentile", "volume"]


def volume(acc: OperationsAccumulator) -> float:
    """Number of predictions in the window."""
    return float(acc.predictions)


def _percentile(sketch: QuantileSketch, percentile: float) -> float:
    if not 0.0 <= percentile <= 100.0:
        raise ValueError("percentile must be in [0, 100]")
    if sketch.count == 0:
        raise InsufficientData("no values in the window")
    return sketch.quantile(percentile / 100.0)


def latency_percentile(acc: OperationsAccumulator, percentile: float) -> float:
    """Prediction latency (ms) at ``percentile``, within the sketch's relative accuracy (1 %)."""
    return _percentile(acc.latency_ms, percentile)


def label_coverage(acc: OperationsAccumulator) -> float:
    """Share of the window's predictions whose outcome has arrived."""
    if acc.predictions == 0:
        raise InsufficientData("no predictions in the window")
    return acc.labelled / acc.predictions


def label_delay_percentile(acc: OperationsAccumulator, percentile: float) -> float:
    """Seconds from prediction to outcome at ``percentile``, within 1 % relative accuracy."""
    return _percentile(acc.label_delay_s, percentile)
