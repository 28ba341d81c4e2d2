"""Volume, latency, label coverage and label delay of a window."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from shared.stats import (
    InsufficientData,
    OperationsAccumulator,
    label_coverage,
    label_delay_percentile,
    latency_percentile,
    volume,
)


def test_operations_metrics(rng: np.random.Generator) -> None:
    latency = rng.lognormal(2.5, 0.8, 30_000)
    latency[::10] = np.nan  # clients that do not report latency still count as volume
    delay = rng.exponential(6 * 3_600, 12_000)
    halves = [OperationsAccumulator(), OperationsAccumulator()]
    for acc, lat, dl in zip(
        halves, np.array_split(latency, 2), np.array_split(delay, 2), strict=True
    ):
        for batch in np.array_split(lat, 5):
            acc.update_predictions(batch)
        acc.update_outcomes(dl)
    acc = OperationsAccumulator.from_state(orjson.loads(orjson.dumps(halves[0].to_state())))
    acc.merge(halves[1])

    assert volume(acc) == 30_000
    assert label_coverage(acc) == 12_000 / 30_000
    for p in (50, 95, 99):
        assert latency_percentile(acc, p) == pytest.approx(np.nanpercentile(latency, p), rel=0.01)
        assert label_delay_percentile(acc, p) == pytest.approx(np.percentile(delay, p), rel=0.01)


def test_an_empty_window() -> None:
    acc = OperationsAccumulator()
    assert volume(acc) == 0
    with pytest.raises(InsufficientData):
        label_coverage(acc)
    with pytest.raises(InsufficientData):
        latency_percentile(acc, 99)
