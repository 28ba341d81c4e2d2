"""The distribution of one numeric column, exact or binned, and drift between two of them.

Evidently's numeric drift methods read every value of both columns. A :class:`Distribution`
is what Watchkeeper keeps instead:

* **exact**: the sorted distinct values and their counts. Every method then computes
  Evidently 0.7's number from the same integers with the same floating-point operations
  (``|delta| <= 1e-9`` in the tests; in practice the last bit or two of a sum).
* **binned**: sorted, disjoint *cells*, each with the count, sum, smallest and largest of the
  values it holds (:class:`Cells`). A window keeps its values exactly up to
  ``EXACT_WINDOW_VALUES`` distinct values and bins them beyond (:class:`ValueStore`); the
  registry keeps a reference exactly up to ``EXACT_REFERENCE_VALUES`` distinct values and bins
  it beyond. A binned side is *reconstructed* as the extremes of every cell plus the rest of
  its count at the mean of the rest (a distribution consistent with everything the cells
  know), the method's formula is applied to that, and a rigorous bound of the error against
  the method on the real values is computed from the cells (:class:`Drift`, ``bound``).

Bounds (see docs/evaluator.md for the derivations):

* ks: the statistic D of the reconstruction and of the real data differ by at most the largest
  mass of one side inside one cell of the other side (cells are cut at the reference's
  1/1024 quantiles and on a lattice of ``std / LATTICE_PER_STD``, so this is ``<= 1/1024`` and
  for a smooth reference ``<= density * std / 2048``); the p-value is scipy's for the
  reconstructed D, so the decision is the full data's unless D is within the bound of the
  critical value.
* wasserstein: the sum, over cells where the two CDFs may cross, of cell mass times cell
  width, over the norm: ``<= 1/LATTICE_PER_STD`` (4.9e-4) inside the reference's range; the
  CDFs cannot cross outside it.
* psi, jensenshannon, hellinger: the Sturges edges are Evidently's exactly (they depend only
  on the extremes and the counts); a cell holding values on both sides of an edge makes the
  two bins' counts intervals, and the bound is the range of the formula over those intervals
  (each term is convex in its two shares). Grid points include every edge Evidently can use
  while the window stays within the reference's range, so such cells are rare.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal, Self

import numpy as np
import numpy.typing as npt

from ._common import FloatArray, IntArray, State, decode_array, encode_array

__all__ = [
    "EXACT_REFERENCE_VALUES",
    "EXACT_WINDOW_VALUES",
    "LATTICE_PER_STD",
    "LOW_CARDINALITY",
    "Cells",
    "Distribution",
    "Drift",
    "Grid",
    "ValueStore",
    "decode_distribution",
    "encode_distribution",
    "hellinger_drift",
    "ks_drift",
    "psi_js_drift",
    "sturges_edges",
    "wasserstein_drift",
]

EXACT_WINDOW_VALUES = 100_000
"""A window keeps up to this many distinct values per column exactly (raw values until then)."""
EXACT_REFERENCE_VALUES = 1_000_000
"""The registry stores a reference column's values exactly up to this many distinct values."""
LOW_CARDINALITY = 20
"""Evidently bins a numeric column per distinct value when the reference has at most this many."""
GRID_QUANTILES = 1024
"""Reference quantiles that cut a binned window's cells (the ks bound is at most 1/this)."""
LATTICE_PER_STD = 2048
"""Cells are at most std / this wide inside the reference's range (the wasserstein bound)."""
MAX_CELLS = 1 << 17
"""A binned side never holds more cells: beyond, neighbouring cells merge (bounds grow)."""
_OUTSIDE_LINEAR = 1 << 17
_LOG_STEPS = 1024
_MAX_SUBCELLS = 1 << 20
_PENDING = 1 << 16
"""A binned store cuts buffered values into cells in bulk, at most this many at a time."""
_KS_EXACT_MAX_N = 10_000
"""scipy.stats.ks_2samp's ``MAX_AUTO_N``: exact p-values up to this sample size."""


# --- the two kinds of distribution ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cells:
    """Sorted disjoint cells: cell i holds ``count[i]`` values in ``[lo[i], hi[i]]`` summing to
    ``total[i]``; ``hi[i] < lo[i + 1]``. A cell with ``lo == hi`` is exact (one value)."""

    lo: FloatArray
    hi: FloatArray
    count: IntArray
    total: FloatArray

    @property
    def size(self) -> int:
        return int(self.lo.size)

    @property
    def nbytes(self) -> int:
        return self.lo.nbytes + self.hi.nbytes + self.count.nbytes + self.total.nbytes


def _unique_weighted(values: FloatArray, counts: IntArray) -> tuple[FloatArray, IntArray]:
    order = np.argsort(values, kind="stable")
    v, c = values[order], counts[order]
    if v.size == 0:
        return v, c
    starts = np.flatnonzero(np.concatenate(([True], v[1:] != v[:-1])))
    return v[starts], np.add.reduceat(c, starts).astype(np.int64)


class Distribution:
    """Sorted distinct ``values`` with ``counts``: the data (exact) or a reconstruction of
    ``cells`` (binned, ``cells`` is not None)."""

    __slots__ = ("_cum", "cells", "counts", "n", "values")

    def __init__(self, values: FloatArray, counts: IntArray, cells: Cells | None = None) -> None:
        if values.size == 0:
            raise ValueError("a distribution needs at least one value")
        self.values = values
        self.counts = counts
        self.cells = cells
        self.n = int(counts.sum())
        self._cum: IntArray | None = None

    @classmethod
    def of(cls, raw: npt.ArrayLike) -> Distribution:
        """The exact distribution of some finite values."""
        values, counts = np.unique(np.asarray(raw, dtype=np.float64), return_counts=True)
        return cls(values, counts.astype(np.int64))

    @classmethod
    def from_cells(cls, cells: Cells) -> Distribution:
        """Extremes of each cell, the rest of its count at the mean of the rest."""
        atom = cells.lo == cells.hi
        if atom.all():
            return cls(cells.lo, cells.count)
        two = ~atom
        rest = two & (cells.count > 2)
        mean = np.clip(
            (cells.total[rest] - cells.lo[rest] - cells.hi[rest]) / (cells.count[rest] - 2),
            cells.lo[rest],
            cells.hi[rest],
        )
        values = np.concatenate([cells.lo[atom], cells.lo[two], cells.hi[two], mean])
        counts = np.concatenate(
            [
                cells.count[atom],
                np.ones(int(two.sum()), dtype=np.int64),
                np.ones(int(two.sum()), dtype=np.int64),
                cells.count[rest] - 2,
            ]
        )
        v, c = _unique_weighted(values, counts)
        return cls(v, c, cells)

    @property
    def exact(self) -> bool:
        return self.cells is None

    @property
    def cum(self) -> IntArray:
        """Values below ``values[i]``: ``cum[i]``; ``cum[-1] == n``."""
        if self._cum is None:
            self._cum = np.concatenate(([0], np.cumsum(self.counts))).astype(np.int64)
        return self._cum

    @property
    def min(self) -> float:
        return float(self.values[0])

    @property
    def max(self) -> float:
        return float(self.values[-1])

    @property
    def n_distinct(self) -> int:
        return int(self.values.size)

    @property
    def nbytes(self) -> int:
        cells = 0 if self.cells is None else self.cells.nbytes
        return self.values.nbytes + self.counts.nbytes + cells

    def contains(self, x: FloatArray) -> npt.NDArray[np.bool_]:
        """Which of the (finite) x are among the values."""
        i = np.minimum(np.searchsorted(self.values, x), self.values.size - 1)
        return np.asarray(self.values[i] == x)

    def count_below(self, x: FloatArray, *, inclusive: bool = False) -> IntArray:
        side: Literal["left", "right"] = "right" if inclusive else "left"
        return self.cum[np.searchsorted(self.values, x, side=side)]

    def std(self) -> float:
        mean = float(np.dot(self.values, self.counts)) / self.n
        return math.sqrt(float(np.dot(np.square(self.values - mean), self.counts)) / self.n)

    def describe(self) -> str:
        if self.cells is None:
            return f"{self.n} values exact"
        return f"{self.n} values in {self.cells.size} cells"

    # -- what the cells allow: counts below a point, distinct values -------------------------

    def count_below_bounds(self, x: FloatArray) -> tuple[IntArray, IntArray]:
        """(fewest, most) values strictly below each x that the cells allow."""
        if self.cells is None:
            exact = self.count_below(x)
            return exact, exact
        cells = self.cells
        cum = np.concatenate(([0], np.cumsum(cells.count))).astype(np.int64)
        certain = cum[np.searchsorted(cells.hi, x, side="left")]  # cells entirely below x
        possible = cum[np.searchsorted(cells.lo, x, side="left")]  # cells starting below x
        return certain, possible

    def known_values(self) -> FloatArray:
        """Values certainly present: every value (exact) or cell extremes (binned)."""
        if self.cells is None:
            return self.values
        return np.unique(np.concatenate([self.cells.lo, self.cells.hi]))

    def unknown_distinct(self) -> int:
        """How many more distinct values there may be beyond :meth:`known_values`."""
        if self.cells is None:
            return 0
        two = self.cells.lo != self.cells.hi
        return int(np.maximum(self.cells.count[two] - 2, 0).sum())


# --- encoding (the registry stores a reference column's distribution as one blob) -----------


_MAGIC = b"WKDIST1\n"


def encode_distribution(distribution: Distribution) -> bytes:
    """A compact deterministic binary form: magic, a JSON header line, little-endian arrays."""
    if distribution.cells is None:
        arrays: list[npt.NDArray[Any]] = [distribution.values]
        counts = distribution.counts
        ones = bool((counts == 1).all())
        if not ones:
            arrays.append(counts)
        header: dict[str, Any] = {"kind": "exact", "size": distribution.n_distinct, "ones": ones}
    else:
        cells = distribution.cells
        arrays = [cells.lo, cells.hi, cells.count, cells.total]
        header = {"kind": "binned", "size": cells.size}
    head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    body = b"".join(
        np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes() for a in arrays
    )
    return _MAGIC + head + body


def decode_distribution(data: bytes) -> Distribution:
    if not data.startswith(_MAGIC):
        raise ValueError("not a distribution")
    end = data.index(b"\n", len(_MAGIC))
    header = json.loads(data[len(_MAGIC) : end])
    size = int(header["size"])
    offset = end + 1

    def take(dtype: str) -> npt.NDArray[Any]:
        nonlocal offset
        array = np.frombuffer(data, dtype=np.dtype(dtype), count=size, offset=offset)
        offset += array.nbytes
        return array.astype(array.dtype.newbyteorder("="))

    if header["kind"] == "exact":
        values = take("<f8")
        counts = np.ones(size, dtype=np.int64) if header["ones"] else take("<i8")
        if offset != len(data):
            raise ValueError("trailing bytes after a distribution")
        return Distribution(values, counts)
    lo, hi, count, total = take("<f8"), take("<f8"), take("<i8"), take("<f8")
    if offset != len(data):
        raise ValueError("trailing bytes after a distribution")
    return Distribution.from_cells(Cells(lo, hi, count, total))


# --- the grid a binned side's cells are cut on ----------------------------------------------


def sturges_edges(low: float, high: float, n: int) -> FloatArray:
    """``np.histogram_bin_edges(data, "sturges")`` for float data of size n with this min and
    max (numpy 2.x ``_get_bin_edges``, operation for operation)."""
    width = (high - low) / (np.log2(n) + 1.0)
    first, last = (low - 0.5, high + 0.5) if low == high else (low, high)
    n_bins = int(np.ceil((last - first) / width)) if width else 1
    edges = np.linspace(first, last, n_bins + 1)
    if np.any(edges[:-1] >= edges[1:]):
        raise ValueError(f"Too many bins for data range. Cannot create {n_bins} finite-sized bins.")
    return edges


def _sturges_candidates(low: float, high: float) -> FloatArray:
    """Every Sturges edge of [low, high], for any number of bins a column can need (Hellinger
    counts distinct values, so down to one bin)."""
    if not low < high:
        return np.empty(0, dtype=np.float64)
    return np.unique(np.concatenate([np.linspace(low, high, k + 1) for k in range(1, 66)]))


class Grid:
    """Cell keys for values: a cell per grid point (values equal to it) and cells of at most
    ``width`` between neighbouring points; beyond the outer points, cells of ``width`` up to
    2^17 widths away, then cells growing geometrically (2^(1/1024) apart).

    The points are reference quantiles plus every Sturges edge of ``[low, high]`` (recomputed,
    not stored: a checkpoint holds the quantiles and three numbers).
    """

    __slots__ = ("_base", "_sub", "high", "low", "points", "quantiles", "width")

    def __init__(self, quantiles: FloatArray, *, low: float, high: float, width: float) -> None:
        self.quantiles = quantiles
        self.low = low
        self.high = high
        self.width = width
        self.points = np.unique(
            np.concatenate([quantiles, _sturges_candidates(low, high), [low, high]])
        )
        gaps = np.diff(self.points)
        with np.errstate(over="ignore"):
            self._sub = np.clip(np.ceil(gaps / width), 1, _MAX_SUBCELLS).astype(np.int64)
        self._base = np.concatenate(([0], np.cumsum(1 + self._sub))).astype(np.int64)

    @classmethod
    def for_reference(
        cls,
        reference: Distribution,
        *,
        std: float,
        low: float | None = None,
        high: float | None = None,
    ) -> Grid:
        """Quantiles of ``reference`` at 1/1024 steps, every Sturges edge a window may use while
        it stays within ``[low, high]`` (default: the reference's extremes), and a lattice of
        ``max(std, 0.001) / 2048``."""
        ranks = np.minimum(
            (np.arange(GRID_QUANTILES + 1) * (reference.n / GRID_QUANTILES)).astype(np.int64),
            reference.n - 1,
        )
        quantiles = reference.values[np.searchsorted(reference.cum[1:], ranks, side="right")]
        return cls(
            np.unique(quantiles),
            low=reference.min if low is None else low,
            high=reference.max if high is None else high,
            width=max(std, 0.001) / LATTICE_PER_STD,
        )

    def same_as(self, other: Grid) -> bool:
        return (self.low, self.high, self.width) == (other.low, other.high, other.width) and (
            np.array_equal(self.quantiles, other.quantiles)
        )

    def to_state(self) -> State:
        return {
            "quantiles": encode_array(self.quantiles),
            "low": self.low,
            "high": self.high,
            "width": self.width,
        }

    @classmethod
    def from_state(cls, state: State) -> Grid:
        return cls(
            decode_array(state["quantiles"]).astype(np.float64),
            low=float(state["low"]),
            high=float(state["high"]),
            width=float(state["width"]),
        )

    def keys(self, x: FloatArray) -> IntArray:
        """A key per value, non-decreasing in the value (so cells are ordered and disjoint)."""
        points, sub, base = self.points, self._sub, self._base
        last = points.size - 1
        keys = np.empty(x.size, dtype=np.int64)
        i = np.searchsorted(points, x, side="right") - 1
        below = i < 0
        above = x > points[-1]
        equal = ~below & (x == points[np.maximum(i, 0)])
        between = ~below & ~above & ~equal
        keys[equal] = base[i[equal]]
        if between.any():
            ii = i[between]
            step = (points[ii + 1] - points[ii]) / sub[ii]
            j = np.floor((x[between] - points[ii]) / step)
            keys[between] = base[ii] + 1 + np.clip(j, 0, sub[ii] - 1).astype(np.int64)
        if below.any():
            keys[below] = -1 - _outside_steps((points[0] - x[below]) / self.width)
        if above.any():
            keys[above] = base[last] + 1 + _outside_steps((x[above] - points[-1]) / self.width)
        return keys


def _outside_steps(t: FloatArray) -> IntArray:
    t = np.minimum(t, 1e300)
    linear = t < _OUTSIDE_LINEAR
    steps = np.empty(t.size, dtype=np.int64)
    steps[linear] = np.floor(t[linear]).astype(np.int64)
    far = t[~linear]
    steps[~linear] = _OUTSIDE_LINEAR + np.floor(np.log2(far / _OUTSIDE_LINEAR) * _LOG_STEPS).astype(
        np.int64
    )
    return steps


# --- a window's values: exact up to a bound, then cells ---------------------------------------


def _aggregate(
    keys: IntArray, count: IntArray, total: FloatArray, lo: FloatArray, hi: FloatArray
) -> tuple[IntArray, IntArray, FloatArray, FloatArray, FloatArray]:
    order = np.argsort(keys, kind="stable")
    keys, count, total, lo, hi = keys[order], count[order], total[order], lo[order], hi[order]
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    return (
        keys[starts],
        np.add.reduceat(count, starts).astype(np.int64),
        np.add.reduceat(total, starts),
        np.minimum.reduceat(lo, starts),
        np.maximum.reduceat(hi, starts),
    )


class ValueStore:
    """The finite values of one column in one window, in bounded memory.

    Raw values are kept until there are ``limit`` of them, then distinct values with counts
    while there are at most ``limit`` distinct ones: up to there the distribution is exact.
    Beyond, values go into cells of ``grid`` (count, sum, min, max per cell): at most
    ``MAX_CELLS`` cells (neighbours merge beyond). Without a grid (no reference values), one is
    cut from the exact values at the moment of binning.
    """

    __slots__ = (
        "_cell_count",
        "_cell_hi",
        "_cell_keys",
        "_cell_lo",
        "_cell_total",
        "_counts",
        "_raw",
        "_values",
        "grid",
        "limit",
        "sampled",
        "seen",
        "shift",
    )

    def __init__(self, *, limit: int = EXACT_WINDOW_VALUES, grid: Grid | None = None) -> None:
        self.limit = limit
        self.grid = grid
        self.seen = 0
        self.shift = 0
        self.sampled = False
        """Holds a sample of part of the window (a checkpoint from before values were kept)."""
        self._raw: list[FloatArray] = []
        self._values: FloatArray = np.empty(0, dtype=np.float64)
        self._counts: IntArray = np.empty(0, dtype=np.int64)
        self._cell_keys: IntArray | None = None
        self._cell_count: IntArray = np.empty(0, dtype=np.int64)
        self._cell_total: FloatArray = np.empty(0, dtype=np.float64)
        self._cell_lo: FloatArray = np.empty(0, dtype=np.float64)
        self._cell_hi: FloatArray = np.empty(0, dtype=np.float64)

    @property
    def binned(self) -> bool:
        return self._cell_keys is not None

    @property
    def exact(self) -> bool:
        return not self.binned

    @property
    def nbytes(self) -> int:
        raw = sum(a.nbytes for a in self._raw)
        cells = 0 if self._cell_keys is None else self._cell_keys.nbytes * 5
        grid = 0 if self.grid is None else self.grid.quantiles.nbytes
        return raw + self._values.nbytes + self._counts.nbytes + cells + grid

    def _n_raw(self) -> int:
        return sum(a.size for a in self._raw)

    def add(self, values: FloatArray) -> None:
        """Finite values only (the accumulator drops NaN and infinities)."""
        if values.size == 0 or self.limit <= 0:
            self.seen += int(values.size)
            return
        self.seen += int(values.size)
        self._raw.append(np.array(values, dtype=np.float64, copy=True))
        if len(self._raw) > 64:
            self._raw = [np.concatenate(self._raw)]
        if self._cell_keys is not None:
            if self._n_raw() >= _PENDING:  # binned: values wait in a buffer, cut in bulk
                self._flush()
            return
        if self._n_raw() + self._values.size > self.limit:
            self._compact()
            if self._values.size > self.limit:
                self._bin()

    def _flush(self) -> None:
        """Binned: the buffered values into their cells."""
        if not self._raw or self._cell_keys is None:
            return
        raw = np.concatenate(self._raw)
        self._raw = []
        self._add_cells(raw, np.ones(raw.size, dtype=np.int64), raw, raw, raw)

    def _compact(self) -> None:
        if not self._raw:
            return
        raw = np.concatenate(self._raw)
        self._raw = []
        values, counts = np.unique(raw, return_counts=True)
        if self._values.size:
            values = np.concatenate([self._values, values])
            counts = np.concatenate([self._counts, counts])
            values, counts = _unique_weighted(values, counts.astype(np.int64))
        self._values, self._counts = values, counts.astype(np.int64)

    def _bin(self) -> None:
        self._compact()
        values, counts = self._values, self._counts
        if self.grid is None:
            own = Distribution(values, counts)
            self.grid = Grid.for_reference(own, std=own.std())
        self._values = np.empty(0, dtype=np.float64)
        self._counts = np.empty(0, dtype=np.int64)
        self._cell_keys = np.empty(0, dtype=np.int64)
        self._add_cells(values, counts, values * counts, values, values)

    def _add_cells(
        self, values: FloatArray, count: IntArray, total: FloatArray, lo: FloatArray, hi: FloatArray
    ) -> None:
        assert self.grid is not None and self._cell_keys is not None
        keys = self.grid.keys(values) >> self.shift
        self._cell_keys, self._cell_count, self._cell_total, self._cell_lo, self._cell_hi = (
            _aggregate(
                np.concatenate([self._cell_keys, keys]),
                np.concatenate([self._cell_count, count]),
                np.concatenate([self._cell_total, total]),
                np.concatenate([self._cell_lo, lo]),
                np.concatenate([self._cell_hi, hi]),
            )
        )
        while self._cell_keys.size > MAX_CELLS:
            self.shift += 1
            self._cell_keys, self._cell_count, self._cell_total, self._cell_lo, self._cell_hi = (
                _aggregate(
                    self._cell_keys >> 1,
                    self._cell_count,
                    self._cell_total,
                    self._cell_lo,
                    self._cell_hi,
                )
            )

    def merge(self, other: ValueStore) -> None:
        self._flush()
        other._flush()
        self.seen += other.seen
        self.sampled = self.sampled or other.sampled
        if other._cell_keys is not None:
            if self._cell_keys is None:
                if self.grid is None:
                    self.grid = other.grid
                self._bin()
            if self.grid is None or other.grid is None or not self.grid.same_as(other.grid):
                raise ValueError("cannot merge values binned on different grids")
            assert self._cell_keys is not None
            while self.shift < other.shift:
                self.shift += 1
                self._cell_keys = self._cell_keys >> 1
            self._add_cells(
                other._cell_lo, other._cell_count, other._cell_total, other._cell_lo, other._cell_hi
            )
            return
        other._compact()
        if other._values.size == 0:
            return
        if self._cell_keys is not None:
            v, c = other._values, other._counts
            self._add_cells(v, c, v * c, v, v)
            return
        self._compact()
        values, counts = _unique_weighted(
            np.concatenate([self._values, other._values]),
            np.concatenate([self._counts, other._counts]),
        )
        self._values, self._counts = values, counts
        if self._values.size > self.limit:
            self._bin()

    def distribution(self) -> Distribution | None:
        """None while empty."""
        self._flush()
        if self._cell_keys is not None:
            if self._cell_keys.size == 0:
                return None
            return Distribution.from_cells(
                Cells(self._cell_lo, self._cell_hi, self._cell_count, self._cell_total)
            )
        self._compact()
        if self._values.size == 0:
            return None
        return Distribution(self._values, self._counts)

    def to_state(self) -> State:
        self._flush()
        state: State = {"limit": self.limit, "seen": self.seen, "shift": self.shift}
        if self.sampled:
            state["sampled"] = True
        state["grid"] = None if self.grid is None else self.grid.to_state()
        if self._cell_keys is not None:
            state["cells"] = {
                "keys": encode_array(self._cell_keys),
                "count": encode_array(self._cell_count),
                "total": encode_array(self._cell_total),
                "lo": encode_array(self._cell_lo),
                "hi": encode_array(self._cell_hi),
            }
            return state
        raw = np.concatenate(self._raw) if self._raw else np.empty(0, dtype=np.float64)
        state["raw"] = encode_array(raw)
        state["values"] = encode_array(self._values)
        state["counts"] = encode_array(self._counts)
        return state

    @classmethod
    def from_state(cls, state: State) -> Self:
        grid = None if state["grid"] is None else Grid.from_state(state["grid"])
        store = cls(limit=int(state["limit"]), grid=grid)
        store.seen = int(state["seen"])
        store.shift = int(state["shift"])
        store.sampled = bool(state.get("sampled", False))
        cells = state.get("cells")
        if cells is not None:
            store._cell_keys = decode_array(cells["keys"]).astype(np.int64)
            store._cell_count = decode_array(cells["count"]).astype(np.int64)
            store._cell_total = decode_array(cells["total"]).astype(np.float64)
            store._cell_lo = decode_array(cells["lo"]).astype(np.float64)
            store._cell_hi = decode_array(cells["hi"]).astype(np.float64)
            return store
        raw = decode_array(state["raw"]).astype(np.float64)
        store._raw = [raw] if raw.size else []
        store._values = decode_array(state["values"]).astype(np.float64)
        store._counts = decode_array(state["counts"]).astype(np.int64)
        return store


# --- drift between a reference and a window -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Drift:
    """A method's value and the largest possible difference from it on the real values
    (0.0 when both sides are exact; ``inf`` when no bound is known)."""

    value: float
    bound: float = 0.0


def _fill_zeros(shares: FloatArray) -> FloatArray:
    """Evidently's guard against log(0): empty bins get a small share."""
    nonzero = shares[shares != 0]
    smallest = float(nonzero.min())
    fill = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return np.where(shares == 0, fill, shares)


def _fill_of(smallest: float) -> float:
    return smallest / 10**6 if smallest <= 0.0001 else 0.0001


def _psi_terms(r: FloatArray, c: FloatArray) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray((r - c) * np.log(r / c), dtype=np.float64)


def _js_terms(p: FloatArray, q: FloatArray) -> FloatArray:
    from scipy.special import rel_entr

    m = (p + q) / 2.0
    return np.asarray((rel_entr(p, m) + rel_entr(q, m)) / 2.0, dtype=np.float64)


def _share_bounds(
    low: IntArray, high: IntArray, n: int, *, fill: bool
) -> tuple[FloatArray, FloatArray]:
    """Intervals of each bin's share from count intervals (with Evidently's zero filling)."""
    lo_s = low / n
    hi_s = high / n
    if not fill:
        return lo_s, hi_s
    maybe_nonzero = high > 0
    certain_nonzero = low > 0
    smallest_lo = float(np.maximum(low, 1)[maybe_nonzero].min() / n)
    smallest_hi = float(high[certain_nonzero].min() / n) if certain_nonzero.any() else 1.0
    fill_lo, fill_hi = _fill_of(smallest_lo), _fill_of(smallest_hi)
    zero = high == 0
    maybe_zero = (low == 0) & ~zero
    lo_s = np.where(zero, fill_lo, np.where(maybe_zero, min(fill_lo, 1.0 / n), lo_s))
    hi_s = np.where(zero, fill_hi, np.where(maybe_zero, np.maximum(fill_hi, hi_s), hi_s))
    return lo_s, hi_s


def _box_range(
    terms: Any, r_lo: FloatArray, r_hi: FloatArray, c_lo: FloatArray, c_hi: FloatArray
) -> tuple[float, float]:
    """Range of sum_i terms(r_i, c_i) over the box, for terms jointly convex, zero on r == c
    and growing away from it (PSI's and Jensen-Shannon's)."""
    corners = np.stack([terms(r_lo, c_lo), terms(r_lo, c_hi), terms(r_hi, c_lo), terms(r_hi, c_hi)])
    high = float(np.nansum(np.max(corners, axis=0)))
    overlap = (r_lo <= c_hi) & (c_lo <= r_hi)
    nearest = np.where(r_lo > c_hi, terms(r_lo, c_hi), terms(r_hi, c_lo))
    low = float(np.nansum(np.where(overlap, 0.0, nearest)))
    return low, high


def _bin_counts(d: Distribution, edges: FloatArray) -> IntArray:
    """``np.histogram(data, edges)[0]`` (last bin closed; every value within the edges)."""
    below = d.count_below(edges[:-1])
    return np.diff(np.append(below, d.n)).astype(np.int64)


def _bin_count_bounds(d: Distribution, edges: FloatArray) -> tuple[IntArray, IntArray]:
    certain, possible = d.count_below_bounds(edges[1:-1])
    below_lo = np.concatenate(([0], certain, [d.n]))
    below_hi = np.concatenate(([0], possible, [d.n]))
    low = np.maximum(below_lo[1:] - below_hi[:-1], 0)
    high = below_hi[1:] - below_lo[:-1]
    return low.astype(np.int64), high.astype(np.int64)


def psi_js_drift(reference: Distribution, current: Distribution, *, psi: bool) -> Drift:
    """Evidently's ``get_binned_data`` then PSI (zero-filled) or Jensen-Shannon distance."""
    from scipy.spatial import distance

    if reference.n_distinct <= LOW_CARDINALITY and reference.exact:
        # With a binned window the per-value keys are those of its reconstruction: the values
        # the cells do not know make it unbounded (docs/evaluator.md).
        keys = np.union1d(reference.values, current.values)
        ref = np.zeros(keys.size, dtype=np.int64)
        cur = np.zeros(keys.size, dtype=np.int64)
        ref[np.searchsorted(keys, reference.values)] = reference.counts
        cur[np.searchsorted(keys, current.values)] = current.counts
        r, c = ref / reference.n, cur / current.n
        if psi:
            value = float(np.sum(_psi_terms(_fill_zeros(r), _fill_zeros(c))))
        else:
            value = float(distance.jensenshannon(r, c))
        return Drift(value, 0.0 if current.exact else math.inf)
    edges = sturges_edges(
        min(reference.min, current.min), max(reference.max, current.max), reference.n + current.n
    )
    r = _bin_counts(reference, edges) / reference.n
    c = _bin_counts(current, edges) / current.n
    if psi:
        value = float(np.sum(_psi_terms(_fill_zeros(r), _fill_zeros(c))))
    else:
        value = float(distance.jensenshannon(r, c))
    if reference.exact and current.exact:
        return Drift(value)
    r_lo, r_hi = _share_bounds(*_bin_count_bounds(reference, edges), reference.n, fill=psi)
    c_lo, c_hi = _share_bounds(*_bin_count_bounds(current, edges), current.n, fill=psi)
    low, high = _box_range(_psi_terms if psi else _js_terms, r_lo, r_hi, c_lo, c_hi)
    if not psi:
        low, high = math.sqrt(max(low, 0.0)), math.sqrt(max(high, 0.0))
    return Drift(value, max(high - value, value - low, 0.0))


def _union_distinct(reference: Distribution, current: Distribution) -> tuple[int, int, int]:
    """(fewest, estimate, most) distinct values of both columns together."""
    if reference.exact and current.exact:
        n = reference.n_distinct + int(np.count_nonzero(~reference.contains(current.values)))
        return n, n, n
    known = int(np.union1d(reference.known_values(), current.known_values()).size)
    most = known + reference.unknown_distinct() + current.unknown_distinct()
    return known, most, most


def _hellinger_on(
    reference: Distribution, current: Distribution, edges: FloatArray
) -> tuple[float, float, float]:
    """(value on the reconstruction, lowest, highest) of Evidently's numeric Hellinger."""
    db = np.array(np.diff(edges), float)
    ref_n = _bin_counts(reference, edges)
    cur_n = _bin_counts(current, edges)
    h1 = ref_n / db / ref_n.sum()
    h2 = cur_n / db / cur_n.sum()
    bin_width = (float(np.max(edges)) - float(np.min(edges))) / (len(edges) - 1)
    total = 0.0
    for p1, p2 in zip(h1.tolist(), h2.tolist(), strict=True):
        total += math.sqrt(float(p1) * float(p2)) * bin_width
    value = math.sqrt(1 - float(np.clip(total, 0, 1)))
    if reference.exact and current.exact:
        return value, value, value
    r_lo, r_hi = _bin_count_bounds(reference, edges)
    c_lo, c_hi = _bin_count_bounds(current, edges)
    bc_lo = float(np.sum(np.sqrt((r_lo / reference.n) * (c_lo / current.n))))
    bc_hi = float(np.sum(np.sqrt((r_hi / reference.n) * (c_hi / current.n))))
    return (
        value,
        math.sqrt(1 - float(np.clip(bc_hi, 0, 1))),
        math.sqrt(1 - float(np.clip(bc_lo, 0, 1))),
    )


def hellinger_drift(reference: Distribution, current: Distribution) -> Drift:
    """Evidently's numeric Hellinger: density histograms on Sturges bins of the distinct
    values of both columns."""
    low_keys, estimate, high_keys = _union_distinct(reference, current)
    lo, hi = min(reference.min, current.min), max(reference.max, current.max)
    value, low, high = _hellinger_on(reference, current, sturges_edges(lo, hi, estimate))
    if low_keys == high_keys:
        return Drift(value, max(high - value, value - low, 0.0))
    seen: set[int] = set()
    for n in _powers_between(low_keys, high_keys):
        edges = sturges_edges(lo, hi, n)
        if edges.size in seen:
            continue
        seen.add(edges.size)
        _, other_low, other_high = _hellinger_on(reference, current, edges)
        low, high = min(low, other_low), max(high, other_high)
    return Drift(value, max(high - value, value - low, 0.0))


def _powers_between(low: int, high: int) -> list[int]:
    points = {low, high}
    k = 1
    while k <= 2 * high:
        for m in (k - 1, k, k + 1):
            if low <= m <= high:
                points.add(m)
        k *= 2
    return sorted(points)


def _ks_d(reference: Distribution, current: Distribution) -> float:
    """scipy's two-sided D: its cdf differences at every value are maximal and minimal at the
    current values and just below them (same integers, same divisions)."""
    n1, n2 = reference.n, current.n
    right = reference.count_below(current.values, inclusive=True) / n1 - current.cum[1:] / n2
    left = reference.count_below(current.values) / n1 - current.cum[:-1] / n2
    diffs = np.concatenate([right, left, [n1 / n1 - n2 / n2]])
    min_s = float(np.clip(-diffs.min(), 0, 1))
    max_s = float(diffs.max())
    return min_s if min_s > max_s else max_s


def _ks_pvalue(d: float, reference: Distribution, current: Distribution) -> float:
    from scipy import stats

    n1, n2 = reference.n, current.n
    if max(n1, n2) <= _KS_EXACT_MAX_N:
        return float(
            stats.ks_2samp(
                np.repeat(reference.values, reference.counts),
                np.repeat(current.values, current.counts),
            ).pvalue
        )
    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = m * n / (m + n)
    return float(np.clip(stats.distributions.kstwo.sf(d, np.round(en)), 0, 1))


def _mass_inside(d: Distribution, lo: FloatArray, hi: FloatArray) -> FloatArray:
    """Largest share of ``d`` strictly between each lo and hi."""
    if d.cells is None:
        inside = d.count_below(hi) - d.count_below(lo, inclusive=True)
    else:
        cells = d.cells
        cum = np.concatenate(([0], np.cumsum(cells.count))).astype(np.int64)
        # cells reaching above lo and starting below hi may hold values in between
        first = np.searchsorted(cells.hi, lo, side="right")
        last = np.searchsorted(cells.lo, hi, side="left")
        inside = cum[np.maximum(last, first)] - cum[first]
    return np.asarray(inside / d.n, dtype=np.float64)


def _open_cells(d: Distribution) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """(lo, hi, share, share below) of the cells holding more than one value."""
    if d.cells is None:
        empty = np.empty(0, dtype=np.float64)
        return empty, empty, empty, empty
    cells = d.cells
    before = np.concatenate(([0], np.cumsum(cells.count)[:-1])) / d.n
    two = cells.lo != cells.hi
    return cells.lo[two], cells.hi[two], cells.count[two] / d.n, before[two]


def ks_drift(reference: Distribution, current: Distribution) -> tuple[Drift, float]:
    """(p-value, bound on the statistic D) and D itself."""
    d = _ks_d(reference, current)
    p = _ks_pvalue(d, reference, current)
    bound = 0.0
    for side, other in ((current, reference), (reference, current)):
        lo, hi, _, _ = _open_cells(side)
        if lo.size:
            bound += float(_mass_inside(other, lo, hi).max())
    return Drift(p, bound), d


def _cdf_bounds(
    d: Distribution, x: FloatArray, *, inclusive: bool
) -> tuple[FloatArray, FloatArray]:
    if d.cells is None:
        exact = d.count_below(x, inclusive=inclusive) / d.n
        return exact, exact
    cells = d.cells
    cum = np.concatenate(([0], np.cumsum(cells.count))).astype(np.int64)
    side: Literal["left", "right"] = "right" if inclusive else "left"
    certain = cum[np.searchsorted(cells.hi, x, side=side)]
    possible = cum[np.searchsorted(cells.lo, x, side=side)]
    return certain / d.n, possible / d.n


def _crossing_error(side: Distribution, other: Distribution) -> float:
    """Sum of share * width over ``side``'s cells where ``other``'s CDF may cross its own."""
    lo, hi, share, before = _open_cells(side)
    if lo.size == 0:
        return 0.0
    _, other_below_hi = _cdf_bounds(other, hi, inclusive=False)
    other_at_lo, _ = _cdf_bounds(other, lo, inclusive=True)
    clear = (other_below_hi <= before) | (other_at_lo >= before + share)
    return float(np.sum(np.where(clear, 0.0, share * (hi - lo))))


def _wasserstein_merged(reference: Distribution, current: Distribution) -> float:
    """scipy's sum of |F_ref - F_cur| * gap over every value of both, in one merge."""
    values = np.concatenate([reference.values, current.values])
    order = np.argsort(values, kind="stable")
    ref_weight = np.concatenate([reference.counts, np.zeros(current.values.size, np.int64)])
    cur_weight = np.concatenate([np.zeros(reference.values.size, np.int64), current.counts])
    deltas = np.diff(values[order])
    u_cdf = np.cumsum(ref_weight[order])[:-1] / reference.n
    v_cdf = np.cumsum(cur_weight[order])[:-1] / current.n
    return float(np.sum(np.abs(u_cdf - v_cdf) * deltas))  # no BLAS threads to wake


def wasserstein_drift(reference: Distribution, current: Distribution, *, std: float) -> Drift:
    """scipy's ``wasserstein_distance`` over Evidently's norm ``max(std, 0.001)``: the same
    integral of |F_ref - F_cur| between every value of both columns, in one merge."""
    norm = max(std, 0.001)
    value = _wasserstein_merged(reference, current) / norm
    if reference.exact and current.exact:
        return Drift(value)
    error = _crossing_error(current, reference) + _crossing_error(reference, current)
    return Drift(value, error / norm)
