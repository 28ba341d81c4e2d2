"""Computing an objective's metric over one window and judging it (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.contracts import EvaluationStatus, Objective

__all__ = ["Judgement", "WindowData", "judge"]


@dataclass(frozen=True, slots=True)
class WindowData:
    predictions: Sequence[Any]
    actuals: Sequence[Any | None]
    """The actual outcome of each prediction, None while its label has not arrived."""


@dataclass(frozen=True, slots=True)
class Judgement:
    value: float | None
    status: EvaluationStatus
    n_samples: int
    label_coverage: float | None
    detail: str | None = None


def _status(objective: Objective, value: float, n: int) -> EvaluationStatus:
    if n < objective.min_samples:
        return EvaluationStatus.INSUFFICIENT_DATA
    met = objective.comparator.met(value, objective.threshold)
    return EvaluationStatus.PASS if met else EvaluationStatus.BREACH


def judge(objective: Objective, data: WindowData) -> Judgement:
    total = len(data.predictions)
    if objective.metric == "volume":
        return Judgement(float(total), _status(objective, float(total), total), total, None)
    if objective.metric == "accuracy":
        labelled = [
            (p, a) for p, a in zip(data.predictions, data.actuals, strict=True) if a is not None
        ]
        coverage = len(labelled) / total if total else None
        if not labelled:
            return Judgement(
                None, EvaluationStatus.INSUFFICIENT_DATA, 0, coverage, "no labelled predictions"
            )
        hits = np.fromiter((p == a for p, a in labelled), dtype=bool, count=len(labelled))
        value = float(hits.mean())
        return Judgement(value, _status(objective, value, len(labelled)), len(labelled), coverage)
    return Judgement(
        None, EvaluationStatus.ERROR, total, None, f"metric {objective.metric!r} not implemented"
    )
