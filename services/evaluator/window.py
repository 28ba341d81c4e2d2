"""The accumulators of one open event-time window of one system (bounded memory)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from shared.stats import (
    CategoricalAccumulator,
    FairnessAccumulator,
    NumericAccumulator,
    OperationsAccumulator,
)

from . import estimation
from .columns import ColumnBatch
from .plan import Accumulator, NeedKey, WindowPlan, accumulator_from_state

__all__ = ["WindowState"]

MAX_MODEL_VERSIONS = 64


class WindowState:
    """Predictions accepted into ``[start, start + size)``: accumulators per plan need, the
    offsets they came from, model versions, and which needs started after the window did."""

    def __init__(self, *, start: int, size: int, reference_hash: str | None) -> None:
        self.start = start
        self.size = size
        self.reference_hash = reference_hash
        self.n = 0
        self.accumulators: dict[NeedKey, Accumulator] = {}
        self.partial: set[NeedKey] = set()
        self.offsets: dict[int, list[int]] = {}
        self.model_versions: dict[str, int] = {}

    @property
    def end(self) -> int:
        return self.start + self.size

    def model_version(self) -> str:
        if not self.model_versions:
            return ""
        return max(self.model_versions.items(), key=lambda item: (item[1], item[0]))[0]

    def update(
        self,
        plan: WindowPlan,
        batch: ColumnBatch,
        rows: npt.NDArray[np.intp],
        partition: int,
        offsets: npt.NDArray[np.int64],
    ) -> None:
        """Add the batch rows ``rows`` (indexes into ``batch``) to every need of ``plan``."""
        if rows.size == 0:
            return
        for key in plan.needs:
            acc = self.accumulators.get(key)
            if acc is None:
                acc = self.accumulators[key] = plan.new_accumulator(key)
                if self.n:
                    self.partial.add(key)
            _feed(acc, key, plan, batch, rows)
        self.n += int(rows.size)
        span = self.offsets.setdefault(partition, [int(offsets[rows[0]]), int(offsets[rows[-1]])])
        span[0] = min(span[0], int(offsets[rows].min()))
        span[1] = max(span[1], int(offsets[rows].max()))
        versions = batch.model_versions()
        chosen = Counter(
            [versions[i] for i in rows.tolist()] if rows.size < batch.size else versions
        )
        for version, count in sorted(chosen.items()):
            if version in self.model_versions or len(self.model_versions) < MAX_MODEL_VERSIONS:
                self.model_versions[version] = self.model_versions.get(version, 0) + count

    def to_json(self) -> str:
        accumulators = [
            [list(key), isinstance(acc, NumericAccumulator), acc.to_state()]
            for key, acc in self.accumulators.items()
        ]
        return orjson.dumps(
            {
                "start": self.start,
                "size": self.size,
                "reference_hash": self.reference_hash,
                "n": self.n,
                "accumulators": accumulators,
                "partial": [list(k) for k in sorted(self.partial)],
                "offsets": {str(p): span for p, span in self.offsets.items()},
                "model_versions": self.model_versions,
            }
        ).decode()

    @classmethod
    def from_json(cls, text: str) -> WindowState:
        data: dict[str, Any] = orjson.loads(text)
        window = cls(
            start=int(data["start"]), size=int(data["size"]), reference_hash=data["reference_hash"]
        )
        window.n = int(data["n"])
        for key, numeric, state in data["accumulators"]:
            need = tuple(key)
            window.accumulators[need] = accumulator_from_state(need, bool(numeric), state)
        window.partial = {tuple(k) for k in data["partial"]}
        window.offsets = {int(p): list(span) for p, span in data["offsets"].items()}
        window.model_versions = {str(k): int(v) for k, v in data["model_versions"].items()}
        return window


def _feed(
    acc: Accumulator,
    key: NeedKey,
    plan: WindowPlan,
    batch: ColumnBatch,
    rows: npt.NDArray[np.intp],
) -> None:
    if estimation.feed(acc, key, plan, batch, rows):  # CBPE, DLE, segments
        return
    if isinstance(acc, OperationsAccumulator):
        acc.update_predictions(batch.latency()[rows])
    elif isinstance(acc, FairnessAccumulator):
        acc.update(batch.attribute(key[1])[rows], batch.predicted()[rows])
    elif isinstance(acc, NumericAccumulator):
        acc.update(batch.column(key[1], numeric=True)[rows])
    elif isinstance(acc, CategoricalAccumulator):
        coded = batch.coded(key[1])
        if coded is None:
            acc.update(batch.column(key[1], numeric=False)[rows])
        else:
            acc.update_coded(coded.codes[rows], coded.keys, coded.missing)
