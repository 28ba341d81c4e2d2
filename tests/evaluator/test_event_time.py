"""Event time against hostile and paused streams: far-future and ancient events reaching the
evaluator straight from the bus, backfills that pause, and where late predictions are seen."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from services.evaluator.api import router
from services.evaluator.consumer import ProcessorConfig
from services.evaluator.errors import ANSWERS
from services.evaluator.metrics import EvaluatorMetrics
from services.evaluator.settings import Settings
from shared.contracts import EvaluationResult, EvaluationStatus, Evidence, PredictionEvent
from shared.errors import install_answers

from .conftest import (
    T0,
    WALL,
    Harness,
    Stream,
    flush_events,
    objective,
    reference_profile,
    synthetic_stream,
    system,
)
from .test_processor import OBJECTIVES, _same

VOLUME = [objective("volume", 1, "ge", id="vol"), objective("accuracy", 0.5, id="acc")]


def prediction(system_id: str, event_id: str, at: datetime | float) -> PredictionEvent:
    when = at if isinstance(at, datetime) else datetime.fromtimestamp(at, UTC)
    return PredictionEvent(
        event_id=event_id,
        system_id=system_id,
        model_version="m1",
        timestamp=when,
        features={"x1": 0.1, "x2": 0.2, "x3": 5.0, "c": "a"},
        prediction=1,
        scores={"0": 0.4, "1": 0.6},
    )


def steady(system_id: str, start: float, stop: float, step: float = 2.0) -> list[PredictionEvent]:
    n = int((stop - start) / step)
    return [
        prediction(system_id, f"{system_id}-{start + i * step}", start + i * step) for i in range(n)
    ]


def starts(results: dict[str, dict[str, Any]], system_id: str) -> list[float]:
    return sorted(
        {
            datetime.fromisoformat(r["window_start"]).timestamp()
            for r in results.values()
            if r["system_id"] == system_id
        }
    )


@pytest.mark.parametrize("year", [2200, 9999])
async def test_a_far_future_event_on_the_bus_is_refused_and_disturbs_nothing(
    make_harness: Any, year: int
) -> None:
    """Sent to Kafka by a producer other than ingest: the event is counted as refused, the
    system's watermark stays, no empty window is judged, present-day events that follow are
    not late, and another system of the same partition is evaluated as usual."""
    a, b = system(VOLUME, system_id="a"), system(VOLUME, system_id="b")
    harness: Harness = make_harness([a, b])
    harness.wall = T0 + 900  # "now": the streams below are live
    before = steady("a", T0, T0 + 300) + steady("b", T0, T0 + 300)
    future = [prediction("a", "from-the-future", datetime(year, 12, 31, 23, 0, tzinfo=UTC))]
    after = steady("a", T0 + 300, T0 + 600) + steady("b", T0 + 300, T0 + 600)
    last = [prediction("a", "a-last", T0 + 620), prediction("b", "b-last", T0 + 620)]
    preds, _ = harness.records(Stream(predictions=before + future + after + last))
    for i in range(0, len(preds), 40):
        harness.feed(preds[i : i + 40])
        harness.checkpoint()
    results = harness.evaluations()
    for sid in ("a", "b"):
        # windows up to T0+600 closed by T0+620 (5 s lateness), nothing beyond
        assert starts(results, sid) == [T0 + 60 * k for k in range(10)], sid
        breaches = [
            r for r in results.values() if r["system_id"] == sid and r["status"] == "breach"
        ]
        assert breaches == [], sid
    counters = harness.processor.partition(0).systems["a"].counters
    assert counters.get("late_60s", 0) == 0
    assert counters["future_predictions"] == 1
    assert harness.processor.partition(0).systems["a"].predictions == T0 + 620


async def test_window_range_arithmetic_is_bounded(make_harness: Any) -> None:
    """Even an event the skew guard lets through (the wall clock itself centuries ahead)
    closes at most ``max_empty_windows`` empty windows without listing the whole gap."""
    config = ProcessorConfig(lateness_s=5.0, label_wait_s=1e9, max_empty_windows=50)
    harness: Harness = make_harness([system(VOLUME, system_id="a")], config=config)
    far = datetime(9000, 1, 1, tzinfo=UTC).timestamp()
    harness.wall = far
    preds, _ = harness.records(
        Stream(predictions=[*steady("a", T0, T0 + 120), prediction("a", "far", far)])
    )
    tracemalloc.start()
    try:
        harness.feed(preds)
        harness.checkpoint()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100 * 2**20, f"{peak / 2**20:.0f} MiB"
    counters = harness.processor.partition(0).systems["a"].counters
    gap = int((far - 60 - (T0 + 120)) // 60)  # up to the window before far's
    assert counters["empty_windows_skipped"] == gap - 50
    volumes = [r for r in harness.evaluations().values() if r["objective_id"] == "vol"]
    assert len(volumes) == 2 + 50


async def test_an_ancient_prediction_is_late_and_visible_per_window(make_harness: Any) -> None:
    harness: Harness = make_harness([system(VOLUME, system_id="a")])
    ancient = datetime(1, 1, 1, 0, 0, 30, tzinfo=UTC)
    events = [*steady("a", T0, T0 + 120), prediction("a", "ancient", ancient)]
    events += [prediction("a", "late-1", T0 + 10), prediction("a", "late-2", T0 + 20)]
    preds, _ = harness.records(Stream(predictions=events))
    harness.feed(preds)
    harness.checkpoint()
    state = harness.processor.partition(0).systems["a"]
    assert state.counters["late_60s"] == 3
    app = FastAPI()
    app.state.db = harness.db
    app.state.settings = Settings()
    install_answers(app, ANSWERS)
    app.include_router(router)
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://evaluator") as client:
        late = (await client.get("/v1/streams/a/late")).json()
        assert late["late_predictions"] == 3
        assert late["windows"] == [
            {
                "window_seconds": 60,
                "window_start": "0001-01-01T00:00:00Z",
                "window_end": "0001-01-01T00:01:00Z",
                "late_predictions": 1,
            },
            {
                "window_seconds": 60,
                "window_start": datetime.fromtimestamp(T0, UTC).isoformat().replace("+00:00", "Z"),
                "window_end": datetime.fromtimestamp(T0 + 60, UTC)
                .isoformat()
                .replace("+00:00", "Z"),
                "late_predictions": 2,
            },
        ]
        assert (await client.get("/v1/streams/nobody/late")).status_code == 404


def test_objective_breached_holds_through_insufficient_data() -> None:
    """A data gap must not resolve a paging alert: only pass or breach changes the gauge."""
    registry = CollectorRegistry()
    metrics = EvaluatorMetrics(registry)

    def result(status: EvaluationStatus, start: int) -> EvaluationResult:
        return EvaluationResult(
            id=f"s:o:v1:{start}:r0",
            system_id="s",
            model_version="m",
            objective_id="o",
            objective_version=1,
            window_start=datetime.fromtimestamp(start, UTC),
            window_end=datetime.fromtimestamp(start + 60, UTC),
            metric="accuracy",
            parameters={},
            value=None if status is EvaluationStatus.INSUFFICIENT_DATA else 0.5,
            threshold=0.7,
            comparator="ge",
            status=status,
            n_samples=3,
            evidence=Evidence(objective_version=1),
        )

    def breached() -> float | None:
        return registry.get_sample_value(
            "watchkeeper_objective_breached",
            {"system": "s", "objective": "o", "metric": "accuracy"},
        )

    metrics.record(result(EvaluationStatus.BREACH, 0))
    assert breached() == 1
    metrics.record(result(EvaluationStatus.INSUFFICIENT_DATA, 60))
    assert breached() == 1
    metrics.record(result(EvaluationStatus.ERROR, 120))
    assert breached() == 1
    metrics.record(result(EvaluationStatus.PASS, 180))
    assert breached() == 0


# --- pauses --------------------------------------------------------------------------------


def _backfill() -> tuple[Any, dict[int, Stream]]:
    profile = reference_profile()
    systems = (
        system(OBJECTIVES, system_id="a", reference=profile),
        system(OBJECTIVES[:4], system_id="b", reference=profile),
    )
    streams = {
        p: synthetic_stream(system_id=sid, seed=seed, n=500, rate=1.5, label_delay_s=60.0)
        for p, (sid, seed) in enumerate((("a", 11), ("b", 12)))
    }
    return (profile, systems), streams


_uninterrupted: dict[str, dict[str, Any]] = {}


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seed=st.integers(0, 10_000), pauses=st.sets(st.integers(1, 10), min_size=1, max_size=6))
async def test_pauses_in_a_backfill_change_no_evaluation(
    make_harness: Any, seed: int, pauses: set[int]
) -> None:
    """Last month's history replayed with 30 s pauses at random points (idle closing on, the
    wall clock days after the history) gives the evaluations of one uninterrupted delivery."""
    (profile, systems), streams = _backfill()
    if not _uninterrupted:
        whole: Harness = make_harness(systems, [profile])
        await whole.ready()
        whole.run(streams, seed=0, max_batch=100)
        _uninterrupted.update(whole.evaluations())
        assert len(_uninterrupted) > 100
    paused: Harness = make_harness(systems, [profile])
    await paused.ready()
    paused.run(streams, seed=seed, max_batch=100, pauses=pauses)
    assert paused.wall > WALL
    _same(_uninterrupted, paused.evaluations())


async def test_a_quiet_live_system_still_gets_its_last_window_judged(make_harness: Any) -> None:
    harness: Harness = make_harness([system(VOLUME, system_id="a")])
    harness.wall = T0 + 130  # events up to T0+120 arrive live
    preds, _ = harness.records(Stream(predictions=steady("a", T0, T0 + 120)))
    harness.feed(preds)
    harness.checkpoint()
    assert starts(harness.evaluations(), "a") == [T0]
    assert harness.pause(30.0) == 1  # now T0+160: the window [T0+60, T0+120) is judged
    harness.checkpoint()
    assert starts(harness.evaluations(), "a") == [T0, T0 + 60]
    counters = harness.processor.partition(0).systems["a"].counters
    assert counters.get("late_60s", 0) == 0


async def test_a_backfill_closes_by_event_time_when_live_traffic_resumes(
    make_harness: Any,
) -> None:
    """A paused backfill is not closed to the wall clock; its windows close when later
    events come (here the system's live traffic), and none of them is late."""
    harness: Harness = make_harness([system(VOLUME, system_id="a")])
    history = steady("a", T0, T0 + 600)
    preds, _ = harness.records(Stream(predictions=history[:150]))
    harness.feed(preds)
    assert harness.pause(30.0) == 0
    rest = history[150:] + flush_events("a", harness.wall).predictions
    preds, _ = harness.records(Stream(predictions=history[:150] + rest))
    harness.feed(preds[150:])
    harness.checkpoint()
    counters = harness.processor.partition(0).systems["a"].counters
    assert counters.get("late_60s", 0) == 0
    volumes = {
        datetime.fromisoformat(r["window_start"]).timestamp(): r["value"]
        for r in harness.evaluations().values()
        if r["objective_id"] == "vol" and r["value"]
    }
    assert volumes == {T0 + 60 * k: 30 for k in range(10)}
