"""Score calibration: scikit-learn's isotonic regression, NannyML's decision, the profile."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.isotonic import IsotonicRegression

from shared.contracts import FeatureType
from shared.stats.calibration import ScoreCalibration, calibrate_scores, isotonic_fit
from shared.stats.reference import ReferenceProfile

from .estimation_cases import quiet


@pytest.mark.parametrize("n", [3, 50, 2_000, 30_000])
def test_isotonic_map_is_scikit_learns(rng: np.random.Generator, n: int) -> None:
    scores = rng.beta(2.0, 2.0, n)
    scores[: n // 3] = np.round(scores[: n // 3], 2)  # ties
    scores[-1] = scores[0] + 1e-17  # closer than float64's resolution: one value
    outcomes = (rng.random(n) < scores**2).astype(np.float64)
    x, y = isotonic_fit(scores, outcomes)
    theirs = IsotonicRegression(out_of_bounds="clip").fit(scores, outcomes)
    np.testing.assert_array_equal(x, theirs.X_thresholds_)
    np.testing.assert_allclose(y, theirs.y_thresholds_, rtol=0, atol=1e-12)
    calibration = ScoreCalibration(method="isotonic", reason="", n=n, x=tuple(x), y=tuple(y))
    probe = np.concatenate([rng.random(1_000) * 1.4 - 0.2, [np.nan]])
    mine = calibration.calibrate(probe)
    assert np.isnan(mine[-1])
    np.testing.assert_allclose(mine[:-1], theirs.predict(probe[:-1]), rtol=0, atol=1e-12)


def _nannyml_decision(nannyml: Any, scores: np.ndarray, outcomes: np.ndarray) -> bool:
    from nannyml.calibration import IsotonicCalibrator, needs_calibration

    with quiet():
        return bool(needs_calibration(pd.Series(outcomes), pd.Series(scores), IsotonicCalibrator()))


@pytest.mark.parametrize(
    "truth",
    ["calibrated", "overconfident", "underconfident", "shifted", "separable", "one_class"],
)
def test_the_decision_is_nannymls(nannyml: Any, rng: np.random.Generator, truth: str) -> None:
    n = 8_000
    scores = rng.beta(2.0, 2.0, n)
    probability = {
        "calibrated": scores,
        "overconfident": 1.0 / (1.0 + np.exp(-8.0 * (scores - 0.5))),
        "underconfident": 0.3 + 0.4 * scores,
        "shifted": np.clip(scores + 0.15, 0.0, 1.0),
        "separable": (scores > 0.5).astype(np.float64),
        "one_class": np.zeros(n),
    }[truth]
    outcomes = (rng.random(n) < probability).astype(np.int64)
    mine = calibrate_scores(scores, outcomes)
    assert mine.applied == _nannyml_decision(nannyml, scores, outcomes)
    assert mine.n == n and mine.reason
    if truth in ("overconfident", "underconfident", "shifted"):
        assert mine.applied
        assert mine.ece_before is not None and mine.ece_after is not None
        assert mine.ece_after < mine.ece_before
    if truth in ("separable", "one_class"):
        assert not mine.applied and mine.ece_before is None


def test_calibrated_probabilities_are_nannymls(nannyml: Any, rng: np.random.Generator) -> None:
    from nannyml.calibration import IsotonicCalibrator

    scores = rng.beta(2.0, 5.0, 5_000)
    outcomes = (rng.random(scores.size) < np.sqrt(scores)).astype(np.int64)
    mine = calibrate_scores(scores, outcomes)
    theirs = IsotonicCalibrator()
    theirs.fit(scores, outcomes)
    probe = rng.random(2_000)
    np.testing.assert_allclose(mine.calibrate(probe), theirs.calibrate(probe), atol=1e-12)


def test_the_profile_records_the_calibration_and_keeps_its_old_hash(
    rng: np.random.Generator,
) -> None:
    n = 3_000
    scores = rng.beta(2.0, 2.0, n)
    data = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "prediction": (scores >= 0.5).astype(int),
            "score_1": scores,
            "actual": np.where(rng.random(n) < 0.5 + 0.8 * (scores - 0.5), "1", "0"),
        }
    )
    data.loc[:9, "actual"] = None  # rows without an outcome are left out
    options: dict[str, Any] = {
        "prediction": "prediction",
        "score_columns": {"1": "score_1"},
    }
    plain = ReferenceProfile.build(data, {"x": FeatureType.NUMERIC}, **options)
    labelled = ReferenceProfile.build(data, {"x": FeatureType.NUMERIC}, target="actual", **options)
    assert plain.performance is None and b'"performance"' not in plain.canonical_json()
    assert labelled.performance is not None
    calibration = labelled.performance.calibration["1"]
    assert labelled.performance.n_labelled == n - 10 == calibration.n
    assert calibration.applied  # under-confident scores
    again = ReferenceProfile.model_validate_json(labelled.canonical_json())
    assert again == labelled and again.content_hash == labelled.content_hash
    assert labelled.content_hash != plain.content_hash
