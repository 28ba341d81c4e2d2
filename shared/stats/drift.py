"""Drift of one column between the reference profile and a window, as Evidently 0.7 defines it.

Each method returns a :class:`DriftResult` with the same value, default threshold and
drifted/not-drifted rule as Evidently's stattest of the same name (``evidently.legacy.
calculations.stattests``):

=============  ==========================  =========  ==================  =====================
method         value                       threshold  drifted when        column types
=============  ==========================  =========  ==================  =====================
psi            population stability index  0.1        value >= threshold  numeric, categorical
ks             two-sample K-S p-value      0.05       value <= threshold  numeric
wasserstein    W1 / max(std(ref), 0.001)   0.1        value >= threshold  numeric
jensenshannon  Jensen-Shannon distance     0.1        value >= threshold  numeric, categorical
chisquare      chi-square p-value          0.05       value < threshold   categorical
hellinger      Hellinger distance          0.1        value >= threshold  numeric, categorical
=============  ==========================  =========  ==================  =====================

Numeric columns (``Binning.EVIDENTLY``, the default) are compared as
``shared.stats.distribution`` computes them: the reference's distribution (its sample when that
holds every value, else the blob the registry stores beside the profile) against the window's
values. Both exact (a window of up to ``EXACT_WINDOW_VALUES`` distinct values per column, a
reference of up to ``EXACT_REFERENCE_VALUES``), the value is Evidently's: psi and jensenshannon
on Sturges bins over both columns (per distinct value when the reference has at most 20),
hellinger on Sturges bins over the distinct values, ks with scipy's exact or asymptotic p-value,
wasserstein normed by the reference's std. Beyond, a side is binned and the result carries a
computed ``bound`` on the difference from the method on every value (``approximate``).
A reference whose blob is not loaded falls back to its 5,000-value sample: ``approximate``
with no bound (``inf``).

``Binning.REFERENCE`` uses the reference's quantile bins and the window's exact streamed
counts on them: never approximate, the classic quantile-bin PSI, but a different
discretisation from Evidently's, hence a different number.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt
from scipy import stats
from scipy.spatial import distance

from ._common import FloatArray, InsufficientData
from .accumulators import CategoricalAccumulator, NumericAccumulator
from .distribution import (
    Distribution,
    hellinger_drift,
    ks_drift,
    psi_js_drift,
    wasserstein_drift,
)
from .distribution import (
    sturges_edges as sturges_edges,
)
from .reference import CategoricalReference, NumericReference

__all__ = [
    "DEFAULT_DRIFT_SHARE",
    "DEFAULT_THRESHOLDS",
    "Binning",
    "DatasetDrift",
    "DriftMethod",
    "DriftResult",
    "chisquare",
    "chisquare_pvalue",
    "column_drift",
    "dataset_drift_share",
    "default_method",
    "hellinger",
    "hellinger_distance",
    "jensenshannon",
    "jensenshannon_distance",
    "ks",
    "psi",
    "psi_value",
    "sturges_edges",
    "wasserstein",
]


class DriftMethod(StrEnum):
    PSI = "psi"
    KS = "ks"
    WASSERSTEIN = "wasserstein"
    JENSENSHANNON = "jensenshannon"
    CHISQUARE = "chisquare"
    HELLINGER = "hellinger"


class Binning(StrEnum):
    EVIDENTLY = "evidently"
    REFERENCE = "reference"


DEFAULT_THRESHOLDS: Mapping[DriftMethod, float] = {
    DriftMethod.PSI: 0.1,
    DriftMethod.KS: 0.05,
    DriftMethod.WASSERSTEIN: 0.1,
    DriftMethod.JENSENSHANNON: 0.1,
    DriftMethod.CHISQUARE: 0.05,
    DriftMethod.HELLINGER: 0.1,
}
DEFAULT_DRIFT_SHARE = 0.5
"""Evidently's DataDriftPreset: the dataset drifts when at least half of its columns do."""

_NUMERIC_ONLY = frozenset({DriftMethod.KS, DriftMethod.WASSERSTEIN})
_CATEGORICAL_ONLY = frozenset({DriftMethod.CHISQUARE})

Reference = NumericReference | CategoricalReference
Current = NumericAccumulator | CategoricalAccumulator


@dataclass(frozen=True, slots=True)
class DriftResult:
    method: DriftMethod
    value: float
    drifted: bool
    threshold: float
    approximate: bool = False
    """True when a side was not compared value by value (binned, or a reference sample)."""
    bound: float = 0.0
    """Largest difference from the method on every value (ks: on the statistic D; inf: none
    known). 0.0 when exact."""
    detail: str = ""
    """What was compared: exact or approximate, and the sizes."""


@dataclass(frozen=True, slots=True)
class DatasetDrift:
    share: float
    drifted: bool
    n_drifted: int
    n_columns: int
    threshold: float


def _is_drifted(method: DriftMethod, value: float, threshold: float) -> bool:
    if method is DriftMethod.KS:
        return value <= threshold
    if method is DriftMethod.CHISQUARE:
        return value < threshold
    return value >= threshold


# --- the formulas, on aligned per-bin (or per-category) arrays ------------------------------


def _fill_zeros(shares: FloatArray) -> FloatArray:
    """Evidently's guard against log(0): empty bins get a small share."""
    nonzero = shares[shares != 0]
    smallest = float(nonzero.min())
    fill = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return np.where(shares == 0, fill, shares)


def psi_value(reference_shares: npt.ArrayLike, current_shares: npt.ArrayLike) -> float:
    """PSI = sum((r - c) * ln(r / c)) after Evidently's zero filling."""
    r = _fill_zeros(np.asarray(reference_shares, dtype=np.float64))
    c = _fill_zeros(np.asarray(current_shares, dtype=np.float64))
    return float(np.sum((r - c) * np.log(r / c)))


def jensenshannon_distance(reference_shares: npt.ArrayLike, current_shares: npt.ArrayLike) -> float:
    """Jensen-Shannon distance (natural log), as ``scipy.spatial.distance.jensenshannon``."""
    return float(
        distance.jensenshannon(
            np.asarray(reference_shares, dtype=np.float64),
            np.asarray(current_shares, dtype=np.float64),
        )
    )


def hellinger_distance(reference_shares: npt.ArrayLike, current_shares: npt.ArrayLike) -> float:
    """sqrt(1 - Bhattacharyya coefficient) of two discrete distributions."""
    bc = float(
        np.sum(
            np.sqrt(
                np.asarray(reference_shares, dtype=np.float64)
                * np.asarray(current_shares, dtype=np.float64)
            )
        )
    )
    return math.sqrt(1.0 - min(max(bc, 0.0), 1.0))


def chisquare_pvalue(reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike) -> float:
    """Pearson chi-square p-value of current counts against reference proportions.

    A category the reference never saw has expectation 0: the statistic is infinite and the
    p-value 0 (what scipy returns too, with a division warning we avoid).
    """
    ref = np.asarray(reference_counts, dtype=np.float64)
    cur = np.asarray(current_counts, dtype=np.float64)
    expected = ref * (cur.sum() / ref.sum())
    if np.any((expected == 0) & (cur > 0)):
        return 0.0
    keep = expected > 0
    return float(stats.chisquare(cur[keep], expected[keep]).pvalue)


# --- aligning the reference and the window --------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Aligned:
    reference_counts: FloatArray
    current_counts: FloatArray
    reference_n: float
    current_n: float
    approximate: bool

    @property
    def reference_shares(self) -> FloatArray:
        return self.reference_counts / self.reference_n

    @property
    def current_shares(self) -> FloatArray:
        return self.current_counts / self.current_n


def _align_keys(
    ref_keys: npt.NDArray[np.generic],
    ref_counts: npt.ArrayLike,
    cur_keys: npt.NDArray[np.generic],
    cur_counts: npt.ArrayLike,
) -> tuple[FloatArray, FloatArray]:
    keys = np.union1d(ref_keys, cur_keys)
    ref = np.zeros(keys.size, dtype=np.float64)
    cur = np.zeros(keys.size, dtype=np.float64)
    ref[np.searchsorted(keys, ref_keys)] = np.asarray(ref_counts, dtype=np.float64)
    cur[np.searchsorted(keys, cur_keys)] = np.asarray(cur_counts, dtype=np.float64)
    return ref, cur


def _align_categorical(
    reference: CategoricalReference, current: CategoricalAccumulator
) -> _Aligned:
    ref_keys = np.asarray(list(reference.counts), dtype=np.str_)
    cur_keys = np.asarray(list(current.counts), dtype=np.str_)
    ref, cur = _align_keys(
        ref_keys, list(reference.counts.values()), cur_keys, list(current.counts.values())
    )
    return _Aligned(ref, cur, reference.n, current.count, approximate=current.overflow > 0)


def _align_numeric_reference(reference: NumericReference, current: NumericAccumulator) -> _Aligned:
    if not np.array_equal(reference.cut_points, current.cut_points):
        raise ValueError("the accumulator was not built on this reference's bins")
    ref = reference.bin_counts.astype(np.float64)
    cur = current.bin_counts.astype(np.float64)
    present = (ref > 0) | (cur > 0)
    return _Aligned(ref[present], cur[present], float(reference.n), float(current.count), False)


def _align(reference: Reference, current: Current, binning: Binning) -> _Aligned:
    if isinstance(reference, CategoricalReference) and isinstance(current, CategoricalAccumulator):
        return _align_categorical(reference, current)
    if isinstance(reference, NumericReference) and isinstance(current, NumericAccumulator):
        return _align_numeric_reference(reference, current)
    raise TypeError("reference and current column are of different types")


def _check(method: DriftMethod, reference: Reference, current: Current) -> None:
    numeric = isinstance(reference, NumericReference)
    if numeric != isinstance(current, NumericAccumulator):
        raise TypeError("reference and current column are of different types")
    if numeric and method in _CATEGORICAL_ONLY:
        raise ValueError(f"{method} does not apply to numeric columns")
    if not numeric and method in _NUMERIC_ONLY:
        raise ValueError(f"{method} does not apply to categorical columns")
    if current.count == 0:
        raise InsufficientData("no non-missing values in the window")


def _result(
    method: DriftMethod,
    value: float,
    threshold: float | None,
    approximate: bool,
    *,
    bound: float = 0.0,
    detail: str = "",
) -> DriftResult:
    actual = DEFAULT_THRESHOLDS[method] if threshold is None else threshold
    return DriftResult(
        method, value, _is_drifted(method, value, actual), actual, approximate, bound, detail
    )


@dataclass(frozen=True, slots=True)
class _Pair:
    reference: Distribution
    current: Distribution
    sampled: bool
    """A side is a sample: the reference's blob is not loaded, or the window was checkpointed
    by a version that kept a sample."""

    @property
    def exact(self) -> bool:
        return self.reference.exact and self.current.exact and not self.sampled

    def detail(self, method: DriftMethod, bound: float) -> str:
        ref = f"reference {self.reference.describe()}"
        sizes = f"{ref}, window {self.current.describe()}"
        if self.exact:
            return f"exact: {sizes}"
        what = "on D" if method is DriftMethod.KS else ""
        if self.sampled:
            return f"approximate (no bound: a side is a 5,000-value sample): {sizes}"
        if math.isinf(bound):
            return f"approximate (no bound): {sizes}"
        return f"approximate, |error| <= {bound:.2g}{' ' + what if what else ''}: {sizes}"


def _numeric(reference: NumericReference, current: NumericAccumulator) -> _Pair:
    """The two distributions Evidently's methods compare."""
    window = current.distribution()
    if window is None:
        raise InsufficientData("the window keeps no values of this column")
    ref = reference.distribution
    if ref is None:
        return _Pair(Distribution.of(reference.sample_array), window, sampled=True)
    return _Pair(ref, window, sampled=current.values.sampled)


def _numeric_result(
    method: DriftMethod, pair: _Pair, value: float, bound: float, threshold: float | None
) -> DriftResult:
    if pair.sampled:
        bound = math.inf
    return _result(
        method,
        value,
        threshold,
        not pair.exact,
        bound=0.0 if pair.exact else bound,
        detail=pair.detail(method, bound),
    )


# --- the methods ----------------------------------------------------------------------------


def psi(
    reference: Reference,
    current: Current,
    *,
    threshold: float | None = None,
    binning: Binning = Binning.EVIDENTLY,
) -> DriftResult:
    _check(DriftMethod.PSI, reference, current)
    if binning is Binning.EVIDENTLY and isinstance(reference, NumericReference):
        assert isinstance(current, NumericAccumulator)
        pair = _numeric(reference, current)
        drift = psi_js_drift(pair.reference, pair.current, psi=True)
        return _numeric_result(DriftMethod.PSI, pair, drift.value, drift.bound, threshold)
    aligned = _align(reference, current, binning)
    value = psi_value(aligned.reference_shares, aligned.current_shares)
    return _result(DriftMethod.PSI, value, threshold, aligned.approximate)


def jensenshannon(
    reference: Reference,
    current: Current,
    *,
    threshold: float | None = None,
    binning: Binning = Binning.EVIDENTLY,
) -> DriftResult:
    _check(DriftMethod.JENSENSHANNON, reference, current)
    if binning is Binning.EVIDENTLY and isinstance(reference, NumericReference):
        assert isinstance(current, NumericAccumulator)
        pair = _numeric(reference, current)
        drift = psi_js_drift(pair.reference, pair.current, psi=False)
        return _numeric_result(DriftMethod.JENSENSHANNON, pair, drift.value, drift.bound, threshold)
    aligned = _align(reference, current, binning)
    value = jensenshannon_distance(aligned.reference_shares, aligned.current_shares)
    return _result(DriftMethod.JENSENSHANNON, value, threshold, aligned.approximate)


def hellinger(
    reference: Reference,
    current: Current,
    *,
    threshold: float | None = None,
    binning: Binning = Binning.EVIDENTLY,
) -> DriftResult:
    _check(DriftMethod.HELLINGER, reference, current)
    if (
        binning is Binning.EVIDENTLY
        and isinstance(reference, NumericReference)
        and isinstance(current, NumericAccumulator)
    ):
        pair = _numeric(reference, current)
        drift = hellinger_drift(pair.reference, pair.current)
        return _numeric_result(DriftMethod.HELLINGER, pair, drift.value, drift.bound, threshold)
    aligned = _align(reference, current, binning)
    value = hellinger_distance(aligned.reference_shares, aligned.current_shares)
    return _result(DriftMethod.HELLINGER, value, threshold, aligned.approximate)


def chisquare(
    reference: Reference, current: Current, *, threshold: float | None = None
) -> DriftResult:
    _check(DriftMethod.CHISQUARE, reference, current)
    aligned = _align(reference, current, Binning.EVIDENTLY)
    value = chisquare_pvalue(aligned.reference_counts, aligned.current_counts)
    return _result(DriftMethod.CHISQUARE, value, threshold, aligned.approximate)


def _numeric_pair(
    method: DriftMethod, reference: Reference, current: Current
) -> tuple[NumericReference, NumericAccumulator]:
    _check(method, reference, current)
    if not isinstance(reference, NumericReference) or not isinstance(current, NumericAccumulator):
        raise ValueError(f"{method} applies to numeric columns only")
    return reference, current


def ks(reference: Reference, current: Current, *, threshold: float | None = None) -> DriftResult:
    """Two-sample K-S p-value (scipy's ``ks_2samp``); a bound, if any, is on the statistic D."""
    ref, cur = _numeric_pair(DriftMethod.KS, reference, current)
    pair = _numeric(ref, cur)
    drift, _ = ks_drift(pair.reference, pair.current)
    return _numeric_result(DriftMethod.KS, pair, drift.value, drift.bound, threshold)


def wasserstein(
    reference: Reference, current: Current, *, threshold: float | None = None
) -> DriftResult:
    """First Wasserstein distance normed by the reference's standard deviation (min 0.001)."""
    ref, cur = _numeric_pair(DriftMethod.WASSERSTEIN, reference, current)
    pair = _numeric(ref, cur)
    drift = wasserstein_drift(pair.reference, pair.current, std=ref.std)
    return _numeric_result(DriftMethod.WASSERSTEIN, pair, drift.value, drift.bound, threshold)


def default_method(reference: Reference) -> DriftMethod:
    """Evidently's choice for a reference of more than 1,000 rows.

    (For smaller references Evidently picks ks / chi-square / a z-test; we keep one rule so an
    objective's method does not change when its reference dataset grows.)
    """
    if isinstance(reference, NumericReference):
        return DriftMethod.WASSERSTEIN
    return DriftMethod.JENSENSHANNON


def column_drift(
    reference: Reference,
    current: Current,
    method: DriftMethod | str | None = None,
    *,
    threshold: float | None = None,
    binning: Binning | str = Binning.EVIDENTLY,
) -> DriftResult:
    """Dispatch on ``method`` (default: :func:`default_method`)."""
    chosen = default_method(reference) if method is None else DriftMethod(method)
    how = Binning(binning)
    match chosen:
        case DriftMethod.PSI:
            return psi(reference, current, threshold=threshold, binning=how)
        case DriftMethod.JENSENSHANNON:
            return jensenshannon(reference, current, threshold=threshold, binning=how)
        case DriftMethod.HELLINGER:
            return hellinger(reference, current, threshold=threshold, binning=how)
        case DriftMethod.CHISQUARE:
            return chisquare(reference, current, threshold=threshold)
        case DriftMethod.KS:
            return ks(reference, current, threshold=threshold)
        case DriftMethod.WASSERSTEIN:
            return wasserstein(reference, current, threshold=threshold)


def dataset_drift_share(
    results: Iterable[DriftResult], *, drift_share: float = DEFAULT_DRIFT_SHARE
) -> DatasetDrift:
    """Share of drifted columns; the dataset drifts when the share is at least ``drift_share``."""
    verdicts = [result.drifted for result in results]
    if not verdicts:
        raise InsufficientData("no columns to judge")
    n_drifted = sum(verdicts)
    share = n_drifted / len(verdicts)
    return DatasetDrift(share, share >= drift_share, n_drifted, len(verdicts), drift_share)
