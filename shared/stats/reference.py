"""The reference profile: what drift and data-quality metrics compare a window against.

Built once from the reference dataset registered with an AI system, then stored as JSON. It
keeps, per column, exact summaries (count, moments, quantile bins, category counts) and a
bounded deterministic sample of raw values. The drift methods that need every value (ks,
wasserstein, Evidently-style binning) read the column's *distribution*
(``shared.stats.distribution``): the sample itself when it holds every value, else a separate
blob, named in the profile by its SHA-256 (``values_sha256``) so that the profile's
``content_hash``, which goes into every evaluation's evidence, pins it too. The blob holds the
sorted distinct values and their counts up to ``EXACT_REFERENCE_VALUES`` distinct values (any
reference of up to 1,000,000 rows), cells beyond; the registry stores and serves it, the
evaluator loads it once per reference hash and attaches it (:meth:`NumericReference.attach`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    model_serializer,
)

from shared.contracts import FeatureType

from ._common import FloatArray, InsufficientData, IntArray, as_float_array, category_keys
from .distribution import (
    EXACT_REFERENCE_VALUES,
    Distribution,
    Grid,
    ValueStore,
    encode_distribution,
)
from .estimation import PerformanceReference, build_performance_reference

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DEFAULT_BINS",
    "DEFAULT_SAMPLE_SIZE",
    "LOW_CARDINALITY",
    "CategoricalReference",
    "ColumnReference",
    "NumericReference",
    "ReferenceProfile",
    "bin_index",
    "profile_categorical",
    "profile_numeric",
]

DEFAULT_BINS = 10
DEFAULT_SAMPLE_SIZE = 5_000
LOW_CARDINALITY = 20
"""Evidently bins a numeric column per distinct value when the reference has at most this many."""


def bin_index(cut_points: FloatArray, values: FloatArray) -> npt.NDArray[np.intp]:
    """Bin of each value on reference bins with open outer edges.

    Bins are ``(-inf, c0)``, ``[c0, c1)``, ..., ``[c_last, +inf)`` for the interior cut points
    ``c``, so current values beyond the reference's range land in the outer bins.
    """
    return np.searchsorted(cut_points, values, side="right")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class NumericReference(_Frozen):
    """A numeric column of the reference dataset (finite values only; NaN/inf count as missing)."""

    kind: Literal["numeric"] = "numeric"
    n: int
    n_missing: int
    mean: float
    std: float
    """Population standard deviation (ddof=0), as Evidently's normed Wasserstein uses."""
    min: float
    max: float
    n_unique: int
    edges: tuple[float, ...]
    """Deduplicated ``np.quantile`` edges, first = min, last = max."""
    counts: tuple[int, ...]
    """Reference values per bin of :func:`bin_index` on ``cut_points``."""
    sample: tuple[float, ...]
    """Sorted; every value when ``n <= sample_size``, else a seeded uniform subsample."""
    distinct_values: tuple[float, ...] | None = None
    """Set when the column has at most ``LOW_CARDINALITY`` distinct values."""
    distinct_counts: tuple[int, ...] | None = None
    values_sha256: str | None = None
    """Hex SHA-256 of the column's distribution blob, when the sample does not hold every value."""
    values_binned: bool = False
    """The blob holds cells (more than ``EXACT_REFERENCE_VALUES`` distinct values)."""

    _distribution: Distribution | None = PrivateAttr(default=None)
    _grid: Grid | None = PrivateAttr(default=None)

    @model_serializer(mode="wrap")
    def _omit_no_values(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Profiles without a blob serialise (and hash) as they did before blobs existed."""
        data: dict[str, Any] = handler(self)
        if data.get("values_sha256") is None:
            data.pop("values_sha256", None)
        if data.get("values_binned") is False:
            data.pop("values_binned", None)
        return data

    def __eq__(self, other: object) -> bool:
        """Equal fields (whether the blob is attached yet does not matter)."""
        if not isinstance(other, NumericReference):
            return NotImplemented
        return self.model_dump() == other.model_dump()

    def __hash__(self) -> int:
        return hash(tuple(self.model_dump().items()))

    def attach(self, blob: bytes) -> None:
        """Load the distribution blob named by ``values_sha256`` (refused if it does not hash
        to it)."""
        from .distribution import decode_distribution

        digest = hashlib.sha256(blob).hexdigest()
        if digest != self.values_sha256:
            raise ValueError(f"distribution blob hashes to {digest}, not {self.values_sha256}")
        self._distribution = decode_distribution(blob)

    @property
    def distribution(self) -> Distribution | None:
        """Every value (exact or in cells); None when only the sample is at hand."""
        if self._distribution is None and self.sample_complete:
            self._distribution = Distribution.of(self.sample_array)
        return self._distribution

    @property
    def needs_values(self) -> bool:
        """A blob is named but not attached yet."""
        return self.values_sha256 is not None and self._distribution is None

    def blob(self) -> bytes | None:
        """The attached distribution's blob (what the registry stores and serves)."""
        if self.values_sha256 is None or self._distribution is None:
            return None
        return encode_distribution(self._distribution)

    def grid(self) -> Grid | None:
        """The grid a window's values are binned on beyond the exact bound (cached)."""
        if self._grid is None:
            distribution = self.distribution
            if distribution is None:
                return None
            self._grid = Grid.for_reference(distribution, std=self.std)
        return self._grid

    @cached_property
    def cut_points(self) -> FloatArray:
        return np.asarray(self.edges[1:-1], dtype=np.float64)

    @cached_property
    def bin_counts(self) -> IntArray:
        return np.asarray(self.counts, dtype=np.int64)

    @cached_property
    def sample_array(self) -> FloatArray:
        return np.asarray(self.sample, dtype=np.float64)

    @property
    def sample_complete(self) -> bool:
        return len(self.sample) == self.n

    @property
    def low_cardinality(self) -> bool:
        return self.distinct_values is not None


class CategoricalReference(_Frozen):
    """A categorical or boolean column: counts per category key (see ``category_keys``)."""

    kind: Literal["categorical"] = "categorical"
    n: int
    n_missing: int
    counts: dict[str, int]

    @property
    def categories(self) -> frozenset[str]:
        return frozenset(self.counts)


ColumnReference = Annotated[NumericReference | CategoricalReference, Field(discriminator="kind")]


def reference_distribution(
    batches: Any, *, sample: FloatArray, std: float, low: float, high: float
) -> Distribution:
    """A reference column's distribution from its finite values (an iterable of arrays, read
    once): exact up to ``EXACT_REFERENCE_VALUES`` distinct values, else cells cut on a grid
    from the sorted ``sample`` (so the cells do not depend on how the values were batched)."""
    grid = Grid.for_reference(Distribution.of(sample), std=std, low=low, high=high)
    store = ValueStore(limit=EXACT_REFERENCE_VALUES, grid=grid)
    for batch in batches:
        store.add(np.asarray(batch, dtype=np.float64))
    distribution = store.distribution()
    if distribution is None:
        raise InsufficientData("a numeric reference column needs at least one finite value")
    return distribution


def profile_numeric(
    values: npt.ArrayLike,
    *,
    n_bins: int = DEFAULT_BINS,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    seed: int = 0,
    with_values: bool = True,
) -> NumericReference:
    raw = as_float_array(values)
    finite = np.isfinite(raw)
    x = raw[finite]
    if x.size == 0:
        raise InsufficientData("a numeric reference column needs at least one finite value")
    edges = np.unique(np.quantile(x, np.linspace(0.0, 1.0, n_bins + 1)))
    cut_points = edges[1:-1]
    counts = np.bincount(bin_index(cut_points, x), minlength=cut_points.size + 1)
    distinct, distinct_counts = np.unique(x, return_counts=True)
    if x.size <= sample_size:
        sample = np.sort(x)
    else:
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(x, size=sample_size, replace=False))
    low = distinct.size <= LOW_CARDINALITY
    std = float(np.std(x))
    distribution: Distribution | None = None
    if with_values and x.size > sample_size:
        if distinct.size <= EXACT_REFERENCE_VALUES:
            distribution = Distribution(distinct, distinct_counts.astype(np.int64))
        else:
            distribution = reference_distribution(
                [x], sample=sample, std=std, low=float(distinct[0]), high=float(distinct[-1])
            )
    blob = None if distribution is None else encode_distribution(distribution)
    reference = NumericReference(
        n=int(x.size),
        n_missing=int(raw.size - x.size),
        mean=float(np.mean(x)),
        std=std,
        min=float(edges[0]),
        max=float(edges[-1]),
        n_unique=int(distinct.size),
        edges=tuple(edges.tolist()),
        counts=tuple(counts.tolist()),
        sample=tuple(sample.tolist()),
        distinct_values=tuple(distinct.tolist()) if low else None,
        distinct_counts=tuple(distinct_counts.tolist()) if low else None,
        values_sha256=None if blob is None else hashlib.sha256(blob).hexdigest(),
        values_binned=distribution is not None and not distribution.exact,
    )
    reference._distribution = distribution
    return reference


def profile_categorical(values: npt.ArrayLike) -> CategoricalReference:
    keys, missing = category_keys(values)
    present = keys[~missing]
    if present.size == 0:
        raise InsufficientData("a categorical reference column needs at least one value")
    categories, counts = np.unique(present, return_counts=True)
    return CategoricalReference(
        n=int(present.size),
        n_missing=int(missing.sum()),
        counts={str(k): int(c) for k, c in zip(categories.tolist(), counts.tolist(), strict=True)},
    )


def _column_values(data: pd.DataFrame | Mapping[str, npt.ArrayLike], name: str) -> npt.ArrayLike:
    import pandas as pd  # here, not at the top: the registry profiles without pandas

    if name not in data:
        raise KeyError(f"reference dataset has no column {name!r}")
    column = data[name]
    result: npt.ArrayLike = column
    if isinstance(column, pd.Series):
        dtype = column.dtype
        if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
            result = column.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            result = column.to_numpy(dtype=object, na_value=None)
    return result


def _profile_column(
    values: npt.ArrayLike, kind: FeatureType, *, n_bins: int, sample_size: int, seed: int
) -> NumericReference | CategoricalReference:
    if kind is FeatureType.NUMERIC:
        return profile_numeric(values, n_bins=n_bins, sample_size=sample_size, seed=seed)
    return profile_categorical(values)


class ReferenceProfile(_Frozen):
    """Everything the evaluator keeps of a reference dataset; JSON-serialisable and hashable."""

    n_rows: int
    n_bins: int = DEFAULT_BINS
    sample_size: int = DEFAULT_SAMPLE_SIZE
    seed: int = 0
    features: dict[str, ColumnReference]
    prediction: ColumnReference | None = None
    scores: dict[str, NumericReference] = Field(default_factory=dict)
    """Per class label: the profile of that class's probability score."""
    performance: PerformanceReference | None = None
    """Score calibration and the loss model, when the reference came with its outcomes."""

    @classmethod
    def build(
        cls,
        data: pd.DataFrame | Mapping[str, npt.ArrayLike],
        feature_types: Mapping[str, FeatureType],
        *,
        prediction: str | None = None,
        prediction_type: FeatureType = FeatureType.CATEGORICAL,
        score_columns: Mapping[str, str] | None = None,
        target: str | None = None,
        n_bins: int = DEFAULT_BINS,
        sample_size: int = DEFAULT_SAMPLE_SIZE,
        seed: int = 0,
    ) -> ReferenceProfile:
        """Profile ``data``: each feature per its type, the prediction column, class scores.

        ``score_columns`` maps a class label to the column holding its probability; ``target``
        names the outcome column (then the profile has its ``performance`` part).
        """
        options: dict[str, Any] = {"n_bins": n_bins, "sample_size": sample_size, "seed": seed}
        features = {
            name: _profile_column(_column_values(data, name), kind, **options)
            for name, kind in feature_types.items()
        }
        prediction_profile = (
            None
            if prediction is None
            else _profile_column(_column_values(data, prediction), prediction_type, **options)
        )
        scores = {
            label: profile_numeric(_column_values(data, column), **options, with_values=False)
            for label, column in (score_columns or {}).items()
        }
        lengths = {np.asarray(_column_values(data, name)).shape[0] for name in feature_types}
        if len(lengths) > 1:
            raise ValueError("reference columns differ in length")
        return cls(
            n_rows=lengths.pop() if lengths else 0,
            n_bins=n_bins,
            sample_size=sample_size,
            seed=seed,
            features=features,
            prediction=prediction_profile,
            scores=scores,
            performance=None
            if target is None
            else build_performance_reference(
                target_name=target,
                target=_column_values(data, target),
                regression=prediction_type is FeatureType.NUMERIC,
                features={name: _column_values(data, name) for name in feature_types},
                numeric={n: t is FeatureType.NUMERIC for n, t in feature_types.items()},
                prediction=None if prediction is None else _column_values(data, prediction),
                scores={
                    label: _column_values(data, column)
                    for label, column in (score_columns or {}).items()
                },
            ),
        )

    def canonical_json(self) -> bytes:
        """Sorted keys, no whitespace: the bytes the content hash is taken over."""
        payload = self.model_dump(mode="json")
        if payload.get("performance") is None:  # profiles from before it hash as they did
            payload.pop("performance", None)
        return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8")

    @cached_property
    def content_hash(self) -> str:
        """``sha256:<hex>`` of :meth:`canonical_json`; equal profiles hash equal across runs."""
        return "sha256:" + hashlib.sha256(self.canonical_json()).hexdigest()

    def numeric_columns(self) -> list[NumericReference]:
        """The numeric feature and prediction columns (those drift reads values of)."""
        columns = [*self.features.values(), self.prediction]
        return [c for c in columns if isinstance(c, NumericReference)]

    def missing_values(self) -> set[str]:
        """SHA-256 of every distribution blob named but not attached yet."""
        return {
            c.values_sha256 for c in self.numeric_columns() if c.needs_values and c.values_sha256
        }

    def attach_values(self, blobs: Mapping[str, bytes]) -> None:
        for column in self.numeric_columns():
            sha = column.values_sha256
            if column.needs_values and sha is not None and sha in blobs:
                column.attach(blobs[sha])

    def blobs(self) -> dict[str, bytes]:
        """The attached distribution blobs by SHA-256."""
        found = {c.values_sha256: c.blob() for c in self.numeric_columns()}
        return {sha: blob for sha, blob in found.items() if sha is not None and blob is not None}

    def column(self, name: str) -> NumericReference | CategoricalReference:
        if name not in self.features:
            raise KeyError(f"reference profile has no feature {name!r}")
        return self.features[name]
