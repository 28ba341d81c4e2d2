"""Property tests: every numeric drift method against Evidently 0.7's own stattest functions on
the same rows, over many distributions (ties, discrete, heavy tails, point masses mixed with
continuous parts, constant columns), references of 20,000 to 1,000,000 rows and windows of 100
to 100,000 values: exact (|delta| <= 1e-9) and the same decision. Beyond the exact sizes (a
window of more than 100,000 distinct values, a reference of more than 1,000,000): within the
bound the result states, and that bound within 1e-3 for the distances and the K-S statistic."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.contracts import FeatureType
from shared.stats import NumericAccumulator, ReferenceProfile, column_drift
from shared.stats.distribution import EXACT_REFERENCE_VALUES, EXACT_WINDOW_VALUES

METHODS = ("psi", "ks", "wasserstein", "jensenshannon", "hellinger")
STATTEST = {
    "psi": "psi_stat_test",
    "ks": "ks_stat_test",
    "wasserstein": "wasserstein_stat_test",
    "jensenshannon": "jensenshannon_stat_test",
    "hellinger": "hellinger_stat_test",
}
EXACT = 1e-9

Sampler = Callable[[np.random.Generator, int, float], np.ndarray]


def _mixture(rng: np.random.Generator, n: int, shift: float) -> np.ndarray:
    """30 % point mass at 0, the rest continuous: ties at a value inside the continuous part."""
    x = rng.normal(shift, 1.0, n)
    x[rng.random(n) < 0.3] = 0.0
    return x


FAMILIES: dict[str, Sampler] = {
    "normal": lambda rng, n, s: rng.normal(s, 1.0 + s / 3, n),
    "cauchy": lambda rng, n, s: rng.standard_cauchy(n) + s,
    "student_t2": lambda rng, n, s: rng.standard_t(2.0, n) * (1 + s),
    "lognormal": lambda rng, n, s: rng.lognormal(s, 1.2, n),
    "pareto": lambda rng, n, s: rng.pareto(1.5 + s, n),
    "rounded": lambda rng, n, s: np.round(rng.normal(s, 1.0, n), 1),
    "integers": lambda rng, n, s: rng.poisson(3.0 + 3 * s, n).astype(np.float64),
    "few_values": lambda rng, n, s: rng.choice(
        [0.0, 1.5, 7.0], n, p=[0.6 - s / 4, 0.3, 0.1 + s / 4]
    ),
    "point_mass": _mixture,
    "two_atoms_and_tail": lambda rng, n, s: np.where(
        rng.random(n) < 0.5, rng.choice([-1.0, 1.0], n), rng.exponential(1.0 + s, n)
    ),
    "constant": lambda rng, n, s: np.full(n, 2.5 if s == 0 else 2.5 + s),
    "huge_offset": lambda rng, n, s: 1e9 + rng.normal(s, 1e-3, n),
}


def evidently_values(
    evidently: SimpleNamespace, reference: np.ndarray, current: np.ndarray
) -> dict[str, tuple[float, bool]]:
    from evidently.legacy.core import ColumnType

    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy's own, on constant columns
        for method in METHODS:
            test = getattr(evidently.stattests, STATTEST[method])
            result = test(pd.Series(reference), pd.Series(current), ColumnType.Numerical, None)
            out[method] = (float(result.drift_score), bool(result.drifted))
    return out


def ours(
    reference: np.ndarray, current: np.ndarray, *, batches: int = 7
) -> tuple[ReferenceProfile, NumericAccumulator]:
    profile = ReferenceProfile.build({"x": reference}, {"x": FeatureType.NUMERIC})
    column = profile.features["x"]
    acc = NumericAccumulator.for_reference(column)  # type: ignore[arg-type]
    for part in np.array_split(current, batches):
        acc.update(part)
    return profile, acc


def check_exact(evidently: SimpleNamespace, reference: np.ndarray, current: np.ndarray) -> None:
    profile, acc = ours(reference, current)
    theirs = evidently_values(evidently, reference, current)
    for method in METHODS:
        result = column_drift(profile.features["x"], acc, method)
        value, drifted = theirs[method]
        assert not result.approximate, (method, result.detail)
        assert result.detail.startswith("exact: "), result.detail
        assert abs(result.value - value) <= EXACT, (method, result.value, value)
        assert result.drifted == drifted, (method, result.value, value)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
@given(
    family=st.sampled_from(sorted(FAMILIES)),
    other=st.sampled_from(sorted(FAMILIES)),
    same_family=st.booleans(),
    shift=st.sampled_from([0.0, 0.05, 0.3, 1.0]),
    n_reference=st.integers(20_000, 120_000),
    n_current=st.sampled_from([100, 101, 999, 5_000, 10_000, 10_001, 40_000, 100_000]),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_method_is_evidentlys_number_on_the_same_rows(
    evidently: SimpleNamespace,
    family: str,
    other: str,
    same_family: bool,
    shift: float,
    n_reference: int,
    n_current: int,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    reference = FAMILIES[family](rng, n_reference, 0.0)
    current = FAMILIES[family if same_family else other](rng, n_current, shift)
    check_exact(evidently, reference, current)


@pytest.mark.parametrize("family", ["normal", "point_mass", "rounded"])
def test_a_million_row_reference_is_still_exact(evidently: SimpleNamespace, family: str) -> None:
    rng = np.random.default_rng(len(family))
    reference = FAMILIES[family](rng, EXACT_REFERENCE_VALUES, 0.0)
    current = FAMILIES[family](rng, 30_000, 0.05)
    check_exact(evidently, reference, current)


def test_a_window_of_exactly_the_bound_is_exact(evidently: SimpleNamespace) -> None:
    rng = np.random.default_rng(3)
    check_exact(evidently, rng.normal(size=50_000), rng.normal(0.02, 1, EXACT_WINDOW_VALUES))


# --- beyond the exact sizes -----------------------------------------------------------------

DISTANCE_BOUND = 1e-3
"""The documented bound on psi, jensenshannon and wasserstein values and on the K-S statistic."""


def check_bounded(
    evidently: SimpleNamespace,
    reference: np.ndarray,
    current: np.ndarray,
    *,
    hellinger_bound: float = DISTANCE_BOUND,
) -> dict[str, float]:
    from scipy import stats

    profile, acc = ours(reference, current, batches=23)
    theirs = evidently_values(evidently, reference, current)
    statistic = float(stats.ks_2samp(reference, current).statistic)
    errors = {}
    for method in METHODS:
        result = column_drift(profile.features["x"], acc, method)
        value, drifted = theirs[method]
        assert result.approximate, method
        assert result.detail.startswith("approximate, |error| <= "), result.detail
        if method == "ks":
            # the bound is on D; p-values of the same n are monotone in D
            assert result.bound <= DISTANCE_BOUND
            assert (
                result.drifted == drifted
                or abs(
                    statistic - stats.distributions.kstwo.isf(0.05, round(_en(reference, current)))
                )
                <= result.bound
            )
            continue
        error = abs(result.value - value)
        errors[method] = error
        assert error <= result.bound + 1e-12, (method, error, result.bound)
        limit = hellinger_bound if method == "hellinger" else DISTANCE_BOUND
        assert result.bound <= limit, (method, result.bound)
        if abs(value - result.threshold) > result.bound:
            assert result.drifted == drifted, method
    return errors


def _en(reference: np.ndarray, current: np.ndarray) -> float:
    m, n = sorted([float(reference.size), float(current.size)], reverse=True)
    return m * n / (m + n)


@pytest.mark.parametrize(
    ("family", "shift"),
    [
        ("normal", 0.0),
        ("normal", 0.1),
        ("point_mass", 0.05),
        ("student_t2", 0.0),
        ("lognormal", 0.2),
    ],
)
def test_a_binned_window_is_within_its_bound(
    evidently: SimpleNamespace, family: str, shift: float
) -> None:
    rng = np.random.default_rng(11)
    reference = FAMILIES[family](rng, 100_000, 0.0)
    current = FAMILIES[family](rng, 250_000, shift)
    check_bounded(evidently, reference, current, hellinger_bound=0.05)


def test_a_binned_reference_is_within_its_bound(evidently: SimpleNamespace) -> None:
    """1.2 million distinct reference values: stored as cells."""
    rng = np.random.default_rng(5)
    reference = rng.normal(size=1_200_000)
    current = rng.normal(0.05, 1.0, 20_000)
    profile, acc = ours(reference, current)
    column = profile.features["x"]
    assert column.values_binned  # type: ignore[union-attr]
    theirs = evidently_values(evidently, reference, current)
    for method in ("psi", "jensenshannon", "wasserstein"):
        result = column_drift(column, acc, method)
        assert result.approximate
        assert abs(result.value - theirs[method][0]) <= result.bound + 1e-12, method
        assert result.bound <= DISTANCE_BOUND, (method, result.bound)
    ks = column_drift(column, acc, "ks")
    assert ks.bound <= DISTANCE_BOUND
