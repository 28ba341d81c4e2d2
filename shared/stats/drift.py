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

Binning of numeric columns for psi / jensenshannon / hellinger:

* ``Binning.EVIDENTLY`` (default) reproduces Evidently: psi and jensenshannon use Sturges bins
  over the combined reference and current data (per distinct value when the reference has at
  most 20 distinct values), hellinger uses Sturges bins over the distinct values. Bin edges come
  from exact counts and extremes; the histograms are taken over the reference profile's sample
  and the window's reservoir, so the value equals Evidently's whenever neither holds more than
  its sample size (5,000 by default) and is a sample estimate beyond (``approximate=True``).
* ``Binning.REFERENCE`` uses the reference's quantile bins and the window's exact streamed
  counts on them: never approximate, the classic quantile-bin PSI, but a different
  discretisation from Evidently's, hence a different number.

ks and wasserstein likewise run on the two samples (exact while complete). Beyond the sample
size the ks p-value is that of the test on the samples: a valid test of the same hypothesis with
the power of 5,000 observations, where Evidently on all rows would report a smaller p-value.
Measured on 60,000 reference and 80,000 current normal values, sampling biases the binned
distances upwards by about 0.017 (Jensen-Shannon, Hellinger) and 0.004 (PSI) at no drift, and
moves the normed Wasserstein distance by a few thousandths; the tests pin these tolerances.
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
    "wasserstein_distance_sorted",
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
    """True when computed on a sample of a window (or reference) larger than the sample."""


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


def sturges_edges(low: float, high: float, n: int) -> FloatArray:
    """``np.histogram_bin_edges(data, "sturges")`` for data of size n with this min and max."""
    width = (high - low) / (np.log2(n) + 1.0)
    first, last = (low - 0.5, high + 0.5) if low == high else (low, high)
    n_bins = int(np.ceil((last - first) / width)) if width else 1
    return np.linspace(first, last, n_bins + 1)


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


def _complete(reference: NumericReference, current: NumericAccumulator) -> bool:
    return reference.sample_complete and current.sample_complete


def _align_numeric_evidently(reference: NumericReference, current: NumericAccumulator) -> _Aligned:
    if reference.distinct_values is not None and reference.distinct_counts is not None:
        # Evidently treats a numeric column with <= 20 reference values per value.
        exact = current.distinct()
        if exact is not None:
            cur_values, cur_counts, cur_n = exact[0], exact[1], float(current.count)
        else:
            cur_values, cur_counts = np.unique(current.sample, return_counts=True)
            cur_n = float(current.sample.size)
        ref, cur = _align_keys(
            np.asarray(reference.distinct_values, dtype=np.float64),
            reference.distinct_counts,
            cur_values,
            cur_counts,
        )
        approximate = exact is None and not current.sample_complete
        return _Aligned(ref, cur, float(reference.n), cur_n, approximate)
    edges = sturges_edges(
        min(reference.min, current.min),
        max(reference.max, current.max),
        reference.n + current.count,
    )
    ref_hist = np.histogram(reference.sample_array, edges)[0].astype(np.float64)
    cur_hist = np.histogram(current.sample, edges)[0].astype(np.float64)
    return _Aligned(
        ref_hist,
        cur_hist,
        float(reference.sample_array.size),
        float(current.sample.size),
        approximate=not _complete(reference, current),
    )


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
        if binning is Binning.REFERENCE:
            return _align_numeric_reference(reference, current)
        return _align_numeric_evidently(reference, current)
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
    method: DriftMethod, value: float, threshold: float | None, approximate: bool
) -> DriftResult:
    actual = DEFAULT_THRESHOLDS[method] if threshold is None else threshold
    return DriftResult(method, value, _is_drifted(method, value, actual), actual, approximate)


# --- the methods ----------------------------------------------------------------------------


def psi(
    reference: Reference,
    current: Current,
    *,
    threshold: float | None = None,
    binning: Binning = Binning.EVIDENTLY,
) -> DriftResult:
    _check(DriftMethod.PSI, reference, current)
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
    aligned = _align(reference, current, binning)
    value = jensenshannon_distance(aligned.reference_shares, aligned.current_shares)
    return _result(DriftMethod.JENSENSHANNON, value, threshold, aligned.approximate)


def _numeric_hellinger_evidently(
    reference: NumericReference, current: NumericAccumulator
) -> tuple[float, bool]:
    """Evidently's numeric Hellinger: density histograms on Sturges bins of distinct values."""
    ref_sample, cur_sample = reference.sample_array, current.sample
    complete = _complete(reference, current)
    distinct_in_samples = int(np.unique(np.concatenate([ref_sample, cur_sample])).size)
    if complete or distinct_in_samples < ref_sample.size + cur_sample.size:
        n_keys = distinct_in_samples
    else:
        # Every sampled value distinct: a continuous column, assume all values are.
        n_keys = reference.n_unique + current.count
    edges = sturges_edges(min(reference.min, current.min), max(reference.max, current.max), n_keys)
    ref_density = np.histogram(ref_sample, bins=edges, density=True)[0]
    cur_density = np.histogram(cur_sample, bins=edges, density=True)[0]
    bin_width = (edges[-1] - edges[0]) / (edges.size - 1)
    bc = float(np.sum(np.sqrt(ref_density * cur_density) * bin_width))
    return math.sqrt(1.0 - min(max(bc, 0.0), 1.0)), not complete


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
        value, approximate = _numeric_hellinger_evidently(reference, current)
        return _result(DriftMethod.HELLINGER, value, threshold, approximate)
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
    ref, cur = _numeric_pair(DriftMethod.KS, reference, current)
    value = float(stats.ks_2samp(ref.sample_array, cur.sample).pvalue)
    return _result(DriftMethod.KS, value, threshold, not _complete(ref, cur))


def wasserstein_distance_sorted(u_sorted: FloatArray, v: FloatArray) -> float:
    """``scipy.stats.wasserstein_distance(u, v)`` when ``u`` is already sorted (a reference
    sample is): the same operations on the same sorted values, so the same float, without
    sorting the reference again and with the two sorted halves merged (timsort) not re-sorted.
    """
    v_sorted = np.sort(v)
    all_values = np.concatenate((u_sorted, v_sorted))
    all_values.sort(kind="mergesort")
    deltas = np.diff(all_values)
    u_cdf = u_sorted.searchsorted(all_values[:-1], "right") / u_sorted.size
    v_cdf = v_sorted.searchsorted(all_values[:-1], "right") / v_sorted.size
    return float(np.vecdot(np.abs(u_cdf - v_cdf), deltas))


def wasserstein(
    reference: Reference, current: Current, *, threshold: float | None = None
) -> DriftResult:
    """First Wasserstein distance normed by the reference's standard deviation (min 0.001)."""
    ref, cur = _numeric_pair(DriftMethod.WASSERSTEIN, reference, current)
    norm = max(ref.std, 0.001)
    value = wasserstein_distance_sorted(ref.sample_array, cur.sample) / norm
    return _result(DriftMethod.WASSERSTEIN, value, threshold, not _complete(ref, cur))


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
