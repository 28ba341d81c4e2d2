"""Reference profiles of datasets larger than memory, equal to ``ReferenceProfile.build``'s.

``shared.stats.reference`` profiles a dataset held in memory. A reference upload may be 1 GB,
so the registry builds the same :class:`ReferenceProfile` from a column source it can read
several times (the validated Parquet copy on disk), holding only bounded state:

* **pass 1** per numeric column: count, missing, moments (Chan's parallel update), min/max, a
  uniform sample of ``sample_size`` values (bottom-k :class:`Reservoir`), exact distinct values
  while there are at most ``LOW_CARDINALITY`` of them, and the number of distinct values
  (:class:`DistinctCounter`: exact up to 4,096, a k-minimum-values estimate beyond, within a
  few per cent; only Evidently-style Hellinger on continuous columns reads it). Per
  categorical column: counts per category (at most ``MAX_CATEGORIES``).
* **quantile edges are exact**, not estimated: ``np.quantile`` interpolates between two order
  statistics, and :class:`QuantileSelector` finds those by selection over further passes.
  The pass-1 sample brackets each wanted rank in a value range (4 standard errors wide); a pass
  counts the values below the bracket, histograms the values inside it and, when the bracket
  holds few enough values, collects them; a histogram narrows the bracket ~1,000-fold for the
  next pass. Collected values never exceed ``collect_budget`` in total, so memory stays bounded
  whatever the file size; a dataset of up to a few hundred thousand rows needs one pass, a
  1 GB one usually two. The bin counts follow exactly from the ranks found (the number of
  values below each cut point), so no pass is spent on them.

* **the distribution** (:func:`column_distribution`) of a numeric feature or prediction
  column holding more values than the sample: one more pass over that column alone into a
  ``shared.stats.distribution.ValueStore``, exact (sorted distinct values and counts) up to
  ``EXACT_REFERENCE_VALUES`` distinct values, cells on a grid cut from the pass-1 sample
  beyond; at most ~24 MB of one column at a time. Its blob is stored beside the validated
  copy and named in the profile by its SHA-256 (drift reads every reference value from it).

The result equals ``ReferenceProfile.build`` on the same data in edges, counts, min, max,
category counts, low-cardinality distinct values and exact distributions; mean and std agree
to rounding (batched summation); the sample is another uniform sample of the same size
(identical when the column has at most ``sample_size`` values), and so are the cells of a
column with more than ``EXACT_REFERENCE_VALUES`` distinct values (cut on the sample).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from shared.stats._common import FloatArray, IntArray, combine_moments, merge_value_counts
from shared.stats.accumulators import Reservoir
from shared.stats.distribution import Distribution, encode_distribution
from shared.stats.reference import (
    DEFAULT_BINS,
    DEFAULT_SAMPLE_SIZE,
    LOW_CARDINALITY,
    CategoricalReference,
    NumericReference,
    reference_distribution,
)

from .errors import ProfileProblem

__all__ = [
    "COLLECT_BUDGET",
    "MAX_CATEGORIES",
    "CategoricalSummary",
    "DistinctCounter",
    "NumericSummary",
    "ProfileProblem",
    "QuantileSelector",
    "column_distribution",
    "numeric_references",
    "with_distribution",
]

COLLECT_BUDGET = 1_000_000
"""Values collected per selection pass over all columns (8 MB of float64)."""
HISTOGRAM_BINS = 1024
MAX_CATEGORIES = 10_000
DISTINCT_SKETCH_SIZE = 4096
_SPREAD = 4.0
"""Bracket half-width in standard errors of the sample quantile."""
_MAX_PASSES = 64


def _hash64(values: FloatArray) -> npt.NDArray[np.uint64]:
    """splitmix64 of the float bits (-0.0 folded into 0.0, as ``np.unique`` does)."""
    z = (values + 0.0).view(np.uint64).copy()
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z


class DistinctCounter:
    """Number of distinct values: exact up to ``k``, a k-minimum-values estimate beyond."""

    def __init__(self, k: int = DISTINCT_SKETCH_SIZE) -> None:
        self.k = k
        self._smallest: npt.NDArray[np.uint64] = np.empty(0, dtype=np.uint64)

    def update(self, values: FloatArray) -> None:
        hashes = _hash64(values)
        if self._smallest.size >= self.k:
            hashes = hashes[hashes < self._smallest[-1]]
            if hashes.size == 0:
                return
        self._smallest = np.unique(np.concatenate([self._smallest, hashes]))[: self.k]

    @property
    def value(self) -> int:
        if self._smallest.size < self.k:
            return int(self._smallest.size)
        fraction = (float(self._smallest[-1]) + 1.0) / 2.0**64
        return round((self.k - 1) / fraction)


class NumericSummary:
    """Pass 1 over one numeric column (NaN and +/-inf count as missing, as in the profile)."""

    def __init__(self, *, sample_size: int = DEFAULT_SAMPLE_SIZE, seed: int = 0) -> None:
        self.count = 0
        self.missing = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.reservoir = Reservoir(sample_size, seed=seed)
        self.distinct = DistinctCounter()
        self._low_values: FloatArray | None = np.empty(0, dtype=np.float64)
        self._low_counts: IntArray = np.empty(0, dtype=np.int64)

    def update(self, values: FloatArray) -> None:
        finite = np.isfinite(values)
        x = values if finite.all() else values[finite]
        self.missing += int(values.size - x.size)
        if x.size == 0:
            return
        mean = float(x.mean())
        m2 = float(np.square(x - mean).sum())
        self.count, self.mean, self.m2 = combine_moments(
            self.count, self.mean, self.m2, int(x.size), mean, m2
        )
        self.min = min(self.min, float(x.min()))
        self.max = max(self.max, float(x.max()))
        self.reservoir.add(x)
        self.distinct.update(x)
        if self._low_values is not None:
            values_b, counts_b = np.unique(x, return_counts=True)
            merged = merge_value_counts(
                self._low_values, self._low_counts, values_b, counts_b, LOW_CARDINALITY
            )
            if merged is None:
                self._low_values = None
                return
            self._low_values, self._low_counts = merged

    @property
    def sorted_sample(self) -> FloatArray:
        return np.sort(self.reservoir.values)

    def low_cardinality(self) -> tuple[FloatArray, IntArray] | None:
        if self._low_values is None:
            return None
        return self._low_values, self._low_counts


class CategoricalSummary:
    """Counts per category key of one categorical (or boolean) column."""

    def __init__(self, column: str, *, max_categories: int = MAX_CATEGORIES) -> None:
        self.column = column
        self.max_categories = max_categories
        self.counts: dict[str, int] = {}
        self.missing = 0

    def update(self, keys: Iterable[str], counts: Iterable[int], missing: int) -> None:
        self.missing += missing
        for key, n in zip(keys, counts, strict=True):
            self.counts[key] = self.counts.get(key, 0) + int(n)
        if len(self.counts) > self.max_categories:
            raise ProfileProblem(
                self.column,
                f"more than {self.max_categories} distinct categories; a reference profile "
                "keeps every category, declare the feature numeric or drop it",
            )

    def reference(self) -> CategoricalReference:
        if not self.counts:
            raise ProfileProblem(self.column, "no values: every row is missing")
        return CategoricalReference(
            n=sum(self.counts.values()),
            n_missing=self.missing,
            counts=dict(sorted(self.counts.items())),
        )


@dataclass
class _Rank:
    """One wanted order statistic (0-based rank ``k`` among the finite values)."""

    k: int
    lo: float
    hi: float
    """The value range (inclusive) known or believed to hold the rank."""
    expected: int
    # per pass
    below: int = 0
    inside: int = 0
    inside_min: float = math.inf
    inside_max: float = -math.inf
    edges: FloatArray = field(default_factory=lambda: np.empty(0, dtype=np.float64))
    hist: IntArray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    cap: int = 0
    collected: list[FloatArray] | None = None
    n_collected: int = 0
    # result: x_k, #values < x_k, #values <= x_k
    value: float | None = None
    f_lt: int = 0
    f_le: int = 0

    def resolve(self, value: float, f_lt: int, f_le: int) -> None:
        self.value, self.f_lt, self.f_le = value, f_lt, f_le
        self.collected = None
        self.edges = np.empty(0, dtype=np.float64)
        self.hist = np.empty(0, dtype=np.int64)

    def resolve_from(self, values: FloatArray, *, below: int) -> None:
        """``values`` (sorted) hold ranks ``below, below + 1, ...``."""
        value = float(values[self.k - below])
        self.resolve(
            value,
            below + int(np.searchsorted(values, value, side="left")),
            below + int(np.searchsorted(values, value, side="right")),
        )


def _lerp(a: float, b: float, t: float) -> float:
    """numpy's ``_lerp`` (quantile method 'linear'), operation for operation."""
    diff = b - a
    return b - diff * (1.0 - t) if t >= 0.5 else a + diff * t


_DOWN = -math.inf
_UP = math.inf


class QuantileSelector:
    """Exact ``np.quantile`` edges and bin counts of one column, over repeated passes.

    Feed each pass's finite values, *sorted per batch*, to :meth:`update` between
    :meth:`begin_pass` and :meth:`end_pass` while :attr:`done` is False. A pass narrows each
    unresolved rank's value range to one of ~1,000 histogram bins (a bin's upper edge is
    exclusive, so every pass strictly shrinks the range and selection ends even on heavily
    tied data), or resolves it from the collected values or because the range holds one value.
    """

    def __init__(self, summary: NumericSummary, *, n_bins: int = DEFAULT_BINS) -> None:
        self.n = summary.count
        self.min = summary.min
        self.max = summary.max
        self.passes = 0
        self._virtual = (self.n - 1) * np.linspace(0.0, 1.0, n_bins + 1)
        wanted: set[int] = set()
        for v in self._virtual[1:-1]:
            if v < self.n - 1:
                k = int(np.floor(v))
                wanted.update((k, k + 1) if v != k else (k,))
        sample = summary.sorted_sample
        self._ranks = {k: self._bracket(k, sample) for k in sorted(wanted)}
        if sample.size == self.n:
            for rank in self._ranks.values():
                rank.resolve_from(sample, below=0)

    def _bracket(self, k: int, sample: FloatArray) -> _Rank:
        m = sample.size
        p = k / (self.n - 1)
        pos = p * (m - 1)
        half = _SPREAD * math.sqrt(m * p * (1.0 - p)) + 2.0
        lo_i, hi_i = math.floor(pos - half), math.ceil(pos + half)
        lo = float(sample[lo_i]) if lo_i >= 0 else self.min
        hi = float(sample[hi_i]) if hi_i <= m - 1 else self.max
        share = (min(hi_i, m - 1) - max(lo_i, 0) + 1) / m
        return _Rank(k=k, lo=lo, hi=hi, expected=math.ceil(share * self.n))

    @property
    def done(self) -> bool:
        return all(r.value is not None for r in self._ranks.values())

    def begin_pass(self, budget: int) -> int:
        """Prepare a pass; returns the collect budget left for other columns."""
        self.passes += 1
        if self.passes > _MAX_PASSES:
            raise RuntimeError("quantile selection did not converge")
        for rank in self._ranks.values():
            if rank.value is not None:
                continue
            rank.below = rank.inside = 0
            rank.inside_min, rank.inside_max = math.inf, -math.inf
            # bins [e0, e1), [e1, e2), ..., and a last one holding exactly hi
            rank.edges = np.unique(np.linspace(rank.lo, rank.hi, HISTOGRAM_BINS + 1))
            rank.hist = np.zeros(rank.edges.size, dtype=np.int64)
            wanted = rank.expected + rank.expected // 4 + 64
            if wanted <= budget:
                rank.cap, budget = wanted, budget - wanted
                rank.collected, rank.n_collected = [], 0
            else:
                rank.cap, rank.collected = 0, None
        return budget

    def update(self, sorted_values: FloatArray) -> None:
        for rank in self._ranks.values():
            if rank.value is not None:
                continue
            i = int(np.searchsorted(sorted_values, rank.lo, side="left"))
            j = int(np.searchsorted(sorted_values, rank.hi, side="right"))
            rank.below += i
            if j <= i:
                continue
            inside = sorted_values[i:j]
            rank.inside += inside.size
            rank.inside_min = min(rank.inside_min, float(inside[0]))
            rank.inside_max = max(rank.inside_max, float(inside[-1]))
            bins = np.searchsorted(rank.edges, inside, side="right") - 1
            rank.hist += np.bincount(bins, minlength=rank.hist.size)
            if rank.collected is not None:
                if rank.n_collected + inside.size > rank.cap:
                    rank.collected = None
                else:
                    rank.collected.append(inside.copy())
                    rank.n_collected += inside.size

    def end_pass(self) -> None:
        for rank in self._ranks.values():
            if rank.value is not None:
                continue
            below, inside = rank.below, rank.inside
            if rank.k < below:  # the bracket missed: the rank lies below it
                rank.lo, rank.hi = self.min, float(np.nextafter(rank.lo, _DOWN))
                rank.expected = below
            elif rank.k >= below + inside:  # ... or above it
                rank.lo, rank.hi = float(np.nextafter(rank.hi, _UP)), self.max
                rank.expected = self.n - below - inside
            elif rank.collected is not None:
                rank.resolve_from(np.sort(np.concatenate(rank.collected)), below=below)
            elif rank.inside_min == rank.inside_max:
                rank.resolve(rank.inside_min, below, below + inside)
            else:
                cumulative = below + np.cumsum(rank.hist)
                b = int(np.searchsorted(cumulative, rank.k, side="right"))
                if b == rank.edges.size - 1:  # the bin of values equal to hi
                    start = int(cumulative[b] - rank.hist[b])
                    rank.resolve(rank.hi, start, int(cumulative[b]))
                    continue
                rank.lo = float(rank.edges[b])
                rank.hi = float(np.nextafter(rank.edges[b + 1], _DOWN))
                rank.expected = int(rank.hist[b])
            rank.collected = None

    def result(self) -> tuple[FloatArray, IntArray]:
        """(deduplicated edges, counts per bin) exactly as ``profile_numeric`` computes them."""
        if not self.done:
            raise RuntimeError("quantile selection is not finished")
        previous = np.floor(self._virtual)
        gamma = self._virtual - previous
        edges: list[float] = []
        below_edge: dict[float, int] = {}
        for v, k, t in zip(self._virtual.tolist(), previous.tolist(), gamma.tolist(), strict=True):
            if v >= self.n - 1:
                edges.append(self.max)
                continue
            if v == 0:
                edges.append(self.min)
                continue
            low = self._ranks[int(k)]
            assert low.value is not None
            if v == k:
                edge = low.value
            else:
                high = self._ranks[int(k) + 1].value
                assert high is not None
                edge = _lerp(low.value, high, t)
            edges.append(edge)
            # values below the edge: those below x_k, plus those equal to x_k when the edge
            # lies above it (no value lies strictly between consecutive order statistics)
            below_edge.setdefault(edge, low.f_lt if edge <= low.value else low.f_le)
        unique = np.unique(np.asarray(edges, dtype=np.float64))
        below = [0, *(below_edge[float(c)] for c in unique[1:-1]), self.n]
        return unique, np.diff(np.asarray(below, dtype=np.int64)).astype(np.int64)


ColumnPass = Callable[[list[str]], Iterator[Mapping[str, FloatArray]]]
"""Reads the named numeric columns once more, batch by batch (values as float64, NaN missing)."""


def numeric_references(
    summaries: Mapping[str, NumericSummary],
    read: ColumnPass,
    *,
    n_bins: int = DEFAULT_BINS,
    collect_budget: int = COLLECT_BUDGET,
) -> tuple[dict[str, NumericReference], int]:
    """Finish pass-1 summaries into profiles with exact edges; returns them and the passes run."""
    for name, summary in summaries.items():
        if summary.count == 0:
            raise ProfileProblem(name, "no finite values: every row is missing")
    selectors = {name: QuantileSelector(s, n_bins=n_bins) for name, s in summaries.items()}
    passes = 0
    while pending := [name for name, sel in selectors.items() if not sel.done]:
        passes += 1
        budget = collect_budget
        for name in pending:
            budget = selectors[name].begin_pass(budget)
        for batch in read(pending):
            for name in pending:
                values = batch[name]
                selectors[name].update(np.sort(values[np.isfinite(values)]))
        for name in pending:
            selectors[name].end_pass()
    references: dict[str, NumericReference] = {}
    for name, summary in summaries.items():
        edges, counts = selectors[name].result()
        low = summary.low_cardinality()
        references[name] = NumericReference(
            n=summary.count,
            n_missing=summary.missing,
            mean=summary.mean,
            std=math.sqrt(summary.m2 / summary.count),
            min=float(edges[0]),
            max=float(edges[-1]),
            n_unique=summary.distinct.value,
            edges=tuple(edges.tolist()),
            counts=tuple(counts.tolist()),
            sample=tuple(summary.sorted_sample.tolist()),
            distinct_values=tuple(low[0].tolist()) if low is not None else None,
            distinct_counts=tuple(low[1].tolist()) if low is not None else None,
        )
    return references, passes


def column_distribution(summary: NumericSummary, batches: Iterable[FloatArray]) -> Distribution:
    """Every value of a column (one more pass: its batches, NaN and infinities dropped here),
    exact up to ``EXACT_REFERENCE_VALUES`` distinct values, else cells cut on the sample."""
    return reference_distribution(
        (batch[np.isfinite(batch)] for batch in batches),
        sample=summary.sorted_sample,
        std=math.sqrt(summary.m2 / summary.count),
        low=summary.min,
        high=summary.max,
    )


def with_distribution(reference: NumericReference, distribution: Distribution) -> NumericReference:
    """The reference naming (and holding) its distribution blob."""
    blob = encode_distribution(distribution)
    named = reference.model_copy(
        update={
            "values_sha256": hashlib.sha256(blob).hexdigest(),
            "values_binned": not distribution.exact,
        }
    )
    named.attach(blob)
    return named
