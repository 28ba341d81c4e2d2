"""Accumulators: batch-invariant, mergeable, checkpointable, and bounded in memory."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from shared.stats import (
    CategoricalAccumulator,
    ConfusionAccumulator,
    ExpectedConfusionAccumulator,
    FairnessAccumulator,
    NumericAccumulator,
    OperationsAccumulator,
    QuantileSketch,
    RegressionAccumulator,
    Reservoir,
)
from shared.stats._common import category_keys
from shared.stats.accumulators import OVERFLOW_CATEGORY
from shared.stats.distribution import EXACT_WINDOW_VALUES, MAX_CELLS
from shared.stats.reference import bin_index, profile_numeric


def round_trip(acc: Any) -> Any:
    """Checkpoint through orjson, as the evaluator stores window state."""
    return type(acc).from_state(orjson.loads(orjson.dumps(acc.to_state())))


@pytest.fixture
def values(rng: np.random.Generator) -> np.ndarray:
    x = rng.normal(50.0, 10.0, 20_000)
    x[rng.random(x.size) < 0.03] = np.nan
    x[:3] = [np.inf, -np.inf, np.nan]
    return x


def numeric_for(values: np.ndarray, **options: Any) -> NumericAccumulator:
    reference = profile_numeric(values[np.isfinite(values)][:2_000])
    return NumericAccumulator.for_reference(reference, lower=30.0, upper=80.0, **options)


def test_numeric_accumulator_agrees_with_numpy(values: np.ndarray) -> None:
    acc = numeric_for(values)
    for batch in np.array_split(values, 37):
        acc.update(batch)
    finite = values[np.isfinite(values)]

    assert (acc.count, acc.missing, acc.total) == (
        finite.size,
        values.size - finite.size,
        values.size,
    )
    assert acc.mean == pytest.approx(finite.mean(), rel=1e-12)
    assert acc.std == pytest.approx(finite.std(), rel=1e-9)
    assert (acc.min, acc.max) == (finite.min(), finite.max())
    assert acc.out_of_range == np.count_nonzero((finite < 30.0) | (finite > 80.0))
    expected_bins = np.bincount(bin_index(acc.cut_points, finite), minlength=acc.bin_counts.size)
    np.testing.assert_array_equal(acc.bin_counts, expected_bins)
    assert acc.exact
    kept = acc.distribution()
    assert kept is not None and kept.exact
    np.testing.assert_array_equal(np.repeat(kept.values, kept.counts), np.sort(finite))


def _cells_of(acc: NumericAccumulator) -> tuple[np.ndarray, ...]:
    kept = acc.distribution()
    assert kept is not None and kept.cells is not None
    cells = kept.cells
    return cells.lo, cells.hi, cells.count, cells.total


def test_kept_values_do_not_depend_on_how_the_window_was_batched(
    rng: np.random.Generator,
) -> None:
    """Exact up to the bound, then cells that are the same however the stream was cut."""
    values = rng.standard_t(3, 150_000)
    one, many = numeric_for(values, exact_limit=40_000), numeric_for(values, exact_limit=40_000)
    one.update(values)
    for batch in np.array_split(values, 101):
        many.update(batch)
    assert not one.exact and not many.exact
    for left, right in zip(_cells_of(one), _cells_of(many), strict=True):
        np.testing.assert_allclose(left, right, rtol=1e-12)


def test_merge_and_checkpoint_give_the_single_pass_result(values: np.ndarray) -> None:
    whole = numeric_for(values)
    whole.update(values)
    left, right = numeric_for(values), numeric_for(values)
    left.update(values[:7_000])
    right.update(values[7_000:])
    merged = round_trip(left)
    merged.merge(round_trip(right))

    assert (merged.count, merged.missing, merged.out_of_range) == (
        whole.count,
        whole.missing,
        whole.out_of_range,
    )
    assert merged.mean == pytest.approx(whole.mean, rel=1e-12)
    assert merged.m2 == pytest.approx(whole.m2, rel=1e-9)
    assert (merged.min, merged.max) == (whole.min, whole.max)
    np.testing.assert_array_equal(merged.bin_counts, whole.bin_counts)
    assert merged.values.seen == whole.values.seen
    merged_values, whole_values = merged.distribution(), whole.distribution()
    assert merged_values is not None and whole_values is not None
    np.testing.assert_array_equal(merged_values.values, whole_values.values)
    np.testing.assert_array_equal(merged_values.counts, whole_values.counts)


def test_binned_windows_merge_and_checkpoint_to_the_single_pass_cells(
    rng: np.random.Generator,
) -> None:
    values = np.concatenate([rng.normal(size=90_000), np.zeros(30_000)])
    rng.shuffle(values)
    whole = numeric_for(values, exact_limit=20_000)
    whole.update(values)
    left, right = numeric_for(values, exact_limit=20_000), numeric_for(values, exact_limit=20_000)
    left.update(values[:70_000])
    right.update(values[70_000:75_000])  # still exact: merged into the binned side
    right = round_trip(right)
    right.update(values[75_000:])
    merged = round_trip(left)
    merged.merge(right)
    for got, expected in zip(_cells_of(merged), _cells_of(whole), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_a_checkpointed_reservoir_continues_exactly(rng: np.random.Generator) -> None:
    data = rng.normal(size=30_000)
    straight, resumed = Reservoir(1_000, seed=5), Reservoir(1_000, seed=5)
    straight.add(data)
    resumed.add(data[:12_345])
    resumed = Reservoir.from_state(json.loads(json.dumps(resumed.to_state())))
    resumed.add(data[12_345:])
    np.testing.assert_array_equal(np.sort(straight.values), np.sort(resumed.values))


def test_the_reservoir_is_a_uniform_sample() -> None:
    reservoir = Reservoir(5_000, seed=11)
    positions = np.arange(200_000, dtype=np.float64)
    for batch in np.array_split(positions, 333):
        reservoir.add(batch)
    assert np.unique(reservoir.values).size == 5_000
    # positions of a uniform sample are uniform over the stream
    assert stats.kstest(reservoir.values / positions.size, "uniform").pvalue > 0.01


def test_merged_reservoirs_weigh_each_side_by_its_count() -> None:
    left, right = Reservoir(5_000, seed=0), Reservoir(5_000, seed=0)  # same seed on purpose
    left.add(np.random.default_rng(1).uniform(0.0, 1.0, 30_000))
    right.add(np.random.default_rng(2).uniform(1.0, 2.0, 90_000))
    left.merge(right)
    sample = left.values
    assert left.seen == 120_000
    assert sample.size == 5_000
    assert np.mean(sample < 1.0) == pytest.approx(0.25, abs=0.02)  # 3 sigma = 0.018
    assert stats.kstest(sample[sample < 1.0], "uniform").pvalue > 0.01
    assert stats.kstest(sample[sample >= 1.0] - 1.0, "uniform").pvalue > 0.01
    # and stays uniform as the merged reservoir keeps sampling
    left.add(np.random.default_rng(3).uniform(2.0, 3.0, 120_000))
    assert np.mean(left.values >= 2.0) == pytest.approx(0.5, abs=0.03)


def test_distinct_values_stay_exact_beyond_the_raw_bound() -> None:
    """A discrete column keeps distinct values with counts: exact whatever the count."""
    reference = profile_numeric(np.repeat([1.0, 2.0, 3.0], 10))
    acc = NumericAccumulator.for_reference(reference, exact_limit=100)
    for _ in range(50):
        acc.update([1.0, 1.0, 4.0, np.nan] * 10)
    kept = acc.distribution()
    assert kept is not None and kept.exact
    assert kept.values.tolist() == [1.0, 4.0]
    assert kept.counts.tolist() == [1_000, 500]
    acc.update(np.arange(200.0))
    assert not acc.exact


def test_categorical_accumulator_counts_missing_unseen_and_overflow() -> None:
    acc = CategoricalAccumulator(categories=["a", "b"], max_categories=3)
    acc.update(np.array(["a", "b", None, "c", "a", np.nan], dtype=object))
    acc.update(np.array(["d", "e", "e", "a"], dtype=object))
    assert acc.counts == {"a": 3, "b": 1, "c": 1, OVERFLOW_CATEGORY: 3}
    assert (acc.count, acc.missing, acc.unseen) == (8, 2, 4)
    other = CategoricalAccumulator(categories=["a", "b"], max_categories=3)
    other.update(["b", "z"])
    merged = round_trip(acc)
    merged.merge(other)
    assert merged.counts == {"a": 3, "b": 2, "c": 1, OVERFLOW_CATEGORY: 4}
    assert (merged.count, merged.unseen) == (10, 5)


def test_categorical_keys_match_across_types() -> None:
    acc = CategoricalAccumulator()
    acc.update(np.array([1, 2, 2]))
    acc.update(np.array([1.0, np.nan, 2.0]))
    acc.update(np.array([1, "2", None, True], dtype=object))
    acc.update(np.array([True, False]))
    assert acc.counts == {"1": 3, "2": 4, "True": 2, "False": 1}
    assert acc.missing == 2


def objects(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


_CATEGORY_VALUES = {
    "string": st.sampled_from(["a", "b", "c", "d", "1", "True", ""]),
    "int64": st.integers(-3, 3),
    "double": st.sampled_from([0.0, 1.0, 1.5, -2.0, 2.0**60, float("nan")]),
    "bool": st.booleans(),
}


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(sorted(_CATEGORY_VALUES)).flatmap(
        lambda kind: st.lists(st.one_of(st.none(), _CATEGORY_VALUES[kind]), max_size=40)
    ),
    st.integers(1, 4),
    st.booleans(),
)
def test_counting_coded_values_gives_the_counts_of_the_values(
    values: list[Any], max_categories: int, with_domain: bool
) -> None:
    """What the evaluator counts from Arrow's dictionary codes is what ``update`` counts from
    the values themselves: the same keys, missing, unseen and overflow, batch after batch."""
    array = pa.array(values, from_pandas=True) if values else pa.array([], pa.string())
    encoded = pc.dictionary_encode(array)
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    keys, missing = category_keys(objects(encoded.dictionary.to_pylist()))
    domain = ["a", "1", "True", "0"] if with_domain else None
    direct = CategoricalAccumulator(categories=domain, max_categories=max_categories)
    coded = CategoricalAccumulator(categories=domain, max_categories=max_categories)
    for part in (slice(0, len(values) // 2), slice(len(values) // 2, None)):
        direct.update(objects(array.to_pylist())[part])
        coded.update_coded(codes[part], keys, missing)
    assert coded.to_state() == direct.to_state()


@pytest.mark.parametrize("percentile", [1, 50, 90, 95, 99, 99.9])
def test_quantile_sketch_is_within_its_relative_accuracy(
    rng: np.random.Generator, percentile: float
) -> None:
    latencies = rng.lognormal(3.0, 1.2, 200_000)
    sketch = QuantileSketch(relative_accuracy=0.01)
    for batch in np.array_split(latencies, 50):
        sketch.update(batch)
    expected = np.percentile(latencies, percentile)
    assert sketch.quantile(percentile / 100) == pytest.approx(expected, rel=0.01)
    assert round_trip(sketch).quantile(percentile / 100) == sketch.quantile(percentile / 100)


# --- memory ---------------------------------------------------------------------------------

BATCH = 10_000


def _feed_numeric(acc: NumericAccumulator, rng: np.random.Generator, n: int) -> None:
    acc.update(rng.normal(size=n))


def _feed_categorical(acc: CategoricalAccumulator, rng: np.random.Generator, n: int) -> None:
    acc.update(rng.choice(np.array(["a", "b", "c", "d", "unseen"]), n))


def _feed_confusion(acc: ConfusionAccumulator, rng: np.random.Generator, n: int) -> None:
    scores = rng.random(n)
    actual = (rng.random(n) < scores).astype(np.int64)
    acc.update(actual, (scores >= 0.5).astype(np.int64), scores)


def _feed_regression(acc: RegressionAccumulator, rng: np.random.Generator, n: int) -> None:
    y = rng.normal(10, 2, n)
    acc.update(y, y + rng.normal(size=n))


def _feed_expected(acc: ExpectedConfusionAccumulator, rng: np.random.Generator, n: int) -> None:
    scores = rng.random(n)
    acc.update((scores >= 0.5).astype(np.int64), scores)


def _feed_fairness(acc: FairnessAccumulator, rng: np.random.Generator, n: int) -> None:
    groups = rng.choice(np.array(["f", "m", "x"]), n)
    predicted = rng.integers(0, 2, n)
    acc.update(groups, predicted)
    acc.update_labelled(groups, predicted, rng.integers(0, 2, n))


def _feed_operations(acc: OperationsAccumulator, rng: np.random.Generator, n: int) -> None:
    acc.update_predictions(rng.lognormal(3, 1, n))
    acc.update_outcomes(rng.exponential(3_600, n))


ACCUMULATORS: dict[
    str, tuple[Callable[[], Any], Callable[[Any, np.random.Generator, int], None]]
] = {
    "numeric": (
        lambda: NumericAccumulator(
            cut_points=np.linspace(-2, 2, 9), lower=-3, upper=3, exact_limit=0
        ),
        _feed_numeric,
    ),
    "categorical": (
        lambda: CategoricalAccumulator(categories=["a", "b", "c", "d"]),
        _feed_categorical,
    ),
    "confusion": (lambda: ConfusionAccumulator(positive_label=1), _feed_confusion),
    "regression": (RegressionAccumulator, _feed_regression),
    "expected_confusion": (lambda: ExpectedConfusionAccumulator(positive_label=1), _feed_expected),
    "fairness": (lambda: FairnessAccumulator(positive_label=1), _feed_fairness),
    "operations": (OperationsAccumulator, _feed_operations),
}


@pytest.mark.parametrize("kind", list(ACCUMULATORS))
def test_memory_does_not_grow_with_the_number_of_events(
    rng: np.random.Generator, kind: str
) -> None:
    make, feed = ACCUMULATORS[kind]
    acc = make()
    sizes: dict[int, tuple[int, int]] = {}
    seen = 0
    for checkpoint in (100_000, 1_000_000):
        while seen < checkpoint:
            feed(acc, rng, BATCH)
            seen += BATCH
        sizes[checkpoint] = (acc.nbytes, len(orjson.dumps(acc.to_state())))
    (memory_small, state_small), (memory_large, state_large) = sizes.values()
    assert memory_large == memory_small
    # the state differs only by the extra digits of its counters
    assert abs(state_large - state_small) <= 64, sizes


def test_a_drift_column_holds_at_most_the_exact_bound_then_bounded_cells(
    rng: np.random.Generator,
) -> None:
    """Values exact up to EXACT_WINDOW_VALUES (8 bytes each, 16 once counted), then at most
    MAX_CELLS cells of 40 bytes: the same ceiling for 1 and 3 million values."""
    reference = profile_numeric(rng.standard_cauchy(50_000))
    acc = NumericAccumulator.for_reference(reference)
    ceiling = EXACT_WINDOW_VALUES * 24 + MAX_CELLS * 40 + 64_000
    for n in (EXACT_WINDOW_VALUES, 1_000_000, 3_000_000):
        while acc.count < n:
            acc.update(rng.standard_cauchy(BATCH))
        assert acc.nbytes <= ceiling, (n, acc.nbytes)
        assert acc.exact == (n <= EXACT_WINDOW_VALUES)


def test_merging_requires_the_same_configuration() -> None:
    with pytest.raises(ValueError):
        NumericAccumulator(cut_points=[1.0]).merge(NumericAccumulator(cut_points=[2.0]))
    with pytest.raises(ValueError):
        ConfusionAccumulator(positive_label=1).merge(ConfusionAccumulator(positive_label=0))
    with pytest.raises(ValueError):
        CategoricalAccumulator(categories=["a"]).merge(CategoricalAccumulator())


def test_confusion_counts_are_a_crosstab(rng: np.random.Generator) -> None:
    actual = rng.choice(np.array(["cat", "dog", "eel"]), 5_000)
    predicted = np.where(rng.random(5_000) < 0.7, actual, rng.choice(["cat", "dog"], 5_000))
    acc = ConfusionAccumulator()
    for a, p in zip(np.array_split(actual, 7), np.array_split(predicted, 7), strict=True):
        acc.update(a, p)
    expected = pd.crosstab(actual, predicted).reindex(
        index=acc.labels, columns=acc.labels, fill_value=0
    )
    np.testing.assert_array_equal(round_trip(acc).matrix(), expected.to_numpy())


def test_a_window_checkpointed_with_a_reservoir_reads_back_as_a_sample(
    rng: np.random.Generator,
) -> None:
    """A checkpoint written before windows kept their values (a 5,000-value reservoir) still
    loads after an upgrade; drift on it says it is approximate with no bound."""
    from shared.stats import column_drift
    from shared.stats._common import encode_array

    reference = profile_numeric(rng.normal(size=20_000))
    acc = NumericAccumulator.for_reference(reference)
    acc.update(rng.normal(size=20_000))
    state = acc.to_state()
    sample = rng.normal(size=5_000)
    del state["values"]
    state["reservoir"] = {"capacity": 5_000, "seen": 20_000, "values": encode_array(sample)}
    state["track_distinct"], state["max_distinct"], state["distinct"] = False, 80, None
    restored = NumericAccumulator.from_state(orjson.loads(orjson.dumps(state)))
    assert restored.count == 20_000 and not restored.exact
    restored.update(rng.normal(size=1_000))  # the window goes on
    result = column_drift(reference, restored, "wasserstein")
    assert result.approximate and result.bound == float("inf")
    assert result.detail.startswith("approximate (no bound: a side is a 5,000-value sample)")
    assert round_trip(restored).values.sampled
