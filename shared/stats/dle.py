"""Direct loss estimation (DLE, as NannyML) for regression: a model of each row's error.

Before labels arrive, a regression's MAE and RMSE are estimated by a second model fitted on the
reference, which predicts from the features and the prediction how large the error of that row
will be (its absolute error for MAE, its squared error for RMSE); a window's estimate is the
mean of those predictions (the square root of it for RMSE). NannyML fits LightGBM; this module
fits a gradient-boosted ensemble of oblivious trees of its own, because:

* the registry fits it when a reference is uploaded, in a process that must not import
  scikit-learn, scipy or LightGBM (its memory budget, ``docs/registry.md``): this is numpy only;
* the model is data in the reference profile (JSON, covered by its content hash), applied by the
  evaluator without unpickling anything;
* an oblivious tree asks one question per level of all its rows (as CatBoost's symmetric
  trees), so the evaluator applies the whole ensemble with one vectorised comparison per level:
  a few microseconds per prediction;
* fitting time is bounded and deterministic: at most ``MAX_ROWS`` rows and ``MAX_CELLS`` rows x
  inputs (a seeded uniform sample), ``ROUNDS`` trees of depth ``DEPTH`` per loss, each level one
  ``np.bincount`` per input over the rows.

Inputs are binned once (numeric: at most ``MAX_BINS - 1`` quantile bins of the fitting rows;
categorical: the ``MAX_BINS - 1`` most frequent categories ordered by their mean absolute error,
the rest together; missing values in a bin of their own), as LightGBM and scikit-learn's
HistGradientBoosting do. Splits minimise the squared loss (a leaf's value is its mean residual,
so the ensemble estimates the conditional mean error); learning rate 0.1, at least ``MIN_LEAF``
rows on each side of a split, 100 rounds: LightGBM's defaults, which NannyML uses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import cached_property
from typing import Literal, Self

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict

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
MIN_LEAF = 20
LEARNING_RATE = 0.1


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

    def predict(self, bins: npt.NDArray[np.int16]) -> FloatArray:
        """Predicted loss of each row, clipped at 0 as NannyML."""
        return np.maximum(self.base + self.leaves(bins), 0.0)


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
    *,
    rounds: int,
    depth: int,
    min_leaf: int,
    learning_rate: float,
) -> LossTrees:
    grower = _Grower(bins, depth=depth, min_leaf=min_leaf)
    base = float(target.mean())
    predicted = np.full(target.size, base)
    trees = []
    for _ in range(rounds):
        tree = grower.tree(target - predicted, learning_rate)
        trees.append(tree)
        predicted += _trees(loss, base, depth, [tree], 0.0).leaves(bins)
    fitted = float(np.mean(np.square(target - predicted)))
    return _trees(loss, base, depth, trees, fitted)


def _trees(
    loss: Literal["absolute", "squared"],
    base: float,
    depth: int,
    trees: list[tuple[list[int], list[int], list[float]]],
    fit_error: float,
) -> LossTrees:
    return LossTrees(
        loss=loss,
        base=base,
        depth=depth,
        feature=tuple(tuple(t[0]) for t in trees),
        threshold=tuple(tuple(t[1]) for t in trees),
        value=tuple(tuple(t[2]) for t in trees),
        fit_error=fit_error,
    )


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
    if n < 10 * min_leaf:
        raise InsufficientData(
            f"the loss model needs at least {10 * min_leaf} reference rows with a prediction "
            f"and an outcome ({n})"
        )
    rows = np.flatnonzero(known)
    error = np.abs(y[rows] - y_hat[rows])
    squared = np.square(error)
    limit = min(max_rows, max(max_cells // (len(columns) + 1), 10 * min_leaf))
    if rows.size > limit:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=limit, replace=False))
    abs_target = np.abs(y[rows] - y_hat[rows])
    inputs: list[FeatureBins] = []
    model_columns: dict[str, npt.NDArray[np.generic]] = {}
    for name, values in columns.items():
        column = np.asarray(values)[rows]
        model_columns[name] = column
        if numeric[name]:
            cuts = _quantile_cuts(column.astype(np.float64), max_bins - 2)
            inputs.append(FeatureBins(name=name, kind="numeric", cut_points=cuts))
        else:
            inputs.append(_categorical_bins(name, column, abs_target, max_bins))
    model_columns[PREDICTION] = y_hat[rows]
    cuts = _quantile_cuts(y_hat[rows], max_bins - 2)
    inputs.append(FeatureBins(name=PREDICTION, kind="numeric", cut_points=cuts))
    bins = np.stack([spec.bin(model_columns[spec.name]) for spec in inputs], axis=1)
    options = {"rounds": rounds, "depth": depth, "min_leaf": min_leaf}
    return LossModel(
        inputs=tuple(inputs),
        absolute=_fit_trees("absolute", bins, abs_target, learning_rate=learning_rate, **options),
        squared=_fit_trees(
            "squared", bins, np.square(abs_target), learning_rate=learning_rate, **options
        ),
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
