"""CBPE side by side with NannyML 0.13's on the same predictions.

Two classifiers (boosted trees, close to calibrated; a logistic regression made overconfident on
purpose), three shift patterns, six chunks of 2,000 rows after a 10,000-row reference: the
estimates' mean absolute error against the realised values is at most NannyML's, the
calibration decision is NannyML's, and every chunk's estimate equals NannyML's to rounding
(``TOLERANCE``: NannyML rounds the expected ROC curve's counts to five decimals).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from shared.contracts import FeatureType
from shared.stats.accumulators import ExpectedConfusionAccumulator
from shared.stats.calibration import ScoreCalibration
from shared.stats.cbpe import (
    ESTIMATES,
    ScoreRankAccumulator,
    estimate_sampling_error,
    estimated_roc_auc,
    estimated_roc_auc_sampling_error,
)
from shared.stats.reference import ReferenceProfile

from .estimation_cases import (
    CHUNK,
    CHUNKS,
    CLASSIFIER_SHIFTS,
    CLASSIFIERS,
    ClassificationCase,
    classification_case,
    quiet,
)

TOLERANCE = 1e-6
METRICS = ("roc_auc", "accuracy", "precision", "recall", "f1")
REALISED = {
    "roc_auc": lambda y, pred, score: skm.roc_auc_score(y, score),
    "accuracy": lambda y, pred, score: skm.accuracy_score(y, pred),
    "precision": lambda y, pred, score: skm.precision_score(y, pred),
    "recall": lambda y, pred, score: skm.recall_score(y, pred),
    "f1": lambda y, pred, score: skm.f1_score(y, pred),
}


def profile_of(case: ClassificationCase, *, target: str | None = "actual") -> ReferenceProfile:
    return ReferenceProfile.build(
        case.reference,
        dict.fromkeys(["x0", "x1", "x2", "x3"], FeatureType.NUMERIC),
        prediction="prediction",
        score_columns={"1": "score"},
        target=target,
    )


def ours(chunk: pd.DataFrame, calibration: ScoreCalibration | None) -> dict[str, Any]:
    """The window accumulators of one chunk, as the evaluator fills them."""
    scores = chunk["score"].to_numpy()
    probability = scores if calibration is None else calibration.calibrate(scores)
    confusion = ExpectedConfusionAccumulator(positive_label=1)
    confusion.update(chunk["prediction"].to_numpy(), probability)
    ranks = ScoreRankAccumulator(positive_label=1)
    ranks.update(scores, probability)
    values = {m.removeprefix("estimated_"): fn(confusion) for m, fn in ESTIMATES.items()}
    values["roc_auc"] = estimated_roc_auc(ranks)
    errors = {
        m.removeprefix("estimated_"): estimate_sampling_error(m, confusion) for m in ESTIMATES
    }
    errors["roc_auc"] = estimated_roc_auc_sampling_error(ranks)
    return {"values": values, "errors": errors}


def nannyml_cbpe(nannyml: Any, case: ClassificationCase) -> tuple[Any, pd.DataFrame]:
    with quiet():
        estimator = nannyml.CBPE(
            y_pred_proba="score",
            y_pred="prediction",
            y_true="actual",
            metrics=list(METRICS),
            chunk_size=CHUNK,
            problem_type="classification_binary",
        )
        estimator.fit(case.reference)
        result = estimator.estimate(case.analysis[["score", "prediction"]])
        frame = result.filter(period="analysis").to_df()
    return estimator, frame


def chunks(frame: pd.DataFrame) -> list[pd.DataFrame]:
    return [frame.iloc[k * CHUNK : (k + 1) * CHUNK] for k in range(len(frame) // CHUNK)]


def realised(chunk: pd.DataFrame) -> dict[str, float]:
    y, pred, score = chunk["actual"], chunk["prediction"], chunk["score"]
    return {m: float(fn(y, pred, score)) for m, fn in REALISED.items()}


@pytest.mark.parametrize("shift", CLASSIFIER_SHIFTS)
@pytest.mark.parametrize("model", CLASSIFIERS)
def test_estimates_are_at_least_as_close_to_the_realised_values_as_nannymls(
    nannyml: Any, model: str, shift: str
) -> None:
    case = classification_case(model, shift)
    profile = profile_of(case)
    assert profile.performance is not None
    calibration = profile.performance.calibration["1"]
    estimator, theirs = nannyml_cbpe(nannyml, case)
    assert calibration.applied == estimator.needs_calibration

    mine_errors: dict[str, list[float]] = {m: [] for m in METRICS}
    their_errors: dict[str, list[float]] = {m: [] for m in METRICS}
    for k, chunk in enumerate(chunks(case.analysis)):
        truth = realised(chunk)
        mine = ours(chunk, calibration)["values"]
        for metric in METRICS:
            their_value = float(theirs[(metric, "value")].iloc[k])
            assert mine[metric] == pytest.approx(their_value, abs=TOLERANCE), (metric, k)
            mine_errors[metric].append(abs(mine[metric] - truth[metric]))
            their_errors[metric].append(abs(their_value - truth[metric]))
    assert len(mine_errors["accuracy"]) == CHUNKS
    for metric in METRICS:
        assert np.mean(mine_errors[metric]) <= np.mean(their_errors[metric]) + TOLERANCE, metric


def test_the_miscalibrated_model_needs_the_calibration() -> None:
    """Before the profile kept a calibration, CBPE read the overconfident scores as given."""
    case = classification_case("overconfident_logistic", "one_feature")
    calibration = profile_of(case).performance.calibration["1"]  # type: ignore[union-attr]
    assert calibration.applied and calibration.x and calibration.reason.startswith("miscal")
    assert calibration.ece_before is not None and calibration.ece_after is not None
    assert calibration.ece_after < calibration.ece_before
    calibrated, raw = [], []
    for chunk in chunks(case.analysis):
        truth = realised(chunk)["accuracy"]
        calibrated.append(abs(ours(chunk, calibration)["values"]["accuracy"] - truth))
        raw.append(abs(ours(chunk, None)["values"]["accuracy"] - truth))
    assert np.mean(calibrated) < 0.02 < np.mean(raw)


def test_on_the_reference_itself_the_estimates_are_nannymls(nannyml: Any) -> None:
    case = classification_case("boosted_trees", "one_feature")
    calibration = profile_of(case).performance.calibration["1"]  # type: ignore[union-attr]
    estimator, _ = nannyml_cbpe(nannyml, case)
    reference = estimator.result.filter(period="reference").to_df()
    for k, chunk in enumerate(chunks(case.reference)):
        mine = ours(chunk, calibration)["values"]
        for metric in METRICS:
            theirs = reference[(metric, "value")].iloc[k]
            assert mine[metric] == pytest.approx(theirs, abs=TOLERANCE)


def test_sampling_errors_are_nannymls_formulas_on_the_windows_own_counts(nannyml: Any) -> None:
    """NannyML takes the spread from the reference, we from the window: on windows like the
    reference they agree closely. ROC AUC's is DeLong's, which adds the negatives' term; F1's is
    the delta method's, smaller than NannyML's (which overstates the spread, below)."""
    case = classification_case("boosted_trees", "one_feature")
    calibration = profile_of(case).performance.calibration["1"]  # type: ignore[union-attr]
    estimator, _ = nannyml_cbpe(nannyml, case)
    reference = estimator.result.filter(period="reference").to_df()
    for k, chunk in enumerate(chunks(case.reference)):
        errors = ours(chunk, calibration)["errors"]
        for metric in ("accuracy", "precision", "recall"):
            theirs = float(reference[(metric, "sampling_error")].iloc[k])
            assert errors[metric] == pytest.approx(theirs, rel=0.15), (metric, k)
        assert 0.5 < errors["f1"] / float(reference[("f1", "sampling_error")].iloc[k]) < 1.0
        their_auc = float(reference[("roc_auc", "sampling_error")].iloc[k])
        assert their_auc <= errors["roc_auc"] <= 2.0 * their_auc


def test_the_sampling_error_describes_the_spread_of_windows(rng: np.random.Generator) -> None:
    """Realised values of 400 windows of calibrated predictions spread as the band says."""
    spread: dict[str, list[float]] = {m: [] for m in METRICS}
    band: dict[str, list[float]] = {m: [] for m in METRICS}
    for _ in range(400):
        scores = rng.beta(2.0, 2.0, 500)
        actual = (rng.random(500) < scores).astype(np.int64)
        predicted = (scores >= 0.5).astype(np.int64)
        chunk = pd.DataFrame({"score": scores, "prediction": predicted, "actual": actual})
        estimate = ours(chunk, None)
        truth = realised(chunk)
        for metric in METRICS:
            spread[metric].append(truth[metric])
            band[metric].append(estimate["errors"][metric])
    for metric in METRICS:
        assert float(np.mean(band[metric])) == pytest.approx(float(np.std(spread[metric])), rel=0.2)


def test_binned_rank_estimate_stays_within_its_bound(rng: np.random.Generator) -> None:
    scores = rng.beta(2.0, 3.0, 30_000)
    probability = np.clip(scores + rng.normal(0.0, 0.01, scores.size), 0.0, 1.0)
    exact = ScoreRankAccumulator(positive_label=1, exact_scores=100_000)
    binned = ScoreRankAccumulator(positive_label=1, score_bins=1_000)
    for rows in np.array_split(np.arange(scores.size), 7):
        exact.update(scores[rows], probability[rows])
        binned.update(scores[rows], probability[rows])
    assert exact.exact and not binned.exact
    from shared.stats.cbpe import estimated_roc_auc_error_bound

    bound = estimated_roc_auc_error_bound(binned)
    assert 0 < bound < 0.01
    assert abs(estimated_roc_auc(binned) - estimated_roc_auc(exact)) <= bound
    assert not math.isnan(estimated_roc_auc(binned))
