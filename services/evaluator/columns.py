"""One system's decoded predictions of a batch as numpy columns (built once, lazily)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from shared.contracts import PredictionEvent

from .windows import FloatArray

__all__ = ["ColumnBatch", "json_array", "numeric_column"]


def numeric_column(values: list[Any]) -> FloatArray:
    """Floats, NaN for None; a non-number (wrong type) counts as missing too."""
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return np.asarray(
            [
                float(v) if isinstance(v, int | float) and not isinstance(v, bool) else math.nan
                for v in values
            ],
            dtype=np.float64,
        )


def json_array(texts: Sequence[str | None]) -> list[Any]:
    """Parse many small JSON texts with one orjson call (None stays None)."""
    if not texts:
        return []
    body = b",".join(b"null" if t is None else t.encode() for t in texts)
    return list(orjson.loads(b"[" + body + b"]"))


class ColumnBatch:
    def __init__(self, events: Sequence[PredictionEvent]) -> None:
        self.events = events
        self.size = len(events)
        self.ts: FloatArray = np.fromiter(
            (e.timestamp.timestamp() for e in events), dtype=np.float64, count=self.size
        )
        self._cache: dict[tuple[str, ...], npt.NDArray[Any]] = {}

    def _cached(self, key: tuple[str, ...], build: Any) -> npt.NDArray[Any]:
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = build()
        return found

    def column(self, name: str, numeric: bool) -> npt.NDArray[Any]:
        """``prediction`` or ``feature:<name>``, as floats (numeric) or objects."""

        def build() -> npt.NDArray[Any]:
            values: list[Any]
            if name == "prediction":
                values = [e.prediction for e in self.events]
            else:
                feature = name.removeprefix("feature:")
                values = [e.features.get(feature) for e in self.events]
            if numeric:
                return numeric_column(values)
            return np.asarray(values, dtype=object)

        return self._cached(("column", name, str(numeric)), build)

    def predicted(self) -> npt.NDArray[Any]:
        return self.column("prediction", numeric=False)

    def scores(self, label: str) -> FloatArray:
        def build() -> FloatArray:
            return numeric_column(
                [None if e.scores is None else e.scores.get(label) for e in self.events]
            )

        return self._cached(("scores", label), build)

    def attribute(self, name: str) -> npt.NDArray[Any]:
        return self._cached(
            ("attribute", name),
            lambda: np.asarray([e.attributes.get(name) for e in self.events], dtype=object),
        )

    def latency(self) -> FloatArray:
        return self._cached(
            ("latency",), lambda: numeric_column([e.latency_ms for e in self.events])
        )
