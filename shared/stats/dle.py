"""Direct loss estimation (DLE, as NannyML) for regression: a model of each row's error.

Before labels arrive, a regression's MAE and RMSE are estimated by a second model fitted on the
reference, which predicts from the features and the prediction how large the error of that row
will be; a window's estimated MAE is the mean of the predicted absolute errors, its estimated
RMSE the square root of the mean predicted squared error. NannyML fits LightGBM; this module
fits a gradient-boosted ensemble of oblivious trees of its own, because:

* the registry fits it when a reference is uploaded, in a process that must not import
  scikit-learn, scipy or LightGBM (its memory budget, ``docs/registry.md``): this is numpy only;
* the model is data in the reference profile (JSON, covered by its content hash), applied by the
  evaluator without unpickling anything;
* an oblivious tree asks one question per level of all its rows (as CatBoost's symmetric
  trees), so the evaluator applies the whole ensemble with one vectorised comparison per level:
  a few microseconds per prediction;
* fitting time is bounded and deterministic: at most ``MAX_ROWS`` rows and ``MAX_CELLS`` rows x
  inputs (a seeded uniform sample), ``ROUNDS`` trees of depth ``DEPTH``, each level one
  ``np.bincount`` per input over the rows.

Inputs are binned once (numeric: at most ``MAX_BINS - 1`` quantile bins of the fitting rows;
categorical: the ``MAX_BINS - 1`` most frequent categories ordered by their mean absolute error,
the rest together; missing values in a bin of their own), as LightGBM and scikit-learn's
HistGradientBoosting do. Splits minimise the squared loss (a leaf's value is its mean residual,
so the ensemble estimates the conditional mean error); learning rate 0.1, 100 rounds (LightGBM's
defaults, which NannyML uses), at least ``MIN_LEAF`` = 50 rows on each side of a split.

Three choices differ from NannyML's, each measured against it on two models, four shift
patterns and twelve references (``bench/estimation.py``):

* **Tail terms.** Trees are flat beyond the last split, so where a shift takes a numeric input
  towards or past the edge of the reference, they underestimate an error that keeps growing
  there (LightGBM's too). Before the trees, a least-squares fit of two linear terms per numeric
  input (the prediction included), ``max(x - q80, 0)`` and ``max(q20 - x, 0)`` of its 20th and
  80th percentiles, continues the trend of each input's outer fifth; ``TAIL_BINS`` empty bins
  beyond each end of the fitting range carry it up to one range width further (then it stays
  flat). The trees fit what is left, so inside the range they correct it.
* **The squared error from the absolute one.** The squared error's own trees are noisy (its
  target is heavy-tailed); the predicted squared error is the predicted absolute error squared
  times one ratio fitted on the reference (mean squared error over the mean of those squares):
  exact when the features scale the error's spread, whatever its distribution (e = s(x) Z).
* ``MIN_LEAF`` 50 instead of 20: smoother leaves for a noisy target.

Models stored before these (a profile's ``LossTrees`` without ``linear`` or ``absolute_scale``)
load and predict as they did, and serialise, so hash, unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import cached_property
from typing import Literal, Self

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer

from ._common import FloatArray, InsufficientData, IntArray, State, category_keys

__all__ = [
    "PREDICTION",
    "FeatureBins",
    "LossEstimateAccumulator",
    "LossModel",
    "LossTrees",
    "estimated_mae",
    "estimated_regression_sampling_error",
    "estimated_rmse",
    "fit_loss_model",
]

PREDICTION = "\x00prediction"
"""Name of the model's prediction among the loss model's inputs."""
MAX_ROWS = 50_000
MAX_CELLS = 400_000
"""Rows x inputs the trees are fitted on: a reference of 20 features gives 19,047 rows."""
ROUNDS = 100
MAX_BINS = 255
DEPTH = 6
MIN_LEAF = 50
MIN_ROWS = 200
"""Reference rows with a prediction and an outcome a loss model needs."""
LEARNING_RATE = 0.1
TAIL_QUANTILE = 0.2
"""The linear tail terms of a numeric input start at its 20th and 80th percentiles."""
TAIL_BINS = 16
"""Bins added beyond each end of a numeric input's fitting range, up to one range width."""
TAIL_RIDGE = 1e-3
"""Ridge penalty of the tail terms' least squares (per row, on standardised terms)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class FeatureBins(_Frozen):
    """How one input is binned: numeric by cut points, categorical by an ordered category list;
    bin ``n_bins - 1`` holds missing values (and, categorical, categories not listed)."""

    name: str
    kind: Literal["numeric", "categorical"]
    cut_points: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()

    @property
    def n_bins(self) -> int:
        if self.kind == "numeric":
            return len(self.cut_points) + 2
        return len(self.categories) + 1

    def bin(self, values: npt.NDArray[np.generic]) -> npt.NDArray[np.int16]:
        """Bins of a float column (numeric) or of category keys with a missing mask."""
        missing_bin = self.n_bins - 1
        if self.kind == "numeric":
            x = np.asarray(values, dtype=np.float64)
            bins = np.searchsorted(np.asarray(self.cut_points), x, side="right")
            return np.where(np.isfinite(x), bins, missing_bin).astype(np.int16)
        keys, missing = category_keys(values)
        return self.bin_keys(keys, missing)

    def bin_keys(
        self, keys: npt.NDArray[np.str_], missing: npt.NDArray[np.bool_]
    ) -> npt.NDArray[np.int16]:
        uniques, inverse = np.unique(keys, return_inverse=True)
        index = {c: i for i, c in enumerate(self.categories)}
        other = len(self.categories)
        mapped = np.asarray([index.get(str(u), other) for u in uniques.tolist()], dtype=np.int16)
        result = mapped[inverse] if uniques.size else np.zeros(keys.size, dtype=np.int16)
        return np.where(missing, other, result).astype(np.int16)


class LossTrees(_Frozen):
    """An ensemble of oblivious trees for one loss: prediction = base + sum of leaf values.

    Every level of an oblivious tree asks all its rows the same question, "is the bin of input
    ``feature[level]`` above ``threshold[level]``?", so a row's leaf is the binary number of its
    answers and the whole ensemble is evaluated with a few vectorised comparisons per level
    (as CatBoost's symmetric trees)."""

    loss: Literal["absolute", "squared"]
    base: float
    depth: int
    feature: tuple[tuple[int, ...], ...]
    """Per tree, the input asked at each level."""
    threshold: tuple[tuple[int, ...], ...]
    value: tuple[tuple[float, ...], ...]
    """Per tree, the 2^depth leaf values (learning rate applied)."""
    fit_error: float
    """Mean squared error of the ensemble's losses on the rows it was fitted on."""
    linear: tuple[tuple[float, ...], ...] = ()
    """Per input, the value of its linear tail terms in each of its bins (empty: none), added
    before the trees; absent from models fitted before the tail terms (they load unchanged)."""
    absolute_scale: float = 0.0
    """Squared loss: the trees correct ``absolute_scale`` x the squared predicted absolute
    error (:meth:`LossModel.predict`); 0 in models fitted before (the trees alone)."""

    @model_serializer(mode="wrap")
    def _omit_new_fields(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        """Models fitted before the tail terms serialise (and hash in a profile) as then."""
        data: dict[str, object] = handler(self)
        if not data.get("linear"):
            data.pop("linear", None)
        if not data.get("absolute_scale"):
            data.pop("absolute_scale", None)
        return data

    @cached_property
    def _arrays(self) -> tuple[IntArray, npt.NDArray[np.int16], FloatArray]:
        feature = np.asarray(self.feature, dtype=np.int64).reshape(-1, self.depth)
        threshold = np.asarray(self.threshold, dtype=np.int16).reshape(-1, self.depth)
        value = np.asarray(self.value, dtype=np.float64).reshape(-1, 2**self.depth)
        return feature, threshold, value

    @cached_property
    def _leaf_offsets(self) -> npt.NDArray[np.intp]:
        """Where each tree's leaves start in the flattened leaf values."""
        offsets: npt.NDArray[np.intp] = np.arange(len(self.feature), dtype=np.intp)
        offsets *= 2**self.depth
        return offsets

    def leaves(self, bins: npt.NDArray[np.int16]) -> FloatArray:
        """Sum over the trees of each row's leaf value (``bins``: rows x inputs)."""
        n = bins.shape[0]
        if not self.feature or n == 0:
            return np.zeros(n, dtype=np.float64)
        feature, threshold, value = self._arrays
        leaf = np.zeros((n, feature.shape[0]), dtype=np.intp)
        for level in range(self.depth):
            leaf <<= 1
            leaf += bins[:, feature[:, level]] > threshold[None, :, level]
        leaf += self._leaf_offsets
        result: FloatArray = value.ravel()[leaf].sum(axis=1)
        return result

    @cached_property
    def _tables(self) -> list[tuple[int, FloatArray]]:
        return [(i, np.asarray(t, dtype=np.float64)) for i, t in enumerate(self.linear) if t]

    def tails(self, bins: npt.NDArray[np.int16]) -> FloatArray:
        """Sum over the inputs of each row's tail terms (one lookup per input)."""
        result = np.zeros(bins.shape[0], dtype=np.float64)
        for i, table in self._tables:
            result += table[bins[:, i]]
        return result

    def predict(
        self, bins: npt.NDArray[np.int16], absolute: FloatArray | None = None
    ) -> FloatArray:
        """Predicted loss of each row, clipped at 0 as NannyML (``absolute``: the predicted
        absolute errors, which a squared loss with an ``absolute_scale`` starts from)."""
        start = self.base + self.tails(bins)
        if self.absolute_scale:
            if absolute is None:
                raise ValueError("this squared loss starts from the predicted absolute error")
            start = start + self.absolute_scale * np.square(absolute)
        return np.maximum(start + self.leaves(bins), 0.0)


class LossModel(_Frozen):
    """A regression's loss model, fitted on the reference (see the module docstring)."""

    inputs: tuple[FeatureBins, ...]
    absolute: LossTrees
    squared: LossTrees
    n: int
    """Reference rows with a prediction and an outcome."""
    n_fit: int
    """Rows the trees were fitted on (a uniform sample of at most ``MAX_ROWS``)."""
    mae: float
    rmse: float
    abs_error_std: float
    squared_error_std: float
    """NannyML's sampling-error components of MAE and RMSE, from the reference."""

    def bin_columns(self, columns: Mapping[str, npt.NDArray[np.generic]]) -> npt.NDArray[np.int16]:
        """Rows x inputs bins; ``columns`` maps each input name (``PREDICTION`` for the
        model's prediction) to floats or to category values."""
        return np.stack([spec.bin(columns[spec.name]) for spec in self.inputs], axis=1)

    def predict(self, bins: npt.NDArray[np.int16]) -> tuple[FloatArray, FloatArray]:
        """Each row's predicted absolute and squared error (both clipped at 0)."""
        absolute = self.absolute.predict(bins)
        return absolute, self.squared.predict(bins, absolute)


def _quantile_cuts(x: FloatArray, max_bins: int) -> tuple[float, ...]:
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return ()
    distinct = np.unique(finite)
    if distinct.size <= max_bins:
        cuts = (distinct[:-1] + distinct[1:]) / 2.0
    else:
        cuts = np.unique(np.quantile(finite, np.linspace(0, 1, max_bins + 1)[1:-1]))
    return tuple(float(c) for c in cuts)


def _categorical_bins(
    name: str, values: npt.NDArray[np.generic], target: FloatArray, max_bins: int
) -> FeatureBins:
    keys, missing = category_keys(values)
    present = ~missing
    uniques, inverse, counts = np.unique(keys[present], return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=target[present], minlength=uniques.size)
    top = np.argsort(-counts, kind="stable")[: max_bins - 1]
    ordered = sorted(top.tolist(), key=lambda i: (sums[i] / counts[i], str(uniques[i])))
    return FeatureBins(
        name=name, kind="categorical", categories=tuple(str(uniques[i]) for i in ordered)
    )


class _Grower:
    """Oblivious regression trees on pre-binned inputs with squared loss.

    Per level and input, one ``np.bincount`` gives the gradient sums and counts of every
    (leaf, bin); cumulative sums over the bins give every candidate split's gain in every leaf,
    and the split with the largest total gain is taken for the whole level. A leaf too small to
    split by it (fewer than ``min_leaf`` rows on a side) keeps its value on both sides.
    """

    def __init__(self, bins: npt.NDArray[np.int16], *, depth: int, min_leaf: int) -> None:
        self.depth = depth
        self.min_leaf = min_leaf
        self.columns = [bins[:, f].astype(np.int64) for f in range(bins.shape[1])]
        self.widths = [int(c.max()) + 1 for c in self.columns]

    def _split(self, leaf: IntArray, residual: FloatArray, n_leaves: int) -> tuple[int, int]:
        best = (-math.inf, 0, 0)
        leaf_g = np.bincount(leaf, weights=residual, minlength=n_leaves)[:, None]
        leaf_n = np.bincount(leaf, minlength=n_leaves).astype(np.float64)[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            unsplit = np.where(leaf_n > 0, leaf_g**2 / leaf_n, 0.0)
        for f, (column, width) in enumerate(zip(self.columns, self.widths, strict=True)):
            if width < 2:
                continue
            index = leaf * width + column
            size = n_leaves * width
            low_g = np.cumsum(
                np.bincount(index, weights=residual, minlength=size).reshape(n_leaves, width),
                axis=1,
            )[:, :-1]
            low_n = np.cumsum(np.bincount(index, minlength=size).reshape(n_leaves, width), axis=1)[
                :, :-1
            ].astype(np.float64)
            high_g, high_n = leaf_g - low_g, leaf_n - low_n
            ok = (low_n >= self.min_leaf) & (high_n >= self.min_leaf)
            with np.errstate(divide="ignore", invalid="ignore"):
                gain = np.where(ok, low_g**2 / low_n + high_g**2 / high_n, unsplit).sum(axis=0)
            t = int(np.argmax(gain))
            if gain[t] > best[0] + 1e-12:
                best = (float(gain[t]), f, t)
        return best[1], best[2]

    def tree(
        self, residual: FloatArray, learning_rate: float
    ) -> tuple[list[int], list[int], list[float]]:
        leaf = np.zeros(residual.size, dtype=np.int64)
        features: list[int] = []
        thresholds: list[int] = []
        for level in range(self.depth):
            f, t = self._split(leaf, residual, 2**level)
            features.append(f)
            thresholds.append(t)
            leaf = 2 * leaf + (self.columns[f] > t)
        n_leaves = 2**self.depth
        sums = np.bincount(leaf, weights=residual, minlength=n_leaves)
        counts = np.bincount(leaf, minlength=n_leaves)
        values = learning_rate * np.divide(sums, counts, out=np.zeros(n_leaves), where=counts > 0)
        return features, thresholds, values.tolist()


def _fit_trees(
    loss: Literal["absolute", "squared"],
    bins: npt.NDArray[np.int16],
    target: FloatArray,
    tails: _Tails,
    *,
    rounds: int,
    depth: int,
    min_leaf: int,
    learning_rate: float,
) -> tuple[LossTrees, FloatArray]:
    """The ensemble and its (clipped) predictions on the fitting rows."""
    grower = _Grower(bins, depth=depth, min_leaf=min_leaf)
    base, linear = tails.fit(target)
    predicted = base + _trees(loss, base, depth, [], 0.0, linear).tails(bins)
    trees = []
    for _ in range(rounds):
        tree = grower.tree(target - predicted, learning_rate)
        trees.append(tree)
        predicted += _trees(loss, base, depth, [tree], 0.0).leaves(bins)
    predicted = np.maximum(predicted, 0.0)
    fitted = float(np.mean(np.square(target - predicted)))
    return _trees(loss, base, depth, trees, fitted, linear), predicted


def _squared_from_absolute(absolute: FloatArray, target: FloatArray, depth: int) -> LossTrees:
    """The squared-error model: each row's predicted absolute error squared, times the ratio
    of the mean squared error to the mean of those squares on the fitting rows (no trees)."""
    scale = float(target.mean()) / max(float(np.mean(np.square(absolute))), 1e-300)
    fitted = float(np.mean(np.square(target - scale * np.square(absolute))))
    return _trees("squared", 0.0, depth, [], fitted, (), scale)


def _trees(
    loss: Literal["absolute", "squared"],
    base: float,
    depth: int,
    trees: list[tuple[list[int], list[int], list[float]]],
    fit_error: float,
    linear: tuple[tuple[float, ...], ...] = (),
    absolute_scale: float = 0.0,
) -> LossTrees:
    return LossTrees(
        loss=loss,
        base=base,
        depth=depth,
        feature=tuple(tuple(t[0]) for t in trees),
        threshold=tuple(tuple(t[1]) for t in trees),
        value=tuple(tuple(t[2]) for t in trees),
        fit_error=fit_error,
        linear=linear,
        absolute_scale=absolute_scale,
    )


def _numeric_bins(name: str, x: FloatArray, max_bins: int) -> tuple[FeatureBins, FloatArray | None]:
    """Quantile bins of the fitting rows, ``TAIL_BINS`` empty bins beyond each end (up to one
    range width), and each bin's representative value: the mean of its rows, else its middle
    (the outermost bins: their inner cut, so the tail terms stop there)."""
    cuts = _quantile_cuts(x, max_bins)
    if not cuts:
        return FeatureBins(name=name, kind="numeric", cut_points=cuts), None
    finite = np.isfinite(x)
    low, high = float(x[finite].min()), float(x[finite].max())
    step = (high - low) / TAIL_BINS
    edges = np.asarray(
        [low - step * k for k in range(TAIL_BINS, 0, -1)]
        + list(cuts)
        + [high + step * k for k in range(1, TAIL_BINS + 1)]
    )
    spec = FeatureBins(name=name, kind="numeric", cut_points=tuple(float(c) for c in edges))
    n_bins = edges.size + 1
    middle = np.concatenate([edges[:1], (edges[:-1] + edges[1:]) / 2.0, edges[-1:]])
    bins = spec.bin(x)[finite]
    sums = np.bincount(bins, weights=x[finite], minlength=n_bins)[:n_bins]
    counts = np.bincount(bins, minlength=n_bins)[:n_bins]
    rep = np.divide(sums, counts, out=middle.copy(), where=counts > 0)
    return spec, rep


class _Tails:
    """Linear tail terms of the numeric inputs, fitted first (least squares, a small ridge)
    so that beyond the rows the trees saw the estimate follows the trend of each input's outer
    fifth instead of staying flat: per input, ``max(x - q80, 0)`` and ``max(q20 - x, 0)`` of
    its bin's representative value (missing values: 0)."""

    def __init__(
        self, inputs: int, reps: Mapping[int, FloatArray], bins: npt.NDArray[np.int16]
    ) -> None:
        self.inputs = inputs
        self.terms: list[tuple[int, FloatArray, FloatArray]] = []
        columns = []
        for i, rep in reps.items():
            at = rep[np.minimum(bins[:, i], rep.size - 1)]
            present = bins[:, i] < rep.size
            if np.count_nonzero(present) == 0:
                continue
            lo, hi = np.quantile(at[present], [TAIL_QUANTILE, 1.0 - TAIL_QUANTILE])
            table_hi = np.append(np.maximum(rep - hi, 0.0), 0.0)
            table_lo = np.append(np.maximum(lo - rep, 0.0), 0.0)
            self.terms.append((i, table_hi, table_lo))
            columns += [table_hi[bins[:, i]], table_lo[bins[:, i]]]
        self.design = np.stack(columns, axis=1) if columns else np.zeros((bins.shape[0], 0))

    def fit(self, target: FloatArray) -> tuple[float, tuple[tuple[float, ...], ...]]:
        """The intercept and, per input, its tail terms' value in each bin."""
        h = self.design
        mean = float(target.mean())
        if h.shape[1] == 0:
            return mean, ()
        mu, sd = h.mean(axis=0), h.std(axis=0)
        keep = sd > 0
        z = (h[:, keep] - mu[keep]) / sd[keep]
        gram = z.T @ z / h.shape[0] + TAIL_RIDGE * np.eye(z.shape[1])
        coef = np.zeros(h.shape[1])
        coef[keep] = np.linalg.solve(gram, z.T @ (target - mean) / h.shape[0]) / sd[keep]
        linear: list[tuple[float, ...]] = [() for _ in range(self.inputs)]
        for k, (i, table_hi, table_lo) in enumerate(self.terms):
            table = coef[2 * k] * table_hi + coef[2 * k + 1] * table_lo
            linear[i] = tuple(float(v) for v in table)
        return mean - float(mu @ coef), tuple(linear)


def fit_loss_model(
    columns: Mapping[str, npt.NDArray[np.generic]],
    numeric: Mapping[str, bool],
    prediction: FloatArray,
    actual: FloatArray,
    *,
    max_cells: int = MAX_CELLS,
    max_rows: int = MAX_ROWS,
    rounds: int = ROUNDS,
    max_bins: int = MAX_BINS,
    depth: int = DEPTH,
    min_leaf: int = MIN_LEAF,
    learning_rate: float = LEARNING_RATE,
    seed: int = 0,
) -> LossModel:
    """Fit the absolute- and squared-error ensembles on the reference rows.

    ``columns`` holds each feature (floats when ``numeric[name]``, else category values),
    ``prediction`` and ``actual`` the model's prediction and the outcome; rows without both
    are left out. At most ``max_rows`` rows and ``max_cells`` (rows x inputs) are used.
    """
    y_hat = np.asarray(prediction, dtype=np.float64)
    y = np.asarray(actual, dtype=np.float64)
    known = np.isfinite(y) & np.isfinite(y_hat)
    n = int(np.count_nonzero(known))
    if n < MIN_ROWS:
        raise InsufficientData(
            f"the loss model needs at least {MIN_ROWS} reference rows with a prediction "
            f"and an outcome ({n})"
        )
    rows = np.flatnonzero(known)
    error = np.abs(y[rows] - y_hat[rows])
    squared = np.square(error)
    limit = min(max_rows, max(max_cells // (len(columns) + 1), MIN_ROWS))
    if rows.size > limit:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=limit, replace=False))
    abs_target = np.abs(y[rows] - y_hat[rows])
    inputs: list[FeatureBins] = []
    reps: dict[int, FloatArray] = {}
    model_columns: dict[str, npt.NDArray[np.generic]] = {}
    for name, values in (*columns.items(), (PREDICTION, y_hat)):
        column = np.asarray(values)[rows]
        model_columns[name] = column
        if name == PREDICTION or numeric[name]:
            spec, rep = _numeric_bins(name, column.astype(np.float64), max_bins - 2)
            if rep is not None:
                reps[len(inputs)] = rep
            inputs.append(spec)
        else:
            inputs.append(_categorical_bins(name, column, abs_target, max_bins))
    bins = np.stack([spec.bin(model_columns[spec.name]) for spec in inputs], axis=1)
    absolute, fitted = _fit_trees(
        "absolute",
        bins,
        abs_target,
        _Tails(len(inputs), reps, bins),
        rounds=rounds,
        depth=depth,
        min_leaf=min_leaf,
        learning_rate=learning_rate,
    )
    return LossModel(
        inputs=tuple(inputs),
        absolute=absolute,
        squared=_squared_from_absolute(fitted, np.square(abs_target), depth),
        n=n,
        n_fit=int(rows.size),
        mae=float(error.mean()),
        rmse=float(math.sqrt(squared.mean())),
        abs_error_std=float(error.std()),
        squared_error_std=float(squared.std()),
    )


class LossEstimateAccumulator:
    """Sums of a window's predicted absolute and squared errors (DLE)."""

    def __init__(self) -> None:
        self.n = 0
        self.sum_absolute = 0.0
        self.sum_squared = 0.0

    @property
    def nbytes(self) -> int:
        return 3 * 8

    def update(self, absolute: FloatArray, squared: FloatArray) -> None:
        self.n += int(absolute.size)
        self.sum_absolute += float(absolute.sum())
        self.sum_squared += float(squared.sum())

    def merge(self, other: LossEstimateAccumulator) -> None:
        self.n += other.n
        self.sum_absolute += other.sum_absolute
        self.sum_squared += other.sum_squared

    def to_state(self) -> State:
        return {"n": self.n, "sum_absolute": self.sum_absolute, "sum_squared": self.sum_squared}

    @classmethod
    def from_state(cls, state: State) -> Self:
        acc = cls()
        acc.n = int(state["n"])
        acc.sum_absolute = float(state["sum_absolute"])
        acc.sum_squared = float(state["sum_squared"])
        return acc


def _window(acc: LossEstimateAccumulator) -> None:
    if acc.n == 0:
        raise InsufficientData("no predictions with every input of the loss model")


def estimated_mae(acc: LossEstimateAccumulator) -> float:
    _window(acc)
    return acc.sum_absolute / acc.n


def estimated_rmse(acc: LossEstimateAccumulator) -> float:
    _window(acc)
    return math.sqrt(acc.sum_squared / acc.n)


def estimated_regression_sampling_error(
    metric: str, acc: LossEstimateAccumulator, model: LossModel
) -> float | None:
    """NannyML's: the reference's spread of the error over sqrt(window rows)."""
    _window(acc)
    if metric == "estimated_mae":
        return model.abs_error_std / math.sqrt(acc.n)
    if metric == "estimated_rmse":
        mean_squared = model.rmse**2
        if mean_squared == 0:
            return 0.0
        return math.sqrt(model.squared_error_std**2 / (4.0 * acc.n * mean_squared))
    raise ValueError(f"no sampling error for {metric!r}")
