"""Per-window accumulators whose memory does not grow with the number of events.

Each accumulator takes whole batches as numpy arrays (``update``), combines with another of the
same configuration (``merge``, e.g. two partitions or two sub-windows), and checkpoints to plain
JSON (``to_state`` / ``from_state``) so a window survives a restart.

Where an exact answer would need every raw value, the accumulator keeps a bounded structure
and says so:

* ``NumericAccumulator`` keeps a drift column's values exactly up to ``EXACT_WINDOW_VALUES``
  distinct values (raw values, then distinct values with counts), then in cells of a grid cut
  from the reference (``shared.stats.distribution.ValueStore``): drift is Evidently's number
  exactly up to there, within a computed bound beyond.
* ``ConfusionAccumulator`` keeps the exact (score, label) pairs for ROC AUC up to
  ``exact_scores`` pairs, then only a fixed fine histogram of scores per label (see
  ``performance.roc_auc`` for the resulting error bound). Log loss, Brier and calibration
  error are exact sums and never approximate.
* ``QuantileSketch`` is a DDSketch-style log histogram with a fixed relative accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Self

import numpy as np
import numpy.typing as npt

from ._common import (
    FloatArray,
    IntArray,
    Scalar,
    State,
    as_float_array,
    category_key,
    category_keys,
    combine_moments,
    decode_array,
    encode_array,
    rng_from_state,
    rng_state,
)
from ._error_moments import ErrorMoments
from .distribution import EXACT_WINDOW_VALUES, Distribution, Grid, ValueStore
from .reference import (
    DEFAULT_SAMPLE_SIZE,
    CategoricalReference,
    NumericReference,
    bin_index,
)

__all__ = [
    "CategoricalAccumulator",
    "ConfusionAccumulator",
    "ExpectedConfusionAccumulator",
    "FairnessAccumulator",
    "NumericAccumulator",
    "OperationsAccumulator",
    "QuantileSketch",
    "RegressionAccumulator",
    "Reservoir",
]


def _nbytes(*arrays: npt.NDArray[np.generic] | None) -> int:
    return sum(a.nbytes for a in arrays if a is not None)


class Reservoir:
    """A uniform sample of at most ``capacity`` values from a stream, mergeable.

    Bottom-k sampling: each value draws a uniform key and the ``capacity`` smallest keys stay.
    The draw does not depend on how the stream is cut into batches. ``merge`` draws how many
    values come from each side hypergeometrically and re-keys the result with the distribution
    of the k smallest of n uniform keys, so the merged sample is a uniform sample of the union
    (and keeps sampling correctly) whatever seeds the two sides used.
    """

    __slots__ = ("_keys", "_rng", "_threshold", "_values", "capacity", "seen")

    def __init__(self, capacity: int = DEFAULT_SAMPLE_SIZE, *, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self.seen = 0
        self._values: FloatArray = np.empty(0, dtype=np.float64)
        self._keys: FloatArray = np.empty(0, dtype=np.float64)
        self._threshold = math.inf
        self._rng = np.random.default_rng(seed)

    @property
    def values(self) -> FloatArray:
        return self._values

    @property
    def complete(self) -> bool:
        """True while the sample holds every value seen (then results on it are exact)."""
        return self._values.size == self.seen

    @property
    def nbytes(self) -> int:
        return _nbytes(self._values, self._keys)

    def add(self, values: FloatArray) -> None:
        if values.size == 0:
            return
        self.seen += values.size
        keys = self._rng.random(values.size)
        if self._values.size >= self.capacity:
            wanted = keys < self._threshold
            if not wanted.any():
                return
            values, keys = values[wanted], keys[wanted]
        self._keep(np.concatenate([self._values, values]), np.concatenate([self._keys, keys]))

    def _keep(self, values: FloatArray, keys: FloatArray) -> None:
        if values.size > self.capacity:
            smallest = np.argpartition(keys, self.capacity - 1)[: self.capacity]
            values, keys = values[smallest], keys[smallest]
        self._values, self._keys = values, keys
        self._threshold = float(keys.max()) if keys.size >= self.capacity else math.inf

    def merge(self, other: Reservoir) -> None:
        if other.capacity != self.capacity:
            raise ValueError("cannot merge reservoirs of different capacity")
        if other.seen == 0:
            return
        total = self.seen + other.seen
        if total <= self.capacity:
            # Both sides hold everything they saw: so does the union. Fresh keys (not the
            # sides' own, which may come from equal seeds) keep later draws independent.
            values = np.concatenate([self._values, other._values])
            self.seen = total
            self._keep(values, self._rng.random(values.size))
            return
        k = self.capacity
        from_self = int(self._rng.hypergeometric(self.seen, other.seen, k))
        pick_self = self._rng.choice(self._values.size, size=from_self, replace=False)
        pick_other = self._rng.choice(other._values.size, size=k - from_self, replace=False)
        values = np.concatenate([self._values[pick_self], other._values[pick_other]])
        # The k smallest of `total` uniform keys: the largest is Beta(k, total - k + 1), the
        # others i.i.d. uniform below it, in random order.
        largest = float(self._rng.beta(k, total - k + 1))
        keys = self._rng.random(k) * largest
        keys[int(self._rng.integers(k))] = largest
        self.seen = total
        self._keep(values, keys)

    def to_state(self) -> State:
        return {
            "capacity": self.capacity,
            "seen": self.seen,
            "values": encode_array(self._values),
            "keys": encode_array(self._keys),
            "rng": rng_state(self._rng),
        }

    @classmethod
    def from_state(cls, state: State) -> Reservoir:
        reservoir = cls(int(state["capacity"]))
        reservoir.seen = int(state["seen"])
        reservoir._rng = rng_from_state(state["rng"])
        reservoir._keep(decode_array(state["values"]), decode_array(state["keys"]))
        return reservoir


class NumericAccumulator:
    """One numeric column in one window: bins, moments, range checks and (for drift) its values.

    NaN, None and +/-inf count as missing (Evidently drops them before any drift test too).
    ``exact_limit`` distinct values are kept exactly (0: none, for columns no drift objective
    reads), cells of ``grid`` beyond.
    """

    def __init__(
        self,
        *,
        cut_points: npt.ArrayLike = (),
        lower: float | None = None,
        upper: float | None = None,
        exact_limit: int = EXACT_WINDOW_VALUES,
        grid: Grid | None = None,
    ) -> None:
        self.cut_points: FloatArray = as_float_array(cut_points).copy()
        if np.any(np.diff(self.cut_points) <= 0):
            raise ValueError("cut points must be strictly increasing")
        self.lower = lower
        self.upper = upper
        self.count = 0
        self.missing = 0
        self.out_of_range = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.bin_counts: IntArray = np.zeros(self.cut_points.size + 1, dtype=np.int64)
        self.values = ValueStore(limit=exact_limit, grid=grid)

    @classmethod
    def for_reference(
        cls,
        reference: NumericReference,
        *,
        lower: float | None = None,
        upper: float | None = None,
        exact_limit: int = EXACT_WINDOW_VALUES,
    ) -> Self:
        """Counts on the reference's bins; values binned beyond the exact bound on the
        reference's grid. ``lower``/``upper`` (usually the registered feature's min/max) bound
        the valid range."""
        return cls(
            cut_points=reference.cut_points,
            lower=lower,
            upper=upper,
            exact_limit=exact_limit,
            grid=reference.grid() if exact_limit > 0 else None,
        )

    @property
    def total(self) -> int:
        return self.count + self.missing

    @property
    def variance(self) -> float:
        """Population variance (ddof=0)."""
        return self.m2 / self.count if self.count else math.nan

    @property
    def std(self) -> float:
        return math.sqrt(self.variance) if self.count else math.nan

    @property
    def exact(self) -> bool:
        """The values are all kept (drift on them is Evidently's number exactly)."""
        return self.values.exact and self.values.limit > 0 and not self.values.sampled

    def distribution(self) -> Distribution | None:
        """The window's values (exact or binned); None when empty or not kept."""
        return self.values.distribution()

    @property
    def nbytes(self) -> int:
        return _nbytes(self.cut_points, self.bin_counts) + self.values.nbytes

    def update(self, values: npt.ArrayLike) -> None:
        raw = as_float_array(values)
        finite = np.isfinite(raw)
        x = raw[finite] if not finite.all() else raw
        self.missing += int(raw.size - x.size)
        if x.size == 0:
            return
        self.bin_counts += np.bincount(
            bin_index(self.cut_points, x), minlength=self.bin_counts.size
        )
        batch_mean = float(x.mean())
        batch_m2 = float(np.square(x - batch_mean).sum())
        self.count, self.mean, self.m2 = combine_moments(
            self.count, self.mean, self.m2, int(x.size), batch_mean, batch_m2
        )
        self.min = min(self.min, float(x.min()))
        self.max = max(self.max, float(x.max()))
        if self.lower is not None:
            self.out_of_range += int(np.count_nonzero(x < self.lower))
        if self.upper is not None:
            self.out_of_range += int(np.count_nonzero(x > self.upper))
        self.values.add(x)

    def _check_compatible(self, other: NumericAccumulator) -> None:
        if not np.array_equal(self.cut_points, other.cut_points):
            raise ValueError("cannot merge numeric accumulators with different bins")
        if (self.lower, self.upper) != (other.lower, other.upper):
            raise ValueError("cannot merge numeric accumulators with different valid ranges")

    def merge(self, other: NumericAccumulator) -> None:
        self._check_compatible(other)
        self.count, self.mean, self.m2 = combine_moments(
            self.count, self.mean, self.m2, other.count, other.mean, other.m2
        )
        self.missing += other.missing
        self.out_of_range += other.out_of_range
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.bin_counts = self.bin_counts + other.bin_counts
        self.values.merge(other.values)

    def to_state(self) -> State:
        return {
            "cut_points": encode_array(self.cut_points),
            "lower": self.lower,
            "upper": self.upper,
            "count": self.count,
            "missing": self.missing,
            "out_of_range": self.out_of_range,
            "mean": self.mean,
            "m2": self.m2,
            "min": None if self.count == 0 else self.min,
            "max": None if self.count == 0 else self.max,
            "bin_counts": encode_array(self.bin_counts),
            "values": self.values.to_state(),
        }

    @classmethod
    def from_state(cls, state: State) -> Self:
        acc = cls(
            cut_points=decode_array(state["cut_points"]),
            lower=state["lower"],
            upper=state["upper"],
        )
        acc.count = int(state["count"])
        acc.missing = int(state["missing"])
        acc.out_of_range = int(state["out_of_range"])
        acc.mean = float(state["mean"])
        acc.m2 = float(state["m2"])
        acc.min = math.inf if state["min"] is None else float(state["min"])
        acc.max = -math.inf if state["max"] is None else float(state["max"])
        acc.bin_counts = decode_array(state["bin_counts"]).astype(np.int64)
        if "values" in state:
            acc.values = ValueStore.from_state(state["values"])
        else:  # a checkpoint from before values were kept: its 5,000-value reservoir
            reservoir = state["reservoir"]
            sample = decode_array(reservoir["values"]).astype(np.float64)
            keep = int(reservoir["capacity"]) > 1  # capacity 1: no drift objective read it
            acc.values = ValueStore(limit=EXACT_WINDOW_VALUES if keep else 0)
            acc.values.add(sample)
            acc.values.seen = int(reservoir["seen"])
            acc.values.sampled = acc.values.seen > sample.size
        return acc


OVERFLOW_CATEGORY = "\x00overflow"
"""Key under which categories beyond ``max_categories`` are counted together."""


class CategoricalAccumulator:
    """One categorical (or boolean) column in one window: counts per category key.

    At most ``max_categories`` distinct keys are kept; further new keys are counted together
    under ``OVERFLOW_CATEGORY`` so an id-like column cannot grow the window without bound.
    ``unseen`` counts values outside ``categories`` (the registered or reference domain) and is
    exact even for overflowed values.
    """

    def __init__(
        self, *, categories: Iterable[str] | None = None, max_categories: int = 1_000
    ) -> None:
        self.categories: frozenset[str] | None = (
            None if categories is None else frozenset(categories)
        )
        self._known: npt.NDArray[np.str_] | None = (
            None if self.categories is None else np.asarray(sorted(self.categories), dtype=np.str_)
        )
        self.max_categories = max_categories
        self.counts: dict[str, int] = {}
        self.count = 0
        self.missing = 0
        self.unseen = 0

    @classmethod
    def for_reference(
        cls,
        reference: CategoricalReference,
        *,
        categories: Iterable[str] | None = None,
        max_categories: int = 1_000,
    ) -> Self:
        """``categories`` (the registered domain) defaults to the reference's categories."""
        domain = reference.categories if categories is None else categories
        return cls(categories=domain, max_categories=max_categories)

    @property
    def total(self) -> int:
        return self.count + self.missing

    @property
    def overflow(self) -> int:
        return self.counts.get(OVERFLOW_CATEGORY, 0)

    @property
    def nbytes(self) -> int:
        return sum(len(k) + 8 for k in self.counts)

    def update(self, values: npt.ArrayLike) -> None:
        keys, missing = category_keys(values)
        n_missing = int(missing.sum())
        self.missing += n_missing
        present = keys[~missing] if n_missing else keys
        if present.size == 0:
            return
        self.count += int(present.size)
        uniques, counts = np.unique(present, return_counts=True)
        self._count(uniques, counts)

    def update_coded(
        self,
        codes: npt.NDArray[np.int64],
        keys: npt.NDArray[np.str_],
        missing: npt.NDArray[np.bool_],
    ) -> None:
        """``update`` of values given as ``codes`` into a list of distinct values (-1: null)
        whose ``category_keys`` are ``keys`` and ``missing``: the same counts, computed per
        distinct value instead of per row."""
        per_value = np.bincount(codes + 1, minlength=keys.size + 1)
        null, per_value = int(per_value[0]), per_value[1:]
        self.missing += null + int(per_value[missing].sum())
        chosen = (per_value > 0) & ~missing
        if not chosen.any():
            return
        uniques, inverse = np.unique(keys[chosen], return_inverse=True)
        counts = np.zeros(uniques.size, dtype=np.int64)
        np.add.at(counts, inverse, per_value[chosen])
        self.count += int(counts.sum())
        self._count(uniques, counts)

    def _count(self, uniques: npt.NDArray[np.str_], counts: npt.NDArray[np.int64]) -> None:
        if self._known is not None:
            self.unseen += int(counts[~np.isin(uniques, self._known)].sum())
        self._add(uniques.tolist(), counts.tolist())

    def _add(self, keys: list[str], counts: list[int]) -> None:
        for key, n in zip(keys, counts, strict=True):
            if key in self.counts:
                self.counts[key] += n
            elif len(self.counts) < self.max_categories or key == OVERFLOW_CATEGORY:
                self.counts[key] = n
            else:
                self.counts[OVERFLOW_CATEGORY] = self.counts.get(OVERFLOW_CATEGORY, 0) + n

    def merge(self, other: CategoricalAccumulator) -> None:
        if self.categories != other.categories:
            raise ValueError("cannot merge categorical accumulators with different domains")
        self.count += other.count
        self.missing += other.missing
        self.unseen += other.unseen
        self._add(list(other.counts), list(other.counts.values()))

    def to_state(self) -> State:
        return {
            "categories": None if self.categories is None else sorted(self.categories),
            "max_categories": self.max_categories,
            "counts": dict(self.counts),
            "count": self.count,
            "missing": self.missing,
            "unseen": self.unseen,
        }

    @classmethod
    def from_state(cls, state: State) -> Self:
        acc = cls(categories=state["categories"], max_categories=int(state["max_categories"]))
        acc.counts = {str(k): int(v) for k, v in state["counts"].items()}
        acc.count = int(state["count"])
        acc.missing = int(state["missing"])
        acc.unseen = int(state["unseen"])
        return acc


def _pair_counts(
    first: npt.NDArray[np.str_], second: npt.NDArray[np.str_]
) -> list[tuple[str, str, int]]:
    """Counts of each distinct (first, second) pair, vectorised via codes and bincount."""
    u1, i1 = np.unique(first, return_inverse=True)
    u2, i2 = np.unique(second, return_inverse=True)
    cells = np.bincount(i1 * u2.size + i2, minlength=u1.size * u2.size)
    nonzero = np.flatnonzero(cells)
    return [(str(u1[c // u2.size]), str(u2[c % u2.size]), int(cells[c])) for c in nonzero.tolist()]


class ConfusionAccumulator:
    """Labelled classification outcomes: counts per (actual, predicted) and score statistics.

    Labels are category keys (strings). With a ``positive_label`` and probability scores of the
    positive class, it also keeps the exact sums behind log loss and Brier score, the per-bin
    sums behind expected calibration error (``calibration_bins`` equal-width bins, as
    scikit-learn's ``calibration_curve``), and what ROC AUC needs: the exact (score, label)
    pairs while there are at most ``exact_scores`` of them, and always a histogram of scores
    per label on ``score_bins`` equal-width bins.
    """

    def __init__(
        self,
        *,
        positive_label: Scalar | None = None,
        score_bins: int = 10_000,
        exact_scores: int = 10_000,
        calibration_bins: int = 10,
    ) -> None:
        self.positive_label = None if positive_label is None else category_key(positive_label)
        self.score_bins = score_bins
        self.exact_scores = exact_scores
        self.calibration_bins = calibration_bins
        self.counts: dict[tuple[str, str], int] = {}
        self.n = 0
        self.n_scored = 0
        self.log_loss_sum = 0.0
        self.brier_sum = 0.0
        self.positive_hist: IntArray = np.zeros(score_bins, dtype=np.int64)
        self.negative_hist: IntArray = np.zeros(score_bins, dtype=np.int64)
        self.calibration_count: IntArray = np.zeros(calibration_bins, dtype=np.int64)
        self.calibration_score_sum: FloatArray = np.zeros(calibration_bins, dtype=np.float64)
        self.calibration_positive: IntArray = np.zeros(calibration_bins, dtype=np.int64)
        self._scores: FloatArray | None = np.empty(0, dtype=np.float64)
        self._labels: npt.NDArray[np.bool_] | None = np.empty(0, dtype=np.bool_)

    @property
    def labels(self) -> list[str]:
        """Sorted union of actual and predicted labels seen."""
        return sorted({a for a, _ in self.counts} | {p for _, p in self.counts})

    def matrix(self, labels: list[str] | None = None) -> IntArray:
        """Confusion matrix, rows = actual, columns = predicted, in ``labels`` order."""
        labels = self.labels if labels is None else labels
        index = {label: i for i, label in enumerate(labels)}
        matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
        for (actual, predicted), n in self.counts.items():
            if actual in index and predicted in index:
                matrix[index[actual], index[predicted]] += n
        return matrix

    def exact_pairs(self) -> tuple[FloatArray, npt.NDArray[np.bool_]] | None:
        """Every (score, is_positive) pair, while no more than ``exact_scores`` were seen."""
        if self._scores is None or self._labels is None:
            return None
        return self._scores, self._labels

    @property
    def nbytes(self) -> int:
        return _nbytes(
            self.positive_hist,
            self.negative_hist,
            self.calibration_count,
            self.calibration_score_sum,
            self.calibration_positive,
            self._scores,
            self._labels,
        ) + 16 * len(self.counts)

    def update(
        self, actual: npt.ArrayLike, predicted: npt.ArrayLike, scores: npt.ArrayLike | None = None
    ) -> None:
        """``scores``: probability of ``positive_label`` per row (NaN where unknown)."""
        self.update_keys(category_keys(actual), category_keys(predicted), scores)

    def update_keys(
        self,
        actual: tuple[npt.NDArray[np.str_], npt.NDArray[np.bool_]],
        predicted: tuple[npt.NDArray[np.str_], npt.NDArray[np.bool_]],
        scores: npt.ArrayLike | None = None,
    ) -> None:
        """``update`` with the values' ``category_keys`` (keys, missing) computed already."""
        actual_keys, actual_missing = actual
        predicted_keys, predicted_missing = predicted
        if actual_keys.shape != predicted_keys.shape:
            raise ValueError("actual and predicted differ in length")
        valid = ~(actual_missing | predicted_missing)
        actual_keys, predicted_keys = actual_keys[valid], predicted_keys[valid]
        self.n += int(actual_keys.size)
        for a, p, n in _pair_counts(actual_keys, predicted_keys):
            self.counts[(a, p)] = self.counts.get((a, p), 0) + n
        if scores is None:
            return
        if self.positive_label is None:
            raise ValueError("scores need a positive_label")
        probabilities = as_float_array(scores)
        if probabilities.shape != valid.shape:
            raise ValueError("scores and actual differ in length")
        probabilities = probabilities[valid]
        scored = np.isfinite(probabilities)
        self._add_scores(probabilities[scored], actual_keys[scored] == self.positive_label)

    def _add_scores(self, p: FloatArray, y: npt.NDArray[np.bool_]) -> None:
        if p.size == 0:
            return
        if np.any((p < 0.0) | (p > 1.0)):
            raise ValueError("scores must be probabilities in [0, 1]")
        self.n_scored += int(p.size)
        eps = float(np.finfo(np.float64).eps)
        p_true = np.where(y, p, 1.0 - p)
        self.log_loss_sum += float(-np.log(np.clip(p_true, eps, 1.0 - eps)).sum())
        self.brier_sum += float(np.square(y - p).sum())
        fine = np.minimum((p * self.score_bins).astype(np.int64), self.score_bins - 1)
        self.positive_hist += np.bincount(fine[y], minlength=self.score_bins)
        self.negative_hist += np.bincount(fine[~y], minlength=self.score_bins)
        edges = np.linspace(0.0, 1.0, self.calibration_bins + 1)
        coarse = np.searchsorted(edges[1:-1], p)
        self.calibration_count += np.bincount(coarse, minlength=self.calibration_bins)
        self.calibration_score_sum += np.bincount(
            coarse, weights=p, minlength=self.calibration_bins
        )
        self.calibration_positive += np.bincount(coarse[y], minlength=self.calibration_bins)
        self._add_exact(p, y)

    def _add_exact(self, p: FloatArray, y: npt.NDArray[np.bool_]) -> None:
        if self._scores is None or self._labels is None:
            return
        if self._scores.size + p.size > self.exact_scores:
            self._scores = self._labels = None
            return
        self._scores = np.concatenate([self._scores, p])
        self._labels = np.concatenate([self._labels, y])

    def _check_compatible(self, other: ConfusionAccumulator) -> None:
        mine = (self.positive_label, self.score_bins, self.exact_scores, self.calibration_bins)
        theirs = (
            other.positive_label,
            other.score_bins,
            other.exact_scores,
            other.calibration_bins,
        )
        if mine != theirs:
            raise ValueError("cannot merge confusion accumulators configured differently")

    def merge(self, other: ConfusionAccumulator) -> None:
        self._check_compatible(other)
        for key, n in other.counts.items():
            self.counts[key] = self.counts.get(key, 0) + n
        self.n += other.n
        self.n_scored += other.n_scored
        self.log_loss_sum += other.log_loss_sum
        self.brier_sum += other.brier_sum
        self.positive_hist = self.positive_hist + other.positive_hist
        self.negative_hist = self.negative_hist + other.negative_hist
        self.calibration_count = self.calibration_count + other.calibration_count
        self.calibration_score_sum = self.calibration_score_sum + other.calibration_score_sum
        self.calibration_positive = self.calibration_positive + other.calibration_positive
        pairs = other.exact_pairs()
        if pairs is None:
            self._scores = self._labels = None
        else:
            self._add_exact(*pairs)

    def to_state(self) -> State:
        pairs = self.exact_pairs()
        return {
            "positive_label": self.positive_label,
            "score_bins": self.score_bins,
            "exact_scores": self.exact_scores,
            "calibration_bins": self.calibration_bins,
            "counts": [[a, p, n] for (a, p), n in sorted(self.counts.items())],
            "n": self.n,
            "n_scored": self.n_scored,
            "log_loss_sum": self.log_loss_sum,
            "brier_sum": self.brier_sum,
            "positive_hist": encode_array(self.positive_hist),
            "negative_hist": encode_array(self.negative_hist),
            "calibration_count": encode_array(self.calibration_count),
            "calibration_score_sum": encode_array(self.calibration_score_sum),
            "calibration_positive": encode_array(self.calibration_positive),
            "exact": None
            if pairs is None
            else {"scores": encode_array(pairs[0]), "labels": encode_array(pairs[1])},
        }

    @classmethod
    def from_state(cls, state: State) -> Self:
        acc = cls(
            positive_label=state["positive_label"],
            score_bins=int(state["score_bins"]),
            exact_scores=int(state["exact_scores"]),
            calibration_bins=int(state["calibration_bins"]),
        )
        acc.counts = {(str(a), str(p)): int(n) for a, p, n in state["counts"]}
        acc.n = int(state["n"])
        acc.n_scored = int(state["n_scored"])
        acc.log_loss_sum = float(state["log_loss_sum"])
        acc.brier_sum = float(state["brier_sum"])
        acc.positive_hist = decode_array(state["positive_hist"]).astype(np.int64)
        acc.negative_hist = decode_array(state["negative_hist"]).astype(np.int64)
        acc.calibration_count = decode_array(state["calibration_count"]).astype(np.int64)
        acc.calibration_score_sum = decode_array(state["calibration_score_sum"])
        acc.calibration_positive = decode_array(state["calibration_positive"]).astype(np.int64)
        exact = state["exact"]
        if exact is None:
            acc._scores = acc._labels = None
        else:
            acc._scores = decode_array(exact["scores"])
            acc._labels = decode_array(exact["labels"]).astype(np.bool_)
        return acc


class RegressionAccumulator:
    """Labelled regression outcomes: error sums and the target's moments (for R^2)."""

    def __init__(self) -> None:
        self.n = 0
        self.sum_abs_error = 0.0
        self.sum_squared_error = 0.0
        self.sum_abs_percentage_error = 0.0
        self.actual_mean = 0.0
        self.actual_m2 = 0.0
        self.moments = ErrorMoments()
        """Higher moments for the sampling errors of RMSE, MAPE and R^2."""

    @property
    def nbytes(self) -> int:
        return 16 * 8

    def update(self, actual: npt.ArrayLike, predicted: npt.ArrayLike) -> None:
        y, y_hat = as_float_array(actual), as_float_array(predicted)
        if y.shape != y_hat.shape:
            raise ValueError("actual and predicted differ in length")
        valid = np.isfinite(y) & np.isfinite(y_hat)
        if not valid.all():
            y, y_hat = y[valid], y_hat[valid]
        if y.size == 0:
            return
        error = np.abs(y - y_hat)
        eps = float(np.finfo(np.float64).eps)
        self.sum_abs_error += float(error.sum())
        self.sum_squared_error += float(np.square(error).sum())
        percentage = error / np.maximum(np.abs(y), eps)
        self.sum_abs_percentage_error += float(percentage.sum())
        self.moments.update(y, error, percentage)
        batch_mean = float(y.mean())
        batch_m2 = float(np.square(y - batch_mean).sum())
        self.n, self.actual_mean, self.actual_m2 = combine_moments(
            self.n, self.actual_mean, self.actual_m2, int(y.size), batch_mean, batch_m2
        )

    def merge(self, other: RegressionAccumulator) -> None:
        self.sum_abs_error += other.sum_abs_error
        self.sum_squared_error += other.sum_squared_error
        self.sum_abs_percentage_error += other.sum_abs_percentage_error
        self.n, self.actual_mean, self.actual_m2 = combine_moments(
            self.n, self.actual_mean, self.actual_m2, other.n, other.actual_mean, other.actual_m2
        )
        self.moments.merge(other.moments)

    def to_state(self) -> State:
        return {
            "n": self.n,
            "sum_abs_error": self.sum_abs_error,
            "sum_squared_error": self.sum_squared_error,
            "sum_abs_percentage_error": self.sum_abs_percentage_error,
            "actual_mean": self.actual_mean,
            "actual_m2": self.actual_m2,
            "moments": self.moments.to_state(),
        }

    @classmethod
    def from_state(cls, state: State) -> Self:
        acc = cls()
        acc.n = int(state["n"])
        acc.sum_abs_error = float(state["sum_abs_error"])
        acc.sum_squared_error = float(state["sum_squared_error"])
        acc.sum_abs_percentage_error = float(state["sum_abs_percentage_error"])
        acc.actual_mean = float(state["actual_mean"])
        acc.actual_m2 = float(state["actual_m2"])
        acc.moments = ErrorMoments.from_state(state.get("moments"))
        return acc


class ExpectedConfusionAccumulator:
    """Unlabelled binary predictions with calibrated scores: the sums CBPE needs.

    ``expected_tp`` is the sum of P(positive) over rows predicted positive, ``expected_fn`` the
    same over rows predicted negative; with calibrated scores these are the expected counts.
    """

    def __init__(self, *, positive_label: Scalar) -> None:
        self.positive_label = category_key(positive_label)
        self.n = 0
        self.predicted_positive = 0
        self.expected_tp = 0.0
        self.expected_fn = 0.0

    @property
    def nbytes(self) -> int:
        return 4 * 8

    def update(self, predicted: npt.ArrayLike, scores: npt.ArrayLike) -> None:
        """``scores``: probability of ``positive_label`` per prediction."""
        self.update_keys(category_keys(predicted), scores)

    def update_keys(
        self, predicted: tuple[npt.NDArray[np.str_], npt.NDArray[np.bool_]], scores: npt.ArrayLike
    ) -> None:
        """``update`` with the predictions' ``category_keys`` (keys, missing) computed already."""
        keys, missing = predicted
        p = as_float_array(scores)
        if p.shape != keys.shape:
            raise ValueError("predicted and scores differ in length")
        valid = ~missing & np.isfinite(p)
        keys, p = keys[valid], p[valid]
        positive = keys == self.positive_label
        self.n += int(p.size)
        self.predicted_positive += int(np.count_nonzero(positive))
        self.expected_tp += float(p[positive].sum())
        self.expected_fn += float(p[~positive].sum())

    def merge(self, other: ExpectedConfusionAccumulator) -> None:
        if other.positive_label != self.positive_label:
            raise ValueError("cannot merge accumulators with different positive labels")
        self.n += other.n
        self.predicted_positive += other.predicted_positive
        self.expected_tp += other.expected_tp
        self.expected_fn += other.expected_fn

    def to_state(self) -> State:
        return {
            "positive_label": self.positive_label,
            "n": self.n,
            "predicted_positive": self.predicted_positive,
            "expected_tp": self.expected_tp,
            "expected_fn": self.expected_fn,
        }

    @classmethod
    def from_state(cls, state: State) -> Self:
        acc = cls(positive_label=str(state["positive_label"]))
        acc.n = int(state["n"])
        acc.predicted_positive = int(state["predicted_positive"])
        acc.expected_tp = float(state["expected_tp"])
        acc.expected_fn = float(state["expected_fn"])
        return acc


_GROUP_FIELDS = ("n", "predicted_positive", "labelled", "actual_positive", "true_positive")


class FairnessAccumulator:
    """Per-group counts across one attribute: predictions, positive predictions, and for
    labelled rows actual positives and true positives.

    Predictions whose group (or prediction) is missing are counted in ``missing`` and nowhere
    else; groups beyond ``max_groups`` are counted in ``dropped``.
    """

    def __init__(self, *, positive_label: Scalar, max_groups: int = 1_000) -> None:
        self.positive_label = category_key(positive_label)
        self.max_groups = max_groups
        self.groups: dict[str, IntArray] = {}
        self.missing = 0
        self.dropped = 0

    @property
    def nbytes(self) -> int:
        return sum(counts.nbytes + len(group) for group, counts in self.groups.items())

    def _add(self, groups: npt.NDArray[np.str_], columns: list[npt.NDArray[np.bool_]]) -> None:
        uniques, inverse = np.unique(groups, return_inverse=True)
        table = np.stack(
            [np.bincount(inverse, weights=c, minlength=uniques.size) for c in columns], axis=1
        ).astype(np.int64)
        for group, row in zip(uniques.tolist(), table, strict=True):
            self._add_row(str(group), row)

    def _add_row(self, group: str, row: IntArray) -> None:
        if group in self.groups:
            self.groups[group] = self.groups[group] + row
        elif len(self.groups) < self.max_groups:
            self.groups[group] = row.copy()
        else:
            self.dropped += int(row[0] + row[2])

    def _keys(
        self, groups: npt.ArrayLike, predicted: npt.ArrayLike
    ) -> tuple[npt.NDArray[np.str_], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        group_keys, group_missing = category_keys(groups)
        predicted_keys, predicted_missing = category_keys(predicted)
        if group_keys.shape != predicted_keys.shape:
            raise ValueError("groups and predicted differ in length")
        return (
            group_keys,
            predicted_keys == self.positive_label,
            ~(group_missing | predicted_missing),
        )

    def update(self, groups: npt.ArrayLike, predicted: npt.ArrayLike) -> None:
        """Every prediction of the window, labelled or not."""
        group_keys, predicted_positive, valid = self._keys(groups, predicted)
        self.missing += int(np.count_nonzero(~valid))
        ones = np.ones(int(np.count_nonzero(valid)), dtype=np.bool_)
        zeros = np.zeros_like(ones)
        self._add(group_keys[valid], [ones, predicted_positive[valid], zeros, zeros, zeros])

    def update_labelled(
        self, groups: npt.ArrayLike, predicted: npt.ArrayLike, actual: npt.ArrayLike
    ) -> None:
        """Predictions whose outcome is known (call ``update`` for them as well)."""
        group_keys, predicted_positive, valid = self._keys(groups, predicted)
        actual_keys, actual_missing = category_keys(actual)
        valid &= ~actual_missing
        actual_positive = (actual_keys == self.positive_label)[valid]
        predicted_positive = predicted_positive[valid]
        zeros = np.zeros(actual_positive.size, dtype=np.bool_)
        self._add(
            group_keys[valid],
            [
                zeros,
                zeros,
                np.ones_like(zeros),
                actual_positive,
                actual_positive & predicted_positive,
            ],
        )

    def table(self) -> dict[str, dict[str, int]]:
        return {
            group: dict(zip(_GROUP_FIELDS, row.tolist(), strict=True))
            for group, row in sorted(self.groups.items())
        }

    def merge(self, other: FairnessAccumulator) -> None:
        if other.positive_label != self.positive_label:
            raise ValueError("cannot merge accumulators with different positive labels")
        for group, row in other.groups.items():
            self._add_row(group, row)
        self.missing += other.missing
        self.dropped += other.dropped

    def to_state(self) -> State:
        return {
            "positive_label": self.positive_label,
            "max_groups": self.max_groups,
            "groups": {group: row.tolist() for group, row in self.groups.items()},
            "missing": self.missing,
            "dropped": self.dropped,
        }

    @classmethod
    def from_state(cls, state: State) -> Self:
        acc = cls(positive_label=str(state["positive_label"]), max_groups=int(state["max_groups"]))
        acc.groups = {
            str(group): np.asarray(row, dtype=np.int64) for group, row in state["groups"].items()
        }
        acc.missing = int(state["missing"])
        acc.dropped = int(state["dropped"])
        return acc


class QuantileSketch:
    """Quantiles of non-negative values with bounded relative error (a fixed-range DDSketch).

    Values in ``[min_value, max_value]`` fall into logarithmic buckets ``(g^(i-1), g^i]`` with
    ``g = (1 + a) / (1 - a)``; a bucket's representative ``2 g^i / (g + 1)`` is within relative
    accuracy ``a`` of every value in it, and so is the linear interpolation between two ranks
    that :meth:`quantile` returns (as ``numpy.quantile``'s default method). Values below
    ``min_value`` (including negative ones, e.g. clock skew) count as 0; values above
    ``max_value`` are clamped to it. Memory is fixed: about ``ln(max/min) / (2a)`` counters.
    """

    def __init__(
        self,
        *,
        relative_accuracy: float = 0.01,
        min_value: float = 1e-3,
        max_value: float = 1e9,
    ) -> None:
        if not 0.0 < relative_accuracy < 1.0:
            raise ValueError("relative_accuracy must be in (0, 1)")
        if not 0.0 < min_value < max_value:
            raise ValueError("need 0 < min_value < max_value")
        self.relative_accuracy = relative_accuracy
        self.min_value = min_value
        self.max_value = max_value
        self._gamma = (1.0 + relative_accuracy) / (1.0 - relative_accuracy)
        self._log_gamma = math.log(self._gamma)
        self._offset = math.ceil(math.log(min_value) / self._log_gamma)
        size = math.ceil(math.log(max_value) / self._log_gamma) - self._offset + 1
        self.buckets: IntArray = np.zeros(size, dtype=np.int64)
        self.zero_count = 0

    @property
    def count(self) -> int:
        return self.zero_count + int(self.buckets.sum())

    @property
    def nbytes(self) -> int:
        return self.buckets.nbytes

    def update(self, values: npt.ArrayLike) -> None:
        x = as_float_array(values)
        x = x[np.isfinite(x)]
        small = x < self.min_value
        self.zero_count += int(np.count_nonzero(small))
        x = np.minimum(x[~small], self.max_value)
        if x.size == 0:
            return
        index = np.ceil(np.log(x) / self._log_gamma).astype(np.int64) - self._offset
        index = np.clip(index, 0, self.buckets.size - 1)
        self.buckets += np.bincount(index, minlength=self.buckets.size)

    def _value_at(self, ranks: npt.NDArray[np.int64]) -> FloatArray:
        cumulative = np.cumsum(self.buckets)
        bucket = np.searchsorted(cumulative, ranks - self.zero_count, side="right")
        bucket = np.minimum(bucket, self.buckets.size - 1)
        value = 2.0 * self._gamma ** (bucket + self._offset).astype(np.float64) / (self._gamma + 1)
        result: FloatArray = np.where(ranks < self.zero_count, 0.0, value)
        return result

    def quantile(self, q: float) -> float:
        """Estimate of ``numpy.quantile(values, q)`` (linear method)."""
        if not 0.0 <= q <= 1.0:
            raise ValueError("q must be in [0, 1]")
        n = self.count
        if n == 0:
            raise ValueError("no values")
        h = q * (n - 1)
        low = math.floor(h)
        ranks = np.asarray([low, min(low + 1, n - 1)], dtype=np.int64)
        below, above = self._value_at(ranks).tolist()
        return float(below + (h - low) * (above - below))

    def _check_compatible(self, other: QuantileSketch) -> None:
        mine = (self.relative_accuracy, self.min_value, self.max_value)
        if mine != (other.relative_accuracy, other.min_value, other.max_value):
            raise ValueError("cannot merge sketches configured differently")

    def merge(self, other: QuantileSketch) -> None:
        self._check_compatible(other)
        self.buckets = self.buckets + other.buckets
        self.zero_count += other.zero_count

    def to_state(self) -> State:
        return {
            "relative_accuracy": self.relative_accuracy,
            "min_value": self.min_value,
            "max_value": self.max_value,
            "zero_count": self.zero_count,
            "buckets": encode_array(self.buckets),
        }

    @classmethod
    def from_state(cls, state: State) -> Self:
        sketch = cls(
            relative_accuracy=float(state["relative_accuracy"]),
            min_value=float(state["min_value"]),
            max_value=float(state["max_value"]),
        )
        sketch.zero_count = int(state["zero_count"])
        buckets = decode_array(state["buckets"]).astype(np.int64)
        if buckets.shape != sketch.buckets.shape:
            raise ValueError("sketch state does not match its configuration")
        sketch.buckets = buckets
        return sketch


class OperationsAccumulator:
    """Volume, latency and label arrival of one window's predictions."""

    def __init__(self, *, relative_accuracy: float = 0.01) -> None:
        self.predictions = 0
        self.labelled = 0
        self.latency_ms = QuantileSketch(relative_accuracy=relative_accuracy)
        self.label_delay_s = QuantileSketch(relative_accuracy=relative_accuracy)

    @property
    def nbytes(self) -> int:
        return self.latency_ms.nbytes + self.label_delay_s.nbytes

    def update_predictions(self, latency_ms: npt.ArrayLike) -> None:
        """One entry per prediction; NaN where the client reported no latency."""
        latency = as_float_array(latency_ms)
        self.predictions += int(latency.size)
        self.latency_ms.update(latency)

    def update_outcomes(self, label_delay_s: npt.ArrayLike) -> None:
        """One entry per outcome joined to a prediction of this window: its delay in seconds."""
        delay = as_float_array(label_delay_s)
        self.labelled += int(delay.size)
        self.label_delay_s.update(delay)

    def merge(self, other: OperationsAccumulator) -> None:
        self.predictions += other.predictions
        self.labelled += other.labelled
        self.latency_ms.merge(other.latency_ms)
        self.label_delay_s.merge(other.label_delay_s)

    def to_state(self) -> State:
        return {
            "predictions": self.predictions,
            "labelled": self.labelled,
            "latency_ms": self.latency_ms.to_state(),
            "label_delay_s": self.label_delay_s.to_state(),
        }

    @classmethod
    def from_state(cls, state: State) -> Self:
        acc = cls()
        acc.predictions = int(state["predictions"])
        acc.labelled = int(state["labelled"])
        acc.latency_ms = QuantileSketch.from_state(state["latency_ms"])
        acc.label_delay_s = QuantileSketch.from_state(state["label_delay_s"])
        return acc
