"""Drift evaluations on river's synthetic streams equal Evidently's on the same rows.

A 20,000-row reference and windows of 1,000 predictions from river's Agrawal generator (nine
features: salaries, loans and values with heavy right tails, ages, and integer codes full of
ties) and SEA generator (three uniform features), some windows with river's feature
perturbation switched on (Agrawal) or rescaled (SEA). Every psi / ks / wasserstein /
jensenshannon / hellinger evaluation the evaluator publishes, and the dataset drift share,
equals Evidently 0.7's stattest on the reference rows and the window's rows (|delta| <= 1e-9)
with the same decision, and says "exact" in its detail. (The 5,000-value samples this replaced
differed by up to 0.02 in normed Wasserstein here and flipped decisions.)
"""

from __future__ import annotations

import itertools
import warnings
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from shared.contracts import FeatureSpec, FeatureType, PredictionEvent, Task
from shared.stats import ReferenceProfile
from tests.shared.stats.conftest import _import_evidently

from .conftest import T0, Harness, Stream, flush_events, objective, system

WINDOW = 60
PER_WINDOW = 1_000
REFERENCE_ROWS = 20_000
METHODS = {  # Evidently's default thresholds as objectives: breach == Evidently's "drifted"
    "psi": (0.1, "lt", "psi_stat_test"),
    "ks": (0.05, "gt", "ks_stat_test"),
    "wasserstein": (0.1, "lt", "wasserstein_stat_test"),
    "jensenshannon": (0.1, "lt", "jensenshannon_stat_test"),
    "hellinger": (0.1, "lt", "hellinger_stat_test"),
}


def _rows(generator: Any, n: int) -> list[dict[str, float]]:
    return [{str(k): float(v) for k, v in x.items()} for x, _ in generator.take(n)]


def agrawal(seed: int, n: int, perturbation: float) -> list[dict[str, float]]:
    from river.datasets import synth

    return _rows(synth.Agrawal(classification_function=2, seed=seed, perturbation=perturbation), n)


def sea(seed: int, n: int, scale: float) -> list[dict[str, float]]:
    from river.datasets import synth

    rows = _rows(synth.SEA(variant=1, seed=seed), n)
    return [{f"f{k}": v * scale if k == "0" else v for k, v in row.items()} for row in rows]


STREAMS = {
    # name: (reference, windows): each window is (generator seed, drift knob)
    "agrawal": (
        lambda: agrawal(1, REFERENCE_ROWS, 0.0),
        lambda i, knob: agrawal(100 + i, PER_WINDOW, knob),
        [0.0, 0.0, 0.05, 0.0, 0.2, 0.0, 0.1, 0.0],
    ),
    "sea": (
        lambda: sea(1, REFERENCE_ROWS, 1.0),
        lambda i, knob: sea(100 + i, PER_WINDOW, knob),
        [1.0, 1.0, 1.03, 1.0, 1.2, 1.0],
    ),
}


def _events(system_id: str, windows: list[list[dict[str, float]]]) -> list[PredictionEvent]:
    events = []
    for w, rows in enumerate(windows):
        step = WINDOW / (len(rows) + 1)
        for i, row in enumerate(rows):
            ts = T0 + w * WINDOW + (i + 1) * step
            events.append(
                PredictionEvent(
                    event_id=f"{system_id}-{w}-{i}",
                    system_id=system_id,
                    model_version="m1",
                    timestamp=datetime.fromtimestamp(ts, UTC),
                    features=row,
                    prediction=0,
                )
            )
    return events


@pytest.fixture(scope="module")
def evidently() -> SimpleNamespace:
    return _import_evidently()


@pytest.mark.parametrize("stream", sorted(STREAMS))
async def test_every_window_is_evidentlys_number_and_decision(
    make_harness: Any, evidently: SimpleNamespace, stream: str
) -> None:
    from evidently.legacy.core import ColumnType

    make_reference, make_window, knobs = STREAMS[stream]
    reference_rows = pd.DataFrame(make_reference())
    features = list(reference_rows.columns)
    profile = ReferenceProfile.build(reference_rows, dict.fromkeys(features, FeatureType.NUMERIC))
    objectives = [
        objective(
            method, threshold, comparator, id=f"{method}-{name}", parameters={"feature": name}
        )
        for name in features
        for method, (threshold, comparator, _) in METHODS.items()
    ]
    objectives.append(
        objective(
            "dataset_drift_share",
            0.5,
            "lt",
            id="share",
            parameters={"method": "wasserstein"},
        )
    )
    snapshot = system(
        objectives,
        system_id=stream,
        reference=profile,
        features=[FeatureSpec(name=n, type=FeatureType.NUMERIC) for n in features],
        task=Task.BINARY_CLASSIFICATION,
    )
    windows = [make_window(i, knob) for i, knob in enumerate(knobs)]
    harness: Harness = make_harness([snapshot], [profile])
    await harness.ready()
    predictions = _events(stream, windows) + flush_events(stream, T0 + 100 * WINDOW).predictions
    harness.run({0: Stream(predictions=predictions)}, seed=3, max_batch=700)

    by_window: dict[int, dict[str, dict[str, Any]]] = {}
    for result in harness.evaluations().values():
        start = int(datetime.fromisoformat(result["window_start"]).timestamp())
        by_window.setdefault(start, {})[result["objective_id"]] = result
    checked = 0
    for w, rows in enumerate(windows):
        results = by_window[int(T0) + w * WINDOW]
        current = pd.DataFrame(rows)
        drifted = 0
        for name, (method, (_, _, stattest)) in itertools.product(features, METHODS.items()):
            result = results[f"{method}-{name}"]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                theirs = getattr(evidently.stattests, stattest)(
                    reference_rows[name], current[name], ColumnType.Numerical, None
                )
            assert abs(result["value"] - float(theirs.drift_score)) <= 1e-9, (w, name, method)
            assert (result["status"] == "breach") == bool(theirs.drifted), (w, name, method)
            assert not result["approximate"]
            assert result["detail"].startswith("exact: reference 20000 values exact, window 1000")
            drifted += method == "wasserstein" and bool(theirs.drifted)
            checked += 1
        share = results["share"]
        assert share["value"] == pytest.approx(drifted / len(features), abs=1e-12)
        assert "every column compared exactly" in share["detail"]
    assert checked == len(windows) * len(features) * len(METHODS)
    knob_breaches = {
        w
        for w, results in by_window.items()
        if any(r["status"] == "breach" for r in results.values())
    }
    assert knob_breaches, "some perturbed window must drift"
