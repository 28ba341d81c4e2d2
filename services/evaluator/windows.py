"""Event-time window arithmetic (pure, vectorised).

Times are epoch seconds (float). A system has two watermarks: ``P``, the newest prediction time
seen, and ``O``, the newest outcome time seen. Both depend only on the order of records in one
partition, so every decision below is the same whatever batches the records arrive in:

* a tumbling window ``[start, end)`` of ``size`` seconds closes when ``P - lateness >= end``;
  a prediction arriving for a window already closed (by the predictions before it) is late;
* an outcome's *label time* is ``max(timestamp, O_before - lateness)``: an outcome later than
  the allowed lateness counts as arriving at the outcome watermark;
* label metrics of a window are evaluated at cut-offs ``c_k = end + k * interval``: revision
  ``k`` holds the labels whose label time is before ``c_k``; it is due once both streams have
  passed the cut-off (the *label clock* ``min(P, O) - lateness`` reached it), or once the
  predictions ran ``label_wait`` ahead of a silent outcome stream.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

__all__ = [
    "FloatArray",
    "label_clock",
    "label_times",
    "revision_index",
    "running_watermark",
    "to_datetime",
    "window_starts",
]

FloatArray = npt.NDArray[np.float64]


def window_starts(ts: FloatArray, size: int) -> npt.NDArray[np.int64]:
    """Start (epoch seconds, aligned to the epoch) of the window holding each time."""
    return (np.floor(ts / size) * size).astype(np.int64)


def running_watermark(before: float | None, ts: FloatArray) -> tuple[FloatArray, float | None]:
    """The watermark each record saw on arrival (the max time before it) and the one after."""
    if ts.size == 0:
        return ts.copy(), before
    start = -math.inf if before is None else before
    seen = np.maximum.accumulate(np.concatenate([[start], ts]))
    return seen[:-1], float(seen[-1])


def label_times(before: float | None, ts: FloatArray, lateness: float) -> FloatArray:
    """Label time of each outcome: its timestamp, or the outcome watermark minus lateness."""
    seen, _ = running_watermark(before, ts)
    result: FloatArray = np.maximum(ts, seen - lateness)
    return result


def label_clock(
    predictions: float | None, outcomes: float | None, *, lateness: float, label_wait: float
) -> float | None:
    """Event time up to which both streams are complete (see the module docstring)."""
    if predictions is None:
        return None
    fallback = predictions - label_wait
    joint = fallback if outcomes is None else max(min(predictions, outcomes), fallback)
    return joint - lateness


def revision_index(label_time: float, end: float, interval: float) -> int:
    """Index ``k`` of the first cut-off ``end + k * interval`` after ``label_time``."""
    if label_time < end:
        return 0
    return math.floor((label_time - end) / interval) + 1


def to_datetime(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)
