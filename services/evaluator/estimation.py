"""Estimated performance of a window and performance segments (pure).

An ``estimated_*`` objective is judged when its window closes, from accumulators fed with every
prediction of the window. What the reference's outcomes taught (``ReferenceProfile.performance``)
is applied as the predictions arrive: a classifier's scores are read through the reference's
calibration before they reach CBPE's accumulators (expected confusion counts, and the expected
ROC curve for ``estimated_roc_auc``); a regression's rows go through the reference's loss model
(direct loss estimation), whose predicted absolute and squared errors are summed.

A *segment* (objective parameter ``segment: attribute=value``) restricts any performance metric
to the predictions whose attribute has that value. Its need key is the unsegmented one behind
``("segment", attribute, value)``, so each segment has accumulators of its own; label metrics
filter their labels the same way (``labels``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from shared.contracts import Objective
from shared.stats import InsufficientData, category_key, category_keys
from shared.stats.accumulators import ExpectedConfusionAccumulator
from shared.stats.cbpe import (
    ESTIMATES,
    ScoreRankAccumulator,
    estimate_sampling_error,
    estimated_roc_auc,
    estimated_roc_auc_sampling_error,
)
from shared.stats.dle import (
    PREDICTION,
    LossEstimateAccumulator,
    LossModel,
    estimated_mae,
    estimated_regression_sampling_error,
    estimated_rmse,
)
from shared.stats.reference import ReferenceProfile

from .errors import SegmentError

if TYPE_CHECKING:
    from .columns import ColumnBatch
    from .judge import Measurement
    from .plan import WindowPlan
    from .window import WindowState

__all__ = [
    "ESTIMATION_KINDS",
    "EstimationAccumulator",
    "SegmentError",
    "accumulator_from_state",
    "feed",
    "measure",
    "new_accumulator",
    "segment_of",
    "segment_rows",
    "segmented",
    "split_segment",
    "window_need",
]

NeedKey = tuple[str, ...]
EstimationAccumulator = (
    ExpectedConfusionAccumulator | ScoreRankAccumulator | LossEstimateAccumulator
)
ESTIMATION_KINDS = frozenset({"cbpe", "cbpe_auc", "dle"})
DEFAULT_POSITIVE_LABEL = "1"
SEGMENT = "segment"


def segment_of(objective: Objective) -> tuple[str, str] | None:
    """(attribute, value) of the objective's segment, or None."""
    raw = objective.parameters.get("segment")
    if raw is None:
        return None
    attribute, equals, value = raw.partition("=")
    if not equals or not attribute:
        raise SegmentError(f"segment {raw!r} is not 'attribute=value'")
    return attribute, value


def segmented(objective: Objective, key: NeedKey | None) -> NeedKey | None:
    """``key`` restricted to the objective's segment (unchanged without one)."""
    segment = segment_of(objective)
    if key is None or segment is None:
        return key
    return (SEGMENT, *segment, *key)


def split_segment(key: NeedKey) -> tuple[NeedKey, tuple[str, str] | None]:
    if key and key[0] == SEGMENT:
        return key[3:], (key[1], key[2])
    return key, None


def segment_rows(attributes: npt.NDArray[Any], segment: tuple[str, str]) -> npt.NDArray[np.bool_]:
    """Which rows' attribute value (objects, None where absent) is the segment's value."""
    keys, missing = category_keys(attributes)
    chosen: npt.NDArray[np.bool_] = ~missing & (keys == category_key(segment[1]))
    return chosen


def window_need(objective: Objective) -> NeedKey:
    metric = objective.metric
    label = objective.parameters.get("positive_label", DEFAULT_POSITIVE_LABEL)
    if metric in ("estimated_mae", "estimated_rmse"):
        key: NeedKey = ("dle",)
    elif metric == "estimated_roc_auc":
        key = ("cbpe_auc", label)
    else:
        key = ("cbpe", label)
    found = segmented(objective, key)
    assert found is not None
    return found


def new_accumulator(key: NeedKey) -> EstimationAccumulator | None:
    base, _ = split_segment(key)
    if base[0] == "cbpe":
        return ExpectedConfusionAccumulator(positive_label=base[1])
    if base[0] == "cbpe_auc":
        return ScoreRankAccumulator(positive_label=base[1])
    if base[0] == "dle":
        return LossEstimateAccumulator()
    return None


def accumulator_from_state(key: NeedKey, state: dict[str, Any]) -> EstimationAccumulator | None:
    base, _ = split_segment(key)
    if base[0] == "cbpe":
        return ExpectedConfusionAccumulator.from_state(state)
    if base[0] == "cbpe_auc":
        return ScoreRankAccumulator.from_state(state)
    if base[0] == "dle":
        return LossEstimateAccumulator.from_state(state)
    return None


def _loss_model(reference: ReferenceProfile | None) -> LossModel | None:
    performance = None if reference is None else reference.performance
    return None if performance is None else performance.loss_model


def _loss_inputs(
    model: LossModel, batch: ColumnBatch, rows: npt.NDArray[np.intp]
) -> npt.NDArray[np.int16]:
    columns = []
    for spec in model.inputs:
        if spec.name == PREDICTION:
            columns.append(spec.bin(batch.column("prediction", numeric=True)[rows]))
        elif spec.kind == "numeric":
            columns.append(spec.bin(batch.column(f"feature:{spec.name}", numeric=True)[rows]))
        else:
            keys, missing = batch.keys(f"feature:{spec.name}")
            columns.append(spec.bin_keys(keys[rows], missing[rows]))
    return np.stack(columns, axis=1)


def feed(
    acc: object, key: NeedKey, plan: WindowPlan, batch: ColumnBatch, rows: npt.NDArray[np.intp]
) -> bool:
    """Feed an estimation or segmented accumulator; False for any other (the window feeds it)."""
    base, segment = split_segment(key)
    if base[0] not in ESTIMATION_KINDS:
        return False
    if segment is not None:
        rows = rows[segment_rows(batch.attribute(segment[0]), segment)[rows]]
        if rows.size == 0:
            return True
    reference = plan.reference
    if isinstance(acc, LossEstimateAccumulator):
        model = _loss_model(reference)
        if model is not None:  # without one the objective reports why when judged
            bins = _loss_inputs(model, batch, rows)
            acc.update(*model.predict(bins))
        return True
    label = base[1]
    scores = batch.scores(label)[rows]
    performance = None if reference is None else reference.performance
    calibration = None if performance is None else performance.calibration_of(label)
    probabilities = scores if calibration is None else calibration.calibrate(scores)
    if isinstance(acc, ScoreRankAccumulator):
        acc.update(scores, probabilities)
    elif isinstance(acc, ExpectedConfusionAccumulator):
        keys, missing = batch.keys("prediction")
        acc.update_keys((keys[rows], missing[rows]), probabilities)
    return True


def measure(
    objective: Objective, window: WindowState, reference: ReferenceProfile | None
) -> Measurement:
    """An ``estimated_*`` metric of a closed window, with its sampling error."""
    from .judge import ConfigurationError, Measurement

    metric = objective.metric
    key = window_need(objective)
    acc = window.accumulators.get(key)
    if metric in ("estimated_mae", "estimated_rmse"):
        model = _loss_model(reference)
        if model is None:
            performance = None if reference is None else reference.performance
            why = (
                "the reference profile has no outcomes: upload the reference with its target column"
                if performance is None
                else (performance.loss_model_problem or "the reference has no loss model")
            )
            raise ConfigurationError(why)
        if not isinstance(acc, LossEstimateAccumulator):
            raise InsufficientData("no predictions accumulated")
        value = estimated_mae(acc) if metric == "estimated_mae" else estimated_rmse(acc)
        error = estimated_regression_sampling_error(metric, acc, model)
        return Measurement(value, acc.n, estimated=True, sampling_error=error)
    if metric == "estimated_roc_auc":
        if not isinstance(acc, ScoreRankAccumulator):
            raise InsufficientData("no scored predictions accumulated")
        return Measurement(
            estimated_roc_auc(acc),
            acc.n,
            estimated=True,
            sampling_error=estimated_roc_auc_sampling_error(acc),
        )
    if not isinstance(acc, ExpectedConfusionAccumulator):
        raise InsufficientData("no scored predictions accumulated")
    return Measurement(
        ESTIMATES[metric](acc),
        acc.n,
        estimated=True,
        sampling_error=estimate_sampling_error(metric, acc),
    )
