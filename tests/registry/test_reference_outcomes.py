"""A reference uploaded with its outcomes: the profile's calibration and loss model, equal to
``ReferenceProfile.build``'s; objectives on estimated performance and segments are checked."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from shared.contracts import FeatureType
from shared.stats.reference import ReferenceProfile
from tests.factories import make_objective, make_system
from tests.registry.conftest import Registry
from tests.registry.test_references import upload_csv

FEATURES = [
    {"name": "income", "type": "numeric", "min": 0},
    {"name": "region", "type": "categorical", "categories": ["north", "south"]},
    {"name": "existing_customer", "type": "boolean", "nullable": True},
]
TYPES = {
    "income": FeatureType.NUMERIC,
    "region": FeatureType.CATEGORICAL,
    "existing_customer": FeatureType.BOOLEAN,
}


def dataset(n: int, seed: int, *, regression: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    income = np.round(rng.lognormal(10.0, 0.5, n), 0)
    region = rng.choice(["north", "south"], n)
    existing = rng.choice(np.array([True, False, None], dtype=object), n, p=[0.5, 0.4, 0.1])
    signal = (np.log(income) - 10.0) * 2.0 + (region == "south")
    if regression:
        prediction = signal * 100.0
        actual = prediction + rng.normal(size=n) * (20.0 + 30.0 * (region == "south"))
        return pd.DataFrame(
            {
                "income": income,
                "region": region,
                "existing_customer": existing,
                "prediction": prediction,
                "actual": actual,
            }
        )
    p = 1.0 / (1.0 + np.exp(-signal))
    score = 1.0 / (1.0 + np.exp(-3.0 * signal))  # overconfident
    actual = np.where(rng.random(n) < p, "1", "0").astype(object)
    actual[rng.random(n) < 0.1] = None  # outcomes not known for every row
    return pd.DataFrame(
        {
            "income": income,
            "region": region,
            "existing_customer": existing,
            "prediction": (score >= 0.5).astype(int),
            "score_1": score,
            "actual": actual,
        }
    )


async def stored_profile(registry: Registry, system_id: str, frame: pd.DataFrame) -> Any:
    response = await upload_csv(registry, system_id, frame)
    assert response.status_code == 201, response.text
    body = (await registry.client.get(f"/v1/references/{response.json()['hash']}")).content
    return ReferenceProfile.model_validate_json(body)


async def test_classifier_outcomes_give_the_in_memory_calibration(registry: Registry) -> None:
    system_id = await registry.add_system(
        make_system(features=FEATURES, prediction={"classes": ["0", "1"], "scores": ["1"]})
    )
    frame = dataset(5_000, 1)
    stored = await stored_profile(registry, system_id, frame)
    in_memory = ReferenceProfile.build(
        frame, TYPES, prediction="prediction", score_columns={"1": "score_1"}, target="actual"
    )
    assert stored.performance is not None and stored.performance.target == "actual"
    assert stored.performance == in_memory.performance
    calibration = stored.performance.calibration["1"]
    assert calibration.applied and calibration.n == frame["actual"].notna().sum()


async def test_regression_outcomes_give_the_in_memory_loss_model(registry: Registry) -> None:
    system_id = await registry.add_system(
        make_system(features=FEATURES, task="regression", prediction={})
    )
    frame = dataset(3_000, 2, regression=True)
    stored = await stored_profile(registry, system_id, frame)
    in_memory = ReferenceProfile.build(
        frame,
        TYPES,
        prediction="prediction",
        prediction_type=FeatureType.NUMERIC,
        target="actual",
    )
    assert stored.performance is not None and stored.performance.loss_model is not None
    assert stored.performance == in_memory.performance


async def test_without_outcomes_the_profile_has_none(registry: Registry) -> None:
    system_id = await registry.add_system(
        make_system(features=FEATURES, prediction={"classes": ["0", "1"], "scores": ["1"]})
    )
    stored = await stored_profile(registry, system_id, dataset(500, 3).drop(columns="actual"))
    assert stored.performance is None


async def test_outcomes_outside_the_classes_are_refused_naming_the_column(
    registry: Registry,
) -> None:
    system_id = await registry.add_system(
        make_system(features=FEATURES, prediction={"classes": ["0", "1"], "scores": ["1"]})
    )
    frame = dataset(200, 4)
    frame.loc[17, "actual"] = "maybe"
    response = await upload_csv(registry, system_id, frame)
    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["column"] == "actual" and problem["first_bad_row"] == 18


async def test_segments_and_estimates_are_checked_against_the_system(registry: Registry) -> None:
    classifier = await registry.add_system(
        make_system(
            features=FEATURES,
            attributes=["region_code"],
            prediction={"classes": ["0", "1"]},  # no scores
        )
    )
    regression = await registry.add_system(
        make_system(features=FEATURES, task="regression", prediction={})
    )

    async def post(system_id: str, **objective: Any) -> Any:
        return await registry.client.post(
            f"/v1/systems/{system_id}/objectives", json=make_objective(**objective)
        )

    accepted = [
        (classifier, {"parameters": {"segment": "region_code=EU=west"}}),
        (classifier, {"parameters": {"segment": "region_code=1", "breach_on": "band"}}),
        (classifier, {"metric": "equalized_odds_difference", "comparator": "le",
                      "threshold": 0.1, "parameters": {"attribute": "region_code"}}),
        (regression, {"metric": "estimated_mae", "comparator": "le", "threshold": 5.0}),
        (regression, {"metric": "rmse", "comparator": "le", "threshold": 5.0,
                      "parameters": {"breach_on": "value"}}),
    ]  # fmt: skip
    for system_id, objective in accepted:
        response = await post(system_id, **objective)
        assert response.status_code == 201, (objective, response.text)
    refused = [
        (classifier, {"parameters": {"segment": "region"}}, ["parameters", "segment"], "="),
        (classifier, {"parameters": {"segment": "age=3"}}, ["parameters", "segment"], "age"),
        (classifier, {"parameters": {"breach_on": "maybe"}}, ["parameters", "breach_on"], ""),
        (classifier, {"metric": "estimated_roc_auc"}, ["metric"], "prediction.scores"),
        (classifier, {"metric": "psi", "parameters": {"segment": "region_code=1"}},
         ["parameters", "segment"], "takes no parameter"),
        (regression, {"metric": "estimated_accuracy"}, ["metric"], "does not apply"),
    ]  # fmt: skip
    for system_id, objective, loc, fragment in refused:
        response = await post(system_id, **objective)
        assert response.status_code == 422, (objective, response.text)
        detail = response.json()["detail"][0]
        assert detail["loc"] == ["body", *loc], (objective, detail)
        assert fragment in detail["msg"], (objective, detail)
