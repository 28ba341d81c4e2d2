"""Direct loss estimation side by side with NannyML 0.13's DLE (LightGBM) on the same data.

A heteroscedastic regression (the error's spread depends on a numeric feature, a category and a
threshold on another feature), three 10,000-row references, three shift patterns of six
2,000-row chunks each. The loss model is not NannyML's (numpy oblivious trees instead of
LightGBM, see ``shared.stats.dle``), so the estimates differ chunk by chunk; what is compared
is how close each comes to the realised MAE and RMSE.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from shared.contracts import FeatureType
from shared.stats._common import InsufficientData
from shared.stats.dle import (
    PREDICTION,
    LossEstimateAccumulator,
    LossModel,
    estimated_mae,
    estimated_regression_sampling_error,
    estimated_rmse,
    fit_loss_model,
)
from shared.stats.reference import ReferenceProfile

from .estimation_cases import CHUNK, CHUNKS, REFERENCE_ROWS, REGRESSION_SHIFTS, quiet
from .estimation_cases import regression_frame as frame

TYPES = {"x1": FeatureType.NUMERIC, "x2": FeatureType.NUMERIC, "c": FeatureType.CATEGORICAL}
SEEDS = (1, 11, 21)
SLACK = 1.10
"""The loss models are different models: per shift pattern ours may be up to 10 % further
from the realised values than NannyML's, and over the three patterns at most as far."""


def loss_model(reference: pd.DataFrame) -> LossModel:
    profile = ReferenceProfile.build(
        reference,
        TYPES,
        prediction="prediction",
        prediction_type=FeatureType.NUMERIC,
        target="actual",
    )
    assert profile.performance is not None and profile.performance.loss_model is not None
    return profile.performance.loss_model


def estimate(model: LossModel, chunk: pd.DataFrame) -> LossEstimateAccumulator:
    acc = LossEstimateAccumulator()
    columns = {
        "x1": chunk["x1"].to_numpy(),
        "x2": chunk["x2"].to_numpy(),
        "c": chunk["c"].to_numpy(dtype=object),
        PREDICTION: chunk["prediction"].to_numpy(),
    }
    bins = model.bin_columns(columns)
    acc.update(model.absolute.predict(bins), model.squared.predict(bins))
    return acc


def nannyml_dle(nannyml: Any, reference: pd.DataFrame, analysis: pd.DataFrame) -> pd.DataFrame:
    def typed(data: pd.DataFrame) -> pd.DataFrame:
        return data.assign(c=data["c"].astype("category"))

    with quiet():
        estimator = nannyml.DLE(
            feature_column_names=["x1", "x2", "c"],
            y_pred="prediction",
            y_true="actual",
            metrics=["mae", "rmse"],
            chunk_size=CHUNK,
        )
        estimator.fit(typed(reference))
        result = estimator.estimate(typed(analysis.drop(columns="actual")))
        frame_: pd.DataFrame = result.filter(period="analysis").to_df()
    return frame_


def test_dle_comes_as_close_to_the_realised_values_as_nannymls(nannyml: Any) -> None:
    """Three references (seeds), three shift patterns, six chunks each."""
    mine: dict[tuple[str, str], list[float]] = {}
    theirs: dict[tuple[str, str], list[float]] = {}
    for seed in SEEDS:
        reference = frame(REFERENCE_ROWS, seed)
        model = loss_model(reference)
        for p, shift in enumerate(REGRESSION_SHIFTS):
            analysis = pd.concat(
                [frame(CHUNK, 1_000 * seed + 10 * k + p, shift) for k in range(CHUNKS)],
                ignore_index=True,
            )
            their_values = nannyml_dle(nannyml, reference, analysis)
            for k in range(CHUNKS):
                chunk = analysis.iloc[k * CHUNK : (k + 1) * CHUNK]
                error = chunk["actual"] - chunk["prediction"]
                truth = {"mae": error.abs().mean(), "rmse": float(np.sqrt((error**2).mean()))}
                acc = estimate(model, chunk)
                ours = {"mae": estimated_mae(acc), "rmse": estimated_rmse(acc)}
                for metric, value in ours.items():
                    their_value = float(their_values[(metric, "value")].iloc[k])
                    mine.setdefault((shift, metric), []).append(abs(value - truth[metric]))
                    theirs.setdefault((shift, metric), []).append(abs(their_value - truth[metric]))
    for key, errors in mine.items():
        assert np.mean(errors) <= SLACK * np.mean(theirs[key]), key
    for metric in ("mae", "rmse"):
        keys = [key for key in mine if key[1] == metric]
        ours_all = np.mean([e for key in keys for e in mine[key]])
        theirs_all = np.mean([e for key in keys for e in theirs[key]])
        assert ours_all <= theirs_all, metric


def test_the_loss_model_is_deterministic_data_in_the_profile() -> None:
    reference = frame(3_000, 2)
    model = loss_model(reference)
    assert model == loss_model(reference)
    again = LossModel.model_validate_json(model.model_dump_json())
    chunk = frame(500, 3, "mixed")
    first, second = estimate(model, chunk), estimate(again, chunk)
    assert estimated_mae(first) == estimated_mae(second)
    assert model.n == 3_000 and model.n_fit == 3_000
    assert model.absolute.depth == 6 and len(model.absolute.feature) == 100


def test_rows_beyond_the_cell_budget_are_sampled() -> None:
    reference = frame(5_000, 4)
    columns = {"x1": reference["x1"].to_numpy(), "c": reference["c"].to_numpy(dtype=object)}
    model = fit_loss_model(
        columns,
        {"x1": True, "c": False},
        reference["prediction"].to_numpy(),
        reference["actual"].to_numpy(),
        max_cells=6_000,
        rounds=5,
    )
    assert model.n == 5_000 and model.n_fit == 2_000  # 6,000 cells over 3 inputs
    with pytest.raises(InsufficientData):
        fit_loss_model(columns, {"x1": True, "c": False}, np.zeros(100), np.ones(100))


def test_unseen_and_missing_values_have_a_bin() -> None:
    model = loss_model(frame(3_000, 5))
    chunk = frame(10, 6).assign(c=["z", None, *["a"] * 8], x1=[np.nan, *range(9)])
    acc = estimate(model, chunk)
    assert acc.n == 10 and np.isfinite(estimated_mae(acc))


def test_sampling_error_is_nannymls_from_the_reference_spread() -> None:
    reference = frame(4_000, 7)
    model = loss_model(reference)
    error = (reference["actual"] - reference["prediction"]).abs()
    acc = LossEstimateAccumulator.from_state(
        orjson.loads(orjson.dumps(estimate(model, frame(900, 8)).to_state()))
    )
    assert estimated_regression_sampling_error("estimated_mae", acc, model) == pytest.approx(
        float(error.std(ddof=0)) / 30.0
    )
    squared = error**2
    expected = np.sqrt(squared.std(ddof=0) ** 2 / (4 * 900 * squared.mean()))
    assert estimated_regression_sampling_error("estimated_rmse", acc, model) == pytest.approx(
        expected
    )
