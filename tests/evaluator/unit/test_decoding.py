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
    [0.25, 0.0],  # 0.0: whole seconds, which Arrow would infer as timestamp[s]
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
