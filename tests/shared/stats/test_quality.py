"""Data-quality rates from the accumulators against counts on the raw arrays."""

from __future__ import annotations

import numpy as np
import pytest

from shared.stats import (
    CategoricalAccumulator,
    InsufficientData,
    NumericAccumulator,
    missing_rate,
    out_of_range_rate,
    unseen_category_rate,
)


def test_numeric_missing_and_out_of_range_rates(rng: np.random.Generator) -> None:
    x = rng.normal(0, 2, 10_000)
    x[rng.random(x.size) < 0.07] = np.nan
    acc = NumericAccumulator(lower=-3.0, upper=3.0)
    for batch in np.array_split(x, 6):
        acc.update(batch)
    present = x[~np.isnan(x)]
    assert missing_rate(acc) == np.isnan(x).mean()
    assert out_of_range_rate(acc) == pytest.approx(np.mean(np.abs(present) > 3.0), rel=1e-12)


def test_unseen_category_rate(rng: np.random.Generator) -> None:
    values = rng.choice(np.array(["a", "b", "c", "zz", None], dtype=object), 5_000)
    acc = CategoricalAccumulator(categories=["a", "b", "c"])
    acc.update(values)
    present = values[values != None]  # noqa: E711
    assert missing_rate(acc) == np.mean(values == None)  # noqa: E711
    assert unseen_category_rate(acc) == pytest.approx(np.mean(present == "zz"), rel=1e-12)


def test_rates_need_data_and_a_domain() -> None:
    with pytest.raises(InsufficientData):
        missing_rate(NumericAccumulator())
    with pytest.raises(ValueError):
        out_of_range_rate(NumericAccumulator())
    with pytest.raises(ValueError):
        unseen_category_rate(CategoricalAccumulator())
