"""How a poll's predictions are read (``services.evaluator.decoding``): the columnar fast path
must hold for ordinary batches, or every event is validated one by one (about ten times
slower)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from services.evaluator.decoding import decode_predictions
from shared.contracts import encode

from .events import T0, prediction


@pytest.mark.parametrize(
    "offset_s",
    [
        0.25,
        pytest.param(
            0.0,
            marks=pytest.mark.xfail(
                strict=True,
                reason="known defect: Arrow infers whole-second ISO strings as timestamp[s] and "
                "the fast path accepts only a string column, so such a batch is decoded event by "
                "event (20,000 events: 0.79 s instead of 0.07 s)",
            ),
        ),
    ],
)
def test_a_batch_of_well_formed_predictions_is_read_column_by_column(offset_s: float) -> None:
    events = [
        prediction(
            i,
            timestamp=datetime.fromtimestamp(T0 + i + offset_s, UTC),
            features={"c": "ab"[i % 2]},
        )
        for i in range(20)
    ]
    batch, bad = decode_predictions([encode(e) for e in events], np.arange(20, dtype=np.int64))
    assert not bad
    assert batch.ts.tolist() == [T0 + i + offset_s for i in range(20)]
    # codes exist only for columns read by Arrow (the fast path)
    assert batch.feature_codes("c") is not None
