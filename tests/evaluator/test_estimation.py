"""Estimated performance, sampling-error bands, segments and equalized odds, through the
stream processor (join, windows, revisions, checkpoints) against direct computations."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import equalized_odds_difference
from sklearn.metrics import accuracy_score

from services.evaluator.judge import Measurement, judge
from shared.contracts import (
    EvaluationStatus,
    FeatureSpec,
    FeatureType,
    OutcomeEvent,
    PredictionEvent,
    Task,
)
from shared.stats.reference import ReferenceProfile
from tests.shared.stats.estimation_cases import quiet

from .conftest import T0, Harness, Stream, flush_events, objective, synthetic_stream, system

FEATURES = {
    "x1": FeatureType.NUMERIC,
    "x2": FeatureType.NUMERIC,
    "x3": FeatureType.NUMERIC,
    "c": FeatureType.CATEGORICAL,
}


def overconfident(stream: Stream) -> Stream:
    """The synthetic stream's calibrated P(1) = sigmoid(1.5 x1) with tripled logits."""
    predictions = []
    for event in stream.predictions:
        assert event.scores is not None
        p = event.scores["1"]
        sharp = 1.0 / (1.0 + math.exp(-3.0 * math.log(p / (1.0 - p))))
        scores = {"0": 1.0 - sharp, "1": sharp}
        predictions.append(event.model_copy(update={"scores": scores}))
    return Stream(predictions, stream.outcomes)


def reference_of(stream: Stream) -> ReferenceProfile:
    """Every labelled prediction of the stream as a reference with its outcomes."""
    outcomes = {o.prediction_id: o.actual for o in stream.outcomes}
    rows = [
        {
            **p.features,
            "prediction": p.prediction,
            "score_1": p.scores["1"],  # type: ignore[index]
            "actual": outcomes[p.event_id],
        }
        for p in {p.event_id: p for p in stream.predictions}.values()
        if p.event_id in outcomes
    ]
    return ReferenceProfile.build(
        pd.DataFrame(rows),
        FEATURES,
        prediction="prediction",
        score_columns={"1": "score_1"},
        target="actual",
    )


def with_flush(stream: Stream, system_id: str = "sys") -> dict[int, Stream]:
    flush = flush_events(system_id, T0 + 100_000)
    return {0: Stream(stream.predictions + flush.predictions, stream.outcomes + flush.outcomes)}


def window_rows(stream: Stream, start: int, size: int = 60) -> list[PredictionEvent]:
    unique = {p.event_id: p for p in stream.predictions}
    return [p for p in unique.values() if start <= p.timestamp.timestamp() < start + size]


def final(results: dict[str, dict[str, Any]], objective_id: str, start: int) -> dict[str, Any]:
    chosen = [
        r
        for r in results.values()
        if r["objective_id"] == objective_id
        and datetime.fromisoformat(r["window_start"]).timestamp() == start
    ]
    assert chosen, objective_id
    return max(chosen, key=lambda r: r["revision"])


OBJECTIVES = [
    objective("estimated_accuracy", 0.6, id="est-acc"),
    objective("estimated_f1", 0.6, id="est-f1"),
    objective("estimated_roc_auc", 0.6, id="est-auc"),
    objective("estimated_accuracy", 0.6, id="est-acc-v", parameters={"segment": "g=v"}),
    objective("accuracy", 0.76, id="acc"),
    objective("accuracy", 0.76, id="acc-band", parameters={"breach_on": "band"}),
    objective("accuracy", 0.6, id="acc-u", parameters={"segment": "g=u"}),
    objective("roc_auc", 0.6, id="auc"),
    objective("equalized_odds_difference", 0.2, "le", id="eqodds", parameters={"attribute": "g"}),
]


@pytest.fixture
async def run(make_harness: Any) -> dict[str, Any]:
    reference = reference_of(overconfident(synthetic_stream(seed=99, n=4_000, labelled=1.0)))
    stream = overconfident(synthetic_stream(seed=7, n=2_500))
    harness: Harness = make_harness([system(OBJECTIVES, reference=reference)], [reference])
    await harness.ready()
    harness.run(with_flush(stream), seed=3, crashes=1)
    return {"reference": reference, "stream": stream, "results": harness.evaluations()}


async def test_estimates_read_the_scores_through_the_reference_calibration(
    run: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NML_DISABLE_USAGE_LOGGING", "1")  # NannyML's telemetry
    from nannyml.performance_estimation.confidence_based.metrics import estimate_roc_auc

    reference: ReferenceProfile = run["reference"]
    assert reference.performance is not None
    calibration = reference.performance.calibration["1"]
    assert calibration.applied  # the scores are overconfident
    results = run["results"]
    for start in (int(T0) + 60, int(T0) + 120):
        rows = window_rows(run["stream"], start)
        scores = np.asarray([p.scores["1"] for p in rows])  # type: ignore[index]
        predicted = np.asarray([p.prediction for p in rows])
        p = calibration.calibrate(scores)
        expected = float(np.mean(np.where(predicted == 1, p, 1.0 - p)))
        acc = final(results, "est-acc", start)
        assert acc["estimated"] and acc["n_samples"] == len(rows)
        assert acc["value"] == pytest.approx(expected, abs=1e-12)
        band = acc["evidence"]["band"]
        error = math.sqrt(expected * (1.0 - expected) / len(rows))
        assert band["sampling_error"] == pytest.approx(error)
        assert band["lower"] == pytest.approx(expected - 3 * error)
        assert band["upper"] == pytest.approx(expected + 3 * error)
        with quiet():
            their_auc = estimate_roc_auc(p, scores)
        assert final(results, "est-auc", start)["value"] == pytest.approx(their_auc, abs=1e-6)
        assert final(results, "est-auc", start)["evidence"]["band"]["sampling_error"] > 0
        in_v = np.asarray([p.attributes["g"] == "v" for p in rows])
        segment = final(results, "est-acc-v", start)
        assert segment["parameters"] == {"segment": "g=v"}
        assert segment["n_samples"] == int(in_v.sum())
        assert segment["value"] == pytest.approx(
            float(np.mean(np.where(predicted[in_v] == 1, p[in_v], 1.0 - p[in_v]))), abs=1e-12
        )


async def test_realised_values_carry_a_band_and_may_breach_on_it(run: dict[str, Any]) -> None:
    results = run["results"]
    plain = [r for r in results.values() if r["objective_id"] == "acc" and r["value"] is not None]
    assert len(plain) > 10 and all(r["evidence"]["band"] is not None for r in plain)
    differ = 0
    for result in plain:
        band = result["evidence"]["band"]
        assert band["lower"] <= result["value"] <= band["upper"] <= 1.0
        assert result["status"] == ("pass" if result["value"] >= 0.76 else "breach")
        twin = results[result["id"].replace(":acc:", ":acc-band:")]
        assert twin["evidence"]["band"] == band
        assert twin["parameters"] == {}  # a judging option: not in the fingerprint
        assert twin["status"] == ("pass" if band["upper"] >= 0.76 else "breach")
        assert "judged on the band's bound" in twin["detail"]
        differ += result["status"] != twin["status"]
    assert differ >= len(plain) // 3  # small windows: the value misses, the band does not


async def test_segments_and_equalized_odds_match_direct_computations(run: dict[str, Any]) -> None:
    results = run["results"]
    actual = {o.prediction_id: o.actual for o in run["stream"].outcomes}
    start = int(T0) + 60
    labelled = [p for p in window_rows(run["stream"], start) if p.event_id in actual]
    in_u = [p for p in labelled if p.attributes["g"] == "u"]
    segment = final(results, "acc-u", start)
    assert segment["n_samples"] == len(in_u)
    assert segment["value"] == pytest.approx(
        accuracy_score([actual[p.event_id] for p in in_u], [p.prediction for p in in_u])
    )
    whole = final(results, "acc", start)
    assert whole["n_samples"] == len(labelled) and whole["value"] != segment["value"]
    odds = final(results, "eqodds", start)
    assert odds["value"] == pytest.approx(
        equalized_odds_difference(
            [actual[p.event_id] for p in labelled],
            [p.prediction for p in labelled],
            sensitive_features=[p.attributes["g"] for p in labelled],
        ),
        abs=1e-12,
    )
    assert odds["evidence"]["band"] is None  # fairness values have no band


def test_breach_on_band_takes_the_bound_nearest_to_meeting_the_objective() -> None:
    measured = Measurement(0.70, 400, sampling_error=0.02)  # band [0.64, 0.76]
    cases = [
        ("ge", 0.75, "pass"),
        ("ge", 0.77, "breach"),
        ("le", 0.65, "pass"),
        ("lt", 0.6, "breach"),
    ]
    for comparator, threshold, status in cases:
        target = objective("accuracy", threshold, comparator, parameters={"breach_on": "band"})
        verdict = judge(target, lambda: measured)
        assert verdict.status.value == status, (comparator, threshold)
        assert verdict.value == 0.70 and verdict.band is not None
        plain = judge(objective("accuracy", threshold, comparator), lambda: measured)
        assert plain.band == verdict.band
    clipped = judge(objective("accuracy", 0.5), lambda: Measurement(0.99, 30, sampling_error=0.05))
    assert clipped.band is not None and clipped.band.upper == 1.0
    unknown = judge(
        objective("accuracy", 0.75, parameters={"breach_on": "band"}),
        lambda: Measurement(0.70, 400),
    )
    assert unknown.status is EvaluationStatus.BREACH and unknown.band is None
    assert "no sampling error" in (unknown.detail or "")


REGRESSION_FEATURES = [
    FeatureSpec(name="x1", type=FeatureType.NUMERIC),
    FeatureSpec(name="c", type=FeatureType.CATEGORICAL, categories=["a", "b", "c"]),
]


def regression_stream(seed: int, n: int, shift: float = 0.0) -> Stream:
    rng = np.random.default_rng(seed)
    stream = Stream()
    for i in range(n):
        x1 = float(rng.normal(shift, 1.0))
        c = str(rng.choice(["a", "b", "c"], p=[0.5, 0.3, 0.2]))
        at = datetime.fromtimestamp(T0 + i / 20.0, UTC)
        prediction = 2.0 * x1
        actual = prediction + float(rng.normal()) * (0.3 + abs(x1) + (c == "c"))
        stream.predictions.append(
            PredictionEvent(
                event_id=f"r{seed}-{i}",
                system_id="reg",
                model_version="m1",
                timestamp=at,
                features={"x1": x1, "c": c},
                prediction=prediction,
            )
        )
        stream.outcomes.append(
            OutcomeEvent(
                event_id=f"ro{seed}-{i}",
                system_id="reg",
                prediction_id=f"r{seed}-{i}",
                timestamp=at,
                actual=actual,
            )
        )
    return stream


async def test_regression_estimates_come_from_the_reference_loss_model(make_harness: Any) -> None:
    reference_stream = regression_stream(1, 4_000)
    outcomes = {o.prediction_id: o.actual for o in reference_stream.outcomes}
    frame = pd.DataFrame(
        [
            {**p.features, "prediction": p.prediction, "actual": outcomes[p.event_id]}
            for p in reference_stream.predictions
        ]
    )
    types = {"x1": FeatureType.NUMERIC, "c": FeatureType.CATEGORICAL}
    options: dict[str, Any] = {"prediction": "prediction", "prediction_type": FeatureType.NUMERIC}
    labelled = ReferenceProfile.build(frame, types, target="actual", **options)
    unlabelled = ReferenceProfile.build(frame, types, **options)
    objectives = [
        objective("estimated_mae", 2.0, "le", id="est-mae", window_seconds=60),
        objective("estimated_rmse", 2.0, "le", id="est-rmse", window_seconds=60),
        objective("mae", 2.0, "le", id="mae", window_seconds=60),
    ]
    stream = regression_stream(2, 2_400, shift=0.5)
    flush = flush_events("reg", T0 + 100_000)
    flush.predictions[0] = flush.predictions[0].model_copy(
        update={"prediction": 0.0, "features": {"x1": 0.0, "c": "a"}, "scores": None}
    )
    streams = {0: Stream(stream.predictions + flush.predictions, stream.outcomes + flush.outcomes)}
    results = {}
    for name, reference in (("labelled", labelled), ("unlabelled", unlabelled)):
        snapshot = system(
            objectives,
            system_id="reg",
            reference=reference,
            features=REGRESSION_FEATURES,
            task=Task.REGRESSION,
        )
        harness: Harness = make_harness([snapshot], [reference])
        await harness.ready()
        harness.run(streams, seed=2)
        results[name] = harness.evaluations()
    assert labelled.performance is not None and labelled.performance.loss_model is not None
    model = labelled.performance.loss_model
    start = int(T0) + 60
    rows = window_rows(stream, start)
    from shared.stats.dle import PREDICTION

    bins = model.bin_columns(
        {
            "x1": np.asarray([p.features["x1"] for p in rows]),
            "c": np.asarray([p.features["c"] for p in rows], dtype=object),
            PREDICTION: np.asarray([p.prediction for p in rows]),
        }
    )
    absolute, squared = model.predict(bins)
    mae = final(results["labelled"], "est-mae", start)
    assert mae["estimated"] and mae["n_samples"] == len(rows)
    assert mae["value"] == pytest.approx(float(absolute.mean()), rel=1e-9)
    rmse = final(results["labelled"], "est-rmse", start)
    assert rmse["value"] == pytest.approx(math.sqrt(float(squared.mean())), rel=1e-9)
    assert mae["evidence"]["band"]["sampling_error"] == pytest.approx(
        model.abs_error_std / math.sqrt(len(rows))
    )
    realised = final(results["labelled"], "mae", start)
    assert realised["evidence"]["band"] is not None
    assert (
        abs(mae["value"] - realised["value"]) < 4 * realised["evidence"]["band"]["sampling_error"]
    )
    refused = final(results["unlabelled"], "est-mae", start)
    assert refused["status"] == "error" and "target column" in refused["detail"]
