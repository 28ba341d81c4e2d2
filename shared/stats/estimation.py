"""What the reference's outcomes teach the estimators: score calibration and the loss model.

A reference dataset uploaded with its outcomes (the target column) gives the profile a
:class:`PerformanceReference`: for a classifier, per scored class, whether its scores are read
as given or through an isotonic map (``calibration``, decided as NannyML's CBPE decides); for a
regression with its predictions, the loss model of direct loss estimation (``dle``). Every
``estimated_*`` metric reads it; without it (no target column) CBPE takes the scores as given
and the regression estimates are not available.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict

from ._common import InsufficientData, category_keys
from .calibration import ScoreCalibration, calibrate_scores
from .dle import LossModel, fit_loss_model

__all__ = ["MAX_FIT_ROWS", "PerformanceReference", "build_performance_reference"]

MAX_FIT_ROWS = 100_000
"""Reference rows the registry reads for calibration and the loss model (a uniform sample)."""


class PerformanceReference(BaseModel):
    """The reference's outcomes, as the estimators use them."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    target: str
    """The reference column holding the outcomes."""
    n_labelled: int
    """Rows with an outcome (of the rows read: at most ``MAX_FIT_ROWS``)."""
    calibration: dict[str, ScoreCalibration] = {}
    """Per class label with a score column: how CBPE reads its scores."""
    loss_model: LossModel | None = None
    loss_model_problem: str | None = None
    """Why a regression reference has no loss model (no prediction column, too few rows)."""

    def calibration_of(self, label: str) -> ScoreCalibration | None:
        return self.calibration.get(label)


def build_performance_reference(
    *,
    target_name: str,
    target: npt.ArrayLike,
    regression: bool,
    features: Mapping[str, npt.ArrayLike],
    numeric: Mapping[str, bool],
    prediction: npt.ArrayLike | None,
    scores: Mapping[str, npt.ArrayLike],
) -> PerformanceReference:
    """Calibrations of every score column (classification) or the loss model (regression)."""
    if regression:
        y = np.asarray(target, dtype=np.float64)
        labelled = int(np.count_nonzero(np.isfinite(y)))
        if prediction is None:
            return PerformanceReference(
                target=target_name,
                n_labelled=labelled,
                loss_model_problem="the reference has no prediction column",
            )
        columns = {
            name: np.asarray(values, dtype=np.float64 if numeric[name] else object)
            for name, values in features.items()
        }
        try:
            model = fit_loss_model(columns, numeric, np.asarray(prediction, dtype=np.float64), y)
        except InsufficientData as exc:
            return PerformanceReference(
                target=target_name, n_labelled=labelled, loss_model_problem=str(exc)
            )
        return PerformanceReference(target=target_name, n_labelled=labelled, loss_model=model)
    keys, missing = category_keys(target)
    calibration = {}
    for label, values in sorted(scores.items()):
        outcome = np.where(missing, np.nan, (keys == label).astype(np.float64))
        calibration[label] = calibrate_scores(values, outcome)
    return PerformanceReference(
        target=target_name, n_labelled=int(np.count_nonzero(~missing)), calibration=calibration
    )
