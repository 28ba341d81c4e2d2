"""One system's predictions of a batch as numpy columns (each built once, lazily)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from shared.stats import category_keys

from .decoding import PredictionBatch
from .windows import FloatArray

__all__ = ["Coded", "ColumnBatch", "objects"]


def objects(values: Sequence[Any]) -> npt.NDArray[Any]:
    """Python values as a 1-D object array (``np.asarray`` would nest sequences)."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


class Coded(NamedTuple):
    """A categorical column as ``codes`` (-1: null) into distinct values, whose category keys
    and missing flags are ``keys`` and ``missing``."""

    codes: npt.NDArray[np.int64]
    keys: npt.NDArray[np.str_]
    missing: npt.NDArray[np.bool_]


class ColumnBatch:
    """Rows ``rows`` of a decoded batch (one system's), as the accumulators take them."""

    def __init__(self, batch: PredictionBatch, rows: npt.NDArray[np.intp] | None = None) -> None:
        self.batch = batch
        self.rows = rows
        self.size = batch.size if rows is None else int(rows.size)
        self.ts: FloatArray = batch.ts if rows is None else batch.ts[rows]
        self.offsets: npt.NDArray[np.int64] = batch.offsets if rows is None else batch.offsets[rows]
        self._cache: dict[tuple[str, ...], npt.NDArray[Any]] = {}
        self._coded: dict[str, Coded | None] = {}
        self._keyed: dict[str, tuple[npt.NDArray[np.str_], npt.NDArray[np.bool_]]] = {}

    def _cached(self, key: tuple[str, ...], build: Callable[[], npt.NDArray[Any]]) -> Any:
        found = self._cache.get(key)
        if found is None:
            found = build()
            if self.rows is not None:
                found = found[self.rows]
            self._cache[key] = found
        return found

    def take(self, values: list[Any]) -> list[Any]:
        """This view's entries of a full-batch list."""
        if self.rows is None:
            return values
        return [values[i] for i in self.rows.tolist()]

    def column(self, name: str, numeric: bool) -> npt.NDArray[Any]:
        """``prediction`` or ``feature:<name>``, as floats (numeric) or objects."""
        key = ("column", name, "1" if numeric else "0")
        if name == "prediction":
            if numeric:
                return self._cached(key, lambda: self.batch.prediction_numbers())  # type: ignore[no-any-return]
            return self._cached(key, lambda: objects(self.batch.predictions))  # type: ignore[no-any-return]
        feature = name.removeprefix("feature:")
        if numeric:
            return self._cached(key, lambda: self.batch.feature_numbers(feature))  # type: ignore[no-any-return]
        return self._cached(key, lambda: objects(self.batch.feature(feature)))  # type: ignore[no-any-return]

    def coded(self, name: str) -> Coded | None:
        """``prediction`` or a ``feature:<name>`` column as codes into its distinct values'
        category keys, when the decoder has it so (None: take ``column``)."""
        if name not in self._coded:
            if name == "prediction":
                found = self.batch.prediction_codes()
            elif name.startswith("feature:"):
                found = self.batch.feature_codes(name.removeprefix("feature:"))
            else:
                found = None
            if found is None:
                self._coded[name] = None
            else:
                codes, values = found
                keys, missing = category_keys(objects(values))
                if self.rows is not None:
                    codes = codes[self.rows]
                self._coded[name] = Coded(codes, keys, missing)
        return self._coded[name]

    def keys(self, name: str) -> tuple[npt.NDArray[np.str_], npt.NDArray[np.bool_]]:
        """``category_keys`` of a column (keys, missing), from its codes when it has them."""

        def build() -> tuple[npt.NDArray[np.str_], npt.NDArray[np.bool_]]:
            coded = self.coded(name)
            if coded is None:
                return category_keys(self.column(name, numeric=False))
            if coded.keys.size == 0:
                return np.full(coded.codes.size, "", dtype=np.str_), coded.codes < 0
            known = np.maximum(coded.codes, 0)
            return coded.keys[known], (coded.codes < 0) | coded.missing[known]

        found = self._keyed.get(name)
        if found is None:
            found = self._keyed[name] = build()
        return found

    def predicted(self) -> npt.NDArray[Any]:
        return self.column("prediction", numeric=False)

    def scores(self, label: str) -> FloatArray:
        return self._cached(("scores", label), lambda: self.batch.scores(label))  # type: ignore[no-any-return]

    def attribute(self, name: str) -> npt.NDArray[Any]:
        return self._cached(("attribute", name), lambda: objects(self.batch.attribute(name)))  # type: ignore[no-any-return]

    def latency(self) -> FloatArray:
        return self._cached(("latency",), lambda: self.batch.latency())  # type: ignore[no-any-return]

    def model_versions(self) -> list[str]:
        return self.take(self.batch.model_versions)
