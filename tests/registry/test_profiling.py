"""Bounded-memory profiles equal shared.stats' in-memory ones: exact quantile edges and counts."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator, Mapping

import numpy as np
import pytest

from services.registry.profiling import (
    CategoricalSummary,
    DistinctCounter,
    NumericSummary,
    ProfileProblem,
    numeric_references,
)
from shared.stats.reference import NumericReference, profile_numeric


def streamed(
    values: np.ndarray, *, batch: int = 1_000, budget: int = 1_000_000, sample_size: int = 5_000
) -> tuple[NumericReference, int]:
    summary = NumericSummary(sample_size=sample_size)
    for start in range(0, values.size, batch):
        summary.update(values[start : start + batch])

    def read(names: list[str]) -> Iterator[Mapping[str, np.ndarray]]:
        for start in range(0, values.size, batch):
            yield dict.fromkeys(names, values[start : start + batch])

    references, passes = numeric_references({"x": summary}, read, collect_budget=budget)
    return references["x"], passes


def distributions() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(42)
    n = 40_000
    with_missing = rng.exponential(3.0, n)
    with_missing[rng.random(n) < 0.1] = np.nan
    with_missing[:5] = [np.inf, -np.inf, np.nan, np.inf, np.nan]
    return {
        "normal": rng.normal(100.0, 15.0, n),
        "lognormal rounded (ties)": np.round(rng.lognormal(3.0, 1.0, n), 1),
        "five integers": rng.integers(0, 5, n).astype(float),
        "two adjacent floats": np.where(rng.random(n) < 0.37, 1.0, np.nextafter(1.0, 2.0)),
        "mostly one value": np.where(rng.random(n) < 0.93, 0.0, rng.normal(0, 1, n)),
        "missing and infinite": with_missing,
        "huge and tiny magnitudes": rng.normal(0, 1, n) * 10.0 ** rng.integers(-100, 100, n),
        "sorted": np.sort(rng.uniform(-1, 1, n)),
        "tiny": np.array([3.0, 1.0, 2.0]),
        "single": np.array([7.5]),
    }


@pytest.mark.parametrize("budget", [50, 5_000, 10_000_000])
@pytest.mark.parametrize("name", list(distributions()))
def test_edges_and_counts_equal_numpy(name: str, budget: int) -> None:
    values = distributions()[name]
    got, passes = streamed(values, budget=budget, sample_size=500)
    expected = profile_numeric(values, sample_size=500)
    assert got.edges == expected.edges
    assert got.counts == expected.counts
    assert (got.n, got.n_missing, got.min, got.max) == (
        expected.n,
        expected.n_missing,
        expected.min,
        expected.max,
    )
    assert got.distinct_values == expected.distinct_values
    assert got.distinct_counts == expected.distinct_counts
    assert got.mean == pytest.approx(expected.mean, rel=1e-12, abs=1e-300)
    assert got.std == pytest.approx(expected.std, rel=1e-9, abs=1e-300)
    if values.size <= 500:
        assert passes == 0  # the sample holds every value: nothing to select
        assert got.sample == expected.sample


def test_a_small_budget_bounds_memory() -> None:
    """4 million values (32 MB) profiled exactly while holding a few MB at most."""
    rng = np.random.default_rng(1)
    values = np.round(rng.lognormal(8.0, 1.5, 4_000_000), 2)
    tracemalloc.start()
    try:
        got, passes = streamed(values, batch=65_536, budget=100_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 12 * 2**20, f"peak {peak / 2**20:.1f} MiB"
    assert passes >= 2
    edges = np.unique(np.quantile(values, np.linspace(0, 1, 11)))
    assert got.edges == tuple(edges.tolist())
    counts = np.bincount(np.searchsorted(edges[1:-1], values, side="right"))
    assert got.counts == tuple(counts.tolist())


def test_sample_is_uniform_and_bounded() -> None:
    values = np.arange(100_000, dtype=float)
    got, _ = streamed(values, sample_size=5_000)
    assert len(got.sample) == 5_000
    assert list(got.sample) == sorted(got.sample)
    assert len(set(got.sample)) == 5_000
    # a uniform sample of 0..99,999 has its mean near 50,000 (sd ~ 400)
    assert abs(np.mean(got.sample) - 49_999.5) < 2_000


def test_distinct_counter_is_exact_when_small_and_close_when_large() -> None:
    small = DistinctCounter()
    small.update(np.array([1.0, 2.0, 2.0, -0.0, 0.0, 3.5]))
    assert small.value == 4
    large = DistinctCounter()
    rng = np.random.default_rng(3)
    for _ in range(20):
        large.update(rng.integers(0, 200_000, 50_000).astype(float))
    truth = np.unique(np.random.default_rng(3).integers(0, 200_000, (20, 50_000))).size
    assert large.value == pytest.approx(truth, rel=0.05)


def test_unprofilable_columns() -> None:
    empty = NumericSummary()
    empty.update(np.array([np.nan, np.inf]))
    with pytest.raises(ProfileProblem, match="no finite values"):
        numeric_references({"x": empty}, lambda names: iter(()))
    categories = CategoricalSummary("city", max_categories=3)
    with pytest.raises(ProfileProblem, match="more than 3"):
        categories.update(["a", "b", "c", "d"], [1, 1, 1, 1], 0)
    with pytest.raises(ProfileProblem, match="every row is missing"):
        CategoricalSummary("region").reference()
