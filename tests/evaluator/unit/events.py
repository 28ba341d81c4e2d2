"""Decoded predictions for unit tests: events in, the ``ColumnBatch`` the accumulators read."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from services.evaluator.columns import ColumnBatch
from services.evaluator.decoding import PredictionBatch, decode_predictions
from shared.contracts import PredictionEvent, encode

T0 = 1_800_000_000.0
"""2027-01-15T08:00:00Z, a multiple of 60 and 3600."""


def prediction(i: int, **fields: Any) -> PredictionEvent:
    """Prediction ``p<i>`` of system ``sys`` at ``T0 + i`` seconds unless ``fields`` say else."""
    values: dict[str, Any] = {
        "event_id": f"p{i}",
        "system_id": "sys",
        "model_version": "m1",
        "timestamp": datetime.fromtimestamp(T0 + i, UTC),
        "features": {},
        "prediction": 1,
        **fields,
    }
    return PredictionEvent(**values)


def decoded(events: list[PredictionEvent], first_offset: int = 0) -> PredictionBatch:
    offsets = np.arange(first_offset, first_offset + len(events), dtype=np.int64)
    batch, bad = decode_predictions([encode(e) for e in events], offsets)
    assert not bad, bad
    return batch


def columns(events: list[PredictionEvent], first_offset: int = 0) -> ColumnBatch:
    return ColumnBatch(decoded(events, first_offset))


def every_row(batch: ColumnBatch) -> np.ndarray[Any, np.dtype[np.intp]]:
    return np.arange(batch.size, dtype=np.intp)
