"""Direct loss estimation side by side with NannyML 0.13's DLE (LightGBM) on the same data.

A heteroscedastic regression (the error's spread depends on a numeric feature, a category and a
threshold on another feature) and two models of it (one fitted well, one misspecified), twelve
10,000-row references each, three shift patterns of six 2,000-row chunks each. The loss model
is not NannyML's (numpy oblivious trees instead of LightGBM, see ``shared.stats.dle``), so the
estimates differ chunk by chunk; what is compared is how close each comes to the realised MAE
and RMSE.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path
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

from .estimation_cases import (
    CHUNK,
    CHUNKS,
    REFERENCE_ROWS,
    REGRESSION_EXTRA_SHIFTS,
    REGRESSION_MODELS,
    REGRESSION_SHIFTS,
    quiet,
)
from .estimation_cases import regression_frame as frame

TYPES = {"x1": FeatureType.NUMERIC, "x2": FeatureType.NUMERIC, "c": FeatureType.CATEGORICAL}
SEEDS = tuple(range(1, 13))
"""Twelve references per model: over fewer, which estimator is closer on a pattern turns on
a few chunks (the realised values' own noise is most of both errors)."""
BEFORE_TAILS = Path(__file__).parent / "data" / "dle_loss_model_before_tails.json"
"""A loss model as fitted before the tail terms (small: 3 rounds of depth 2), with what it
predicted for six rows then."""


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
    acc.update(*model.predict(bins))
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


Errors = dict[tuple[str, str, str], list[float]]
"""Per (model, shift, metric), each chunk's absolute error of the estimate."""


def side_by_side(
    nannyml: Any,
    models: tuple[str, ...] = REGRESSION_MODELS,
    shifts: tuple[str, ...] = REGRESSION_SHIFTS,
    seeds: Iterable[int] = SEEDS,
) -> tuple[Errors, Errors, list[float]]:
    """Ours and NannyML's estimates against the realised values, chunk by chunk, and the
    seconds each of our loss models took to fit (its profile built)."""
    mine: Errors = {}
    theirs: Errors = {}
    fits: list[float] = []
    order = [p for p in (*REGRESSION_SHIFTS, *REGRESSION_EXTRA_SHIFTS) if p in shifts]
    for model_name in models:
        for seed in seeds:
            reference = frame(REFERENCE_ROWS, seed, None, model_name)
            started = time.perf_counter()
            model = loss_model(reference)
            fits.append(time.perf_counter() - started)
            analysis = pd.concat(
                [
                    frame(CHUNK, 1_000 * seed + 10 * k + p, shift, model_name)
                    for p, shift in enumerate((*REGRESSION_SHIFTS, *REGRESSION_EXTRA_SHIFTS))
                    if shift in shifts
                    for k in range(CHUNKS)
                ],
                ignore_index=True,
            )
            their_values = nannyml_dle(nannyml, reference, analysis)
            for i in range(len(analysis) // CHUNK):
                shift = order[i // CHUNKS]
                chunk = analysis.iloc[i * CHUNK : (i + 1) * CHUNK]
                error = chunk["actual"] - chunk["prediction"]
                truth = {"mae": error.abs().mean(), "rmse": float(np.sqrt((error**2).mean()))}
                acc = estimate(model, chunk)
                ours = {"mae": estimated_mae(acc), "rmse": estimated_rmse(acc)}
                for metric, value in ours.items():
                    their_value = float(their_values[(metric, "value")].iloc[i])
                    key = (model_name, shift, metric)
                    mine.setdefault(key, []).append(abs(value - truth[metric]))
                    theirs.setdefault(key, []).append(abs(their_value - truth[metric]))
    return mine, theirs, fits


def test_dle_comes_as_close_to_the_realised_values_as_nannymls(nannyml: Any) -> None:
    """Two models, twelve references each, three shift patterns of six chunks: per model,
    pattern and metric, ours is on average at least as close to the realised value."""
    mine, theirs, _ = side_by_side(nannyml)
    assert len(mine) == 2 * len(REGRESSION_MODELS) * len(REGRESSION_SHIFTS)
    for key, errors in mine.items():
        assert len(errors) == len(SEEDS) * CHUNKS
        assert np.mean(errors) <= np.mean(theirs[key]), key


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
    assert [bool(table) for table in model.absolute.linear] == [True, True, False, True]
    assert model.squared.feature == () and model.squared.absolute_scale > 1.0


def test_tail_terms_continue_the_trend_beyond_the_reference() -> None:
    """The error grows with |x1|; beyond the reference's range trees alone stay flat, the
    tail terms keep growing (up to one range width further), and stay put inside."""
    model = loss_model(frame(5_000, 9))
    x1 = np.asarray([0.0, 4.0, 6.0, 9.0, 13.0, 50.0])
    rows = pd.DataFrame({"x1": x1, "x2": 0.0, "c": "a", "prediction": 2.0 * x1})
    columns = {
        "x1": x1,
        "x2": rows["x2"].to_numpy(),
        "c": rows["c"].to_numpy(dtype=object),
        PREDICTION: rows["prediction"].to_numpy(),
    }
    bins = model.bin_columns(columns)
    trees = model.absolute.base + model.absolute.leaves(bins)
    assert trees[2] == trees[1]  # the trees are flat beyond the reference
    estimate_ = model.absolute.predict(bins)
    assert estimate_[0] < estimate_[1] < estimate_[2] < estimate_[3] < estimate_[4]
    assert estimate_[5] == estimate_[4]  # bounded: no further than one range width
    assert estimate_[2] == pytest.approx(0.8 * (0.3 + 0.5 * 6.0), rel=0.35)


def test_a_loss_model_stored_before_the_tail_terms_loads_and_predicts_as_then() -> None:
    stored = json.loads(BEFORE_TAILS.read_text())
    model = LossModel.model_validate(stored["model"])
    assert model.absolute.linear == () and model.squared.linear == ()
    assert model.model_dump(mode="json") == stored["model"]  # so a profile hashes as it did
    rows = stored["rows"]
    bins = model.bin_columns(
        {
            "x1": np.asarray(rows["x1"]),
            "c": np.asarray(rows["c"], dtype=object),
            PREDICTION: np.asarray(rows["prediction"]),
        }
    )
    absolute, squared = model.predict(bins)
    assert absolute.tolist() == stored["absolute"]
    assert squared.tolist() == stored["squared"]


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
