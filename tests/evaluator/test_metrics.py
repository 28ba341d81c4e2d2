"""The evaluator's per-objective and per-system series: threshold and state from the registry
snapshot, a state that a data gap does not reset and a take-over seeds from the database, series
removed when an objective or a system is retired, and the label delay histogram."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from services.evaluator.app import MIGRATIONS
from services.evaluator.consumer import PartitionState, SystemState
from services.evaluator.metrics import (
    LABEL_DELAY_BUCKETS,
    PREDICTION_LATENCY_BUCKETS,
    EvaluatorMetrics,
)
from services.evaluator.store import EvaluatorStore
from shared.bus import Record, Topics
from shared.contracts import EvaluationResult, EvaluationStatus, ObjectiveStatus, SystemSnapshot
from shared.db import Database
from shared.migrations import OUTBOX, migrated_database
from tests.evaluator.conftest import objective, system
from tests.factories import make_evaluation

FIRST = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def series(registry: CollectorRegistry, system_id: str) -> set[str]:
    """Names of the samples labelled with ``system_id``."""
    return {
        sample.name
        for family in registry.collect()
        for sample in family.samples
        if sample.labels.get("system") == system_id
    }


def snapshot(
    system_status: str = "active",
    threshold: float = 0.8,
    comparator: str = "ge",
    **objective_kw: Any,
) -> SystemSnapshot:
    acc = objective("accuracy", threshold, comparator, id="acc", severity="major", **objective_kw)
    found = system([acc], system_id="s1")
    return found.model_copy(update={"status": system_status})


def result(status: EvaluationStatus, window: int, value: float = 0.5) -> EvaluationResult:
    """An accuracy evaluation of objective ``acc`` of system ``s1``."""
    return make_evaluation(
        status,
        window,
        evaluation_id=f"e{window}-{status}",
        system_id="s1",
        first_window=FIRST,
        value=value,
    )


def test_threshold_info_and_zeroed_counters_come_with_the_snapshot() -> None:
    registry = CollectorRegistry()
    metrics = EvaluatorMetrics(registry)
    metrics.system_changed(snapshot())
    labels = {"system": "s1", "objective": "acc", "metric": "accuracy"}
    assert value(registry, "watchkeeper_objective_threshold", **labels) == 0.8
    assert (
        value(
            registry,
            "watchkeeper_objective_info",
            **labels,
            comparator="ge",
            severity="major",
            feature="",
        )
        == 1
    )
    assert value(registry, "watchkeeper_objective_state", **labels) == 0
    for status in EvaluationStatus:
        assert (
            value(registry, "watchkeeper_objective_evaluations_total", **labels, status=status) == 0
        )
    # a new version with another threshold and comparator replaces the old facts
    metrics.system_changed(snapshot(comparator="gt", threshold=0.7))
    assert value(registry, "watchkeeper_objective_threshold", **labels) == 0.7
    assert (
        value(
            registry,
            "watchkeeper_objective_info",
            **labels,
            comparator="ge",
            severity="major",
            feature="",
        )
        is None
    )
    assert (
        value(
            registry,
            "watchkeeper_objective_info",
            **labels,
            comparator="gt",
            severity="major",
            feature="",
        )
        == 1
    )


def test_state_keeps_the_last_verdict_through_a_data_gap() -> None:
    registry = CollectorRegistry()
    metrics = EvaluatorMetrics(registry)
    metrics.system_changed(snapshot())
    labels = {"system": "s1", "objective": "acc", "metric": "accuracy"}

    def state() -> float | None:
        return value(registry, "watchkeeper_objective_state", **labels)

    metrics.record(result(EvaluationStatus.BREACH, 0))
    assert state() == 2
    for gap in (EvaluationStatus.INSUFFICIENT_DATA, EvaluationStatus.ERROR):
        metrics.record(result(gap, 1))
        assert state() == 2, gap
        assert value(registry, "watchkeeper_objective_breached", **labels) == 1
        assert value(registry, "watchkeeper_objective_status", **labels, status=gap.value) == 1
    metrics.record(result(EvaluationStatus.PASS, 2, 0.9))
    assert state() == 1
    assert value(registry, "watchkeeper_objective_value", **labels) == 0.9
    counted = {
        status: value(registry, "watchkeeper_objective_evaluations_total", **labels, status=status)
        for status in ("pass", "breach", "insufficient_data", "error")
    }
    assert counted == {"pass": 1, "breach": 1, "insufficient_data": 1, "error": 1}


def test_a_retired_objective_loses_every_series_and_a_late_result_does_not_bring_them_back() -> (
    None
):
    registry = CollectorRegistry()
    metrics = EvaluatorMetrics(registry)
    metrics.system_changed(snapshot())
    metrics.record(result(EvaluationStatus.BREACH, 0))
    objective_series = {n for n in series(registry, "s1") if n.startswith("watchkeeper_objective")}
    assert {
        "watchkeeper_objective_value",
        "watchkeeper_objective_threshold",
        "watchkeeper_objective_state",
        "watchkeeper_objective_info",
        "watchkeeper_objective_evaluations_total",
    } <= objective_series
    metrics.system_changed(snapshot(status=ObjectiveStatus.RETIRED))
    assert not {n for n in series(registry, "s1") if n.startswith("watchkeeper_objective")}
    metrics.record(result(EvaluationStatus.BREACH, 1))
    assert not {n for n in series(registry, "s1") if n.startswith("watchkeeper_objective")}
    # made active again: back, at "no verdict yet"
    metrics.system_changed(snapshot())
    labels = {"system": "s1", "objective": "acc", "metric": "accuracy"}
    assert value(registry, "watchkeeper_objective_state", **labels) == 0


def _partition(sid: str, *, predictions: float, counters: dict[str, int]) -> PartitionState:
    part = PartitionState(partition=0, epoch=1, offsets={})
    part.systems[sid] = SystemState(predictions=predictions, outcomes=None, counters=counters)
    return part


def test_a_retired_or_removed_system_loses_its_series() -> None:
    registry = CollectorRegistry()
    metrics = EvaluatorMetrics(registry)
    for retire in ("status", "tombstone"):
        metrics.system_changed(snapshot())
        metrics.known_systems({"s1": snapshot()})
        metrics.checkpointed(
            {0: _partition("s1", predictions=1_700_000_000.0, counters={"predictions": 3})},
            {"s1": [np.asarray([5.0, 10.0])]},
        )
        metrics.record(result(EvaluationStatus.PASS, 0))
        present = series(registry, "s1")
        assert {
            "watchkeeper_evaluator_received_events_total",
            "watchkeeper_evaluator_watermark_timestamp_seconds",
            "watchkeeper_evaluator_watermark_lag_seconds",
            "watchkeeper_evaluator_label_delay_seconds_count",
            "watchkeeper_evaluator_late_predictions_total",
            "watchkeeper_objective_state",
            "watchkeeper_evaluations_total",
        } <= present, present
        if retire == "status":
            metrics.system_changed(snapshot(system_status="retired"))
        else:
            metrics.known_systems({})
        metrics.checkpointed(
            {0: _partition("s1", predictions=1_700_000_000.0, counters={"predictions": 3})}, {}
        )
        assert series(registry, "s1") == set(), (retire, series(registry, "s1"))


def test_stream_counts_watermarks_and_label_delays_after_a_checkpoint() -> None:
    registry = CollectorRegistry()
    metrics = EvaluatorMetrics(registry)
    metrics.known_systems(["s1", "s2"])
    counters = {
        "predictions": 10,
        "outcomes": 7,
        "labelled": 6,
        "duplicate_predictions": 2,
        "expired_outcomes": 1,
        "unknown_outcomes": 3,
    }
    delays = [np.asarray([-1.0, 30.0, 60.0, 61.0]), np.asarray([4000.0, 10 * 86400.0, 1e9])]
    part = _partition("s1", predictions=1_700_000_000.0, counters=counters)
    metrics.checkpointed({0: part}, {"s1": delays})

    def get(name: str, **labels: str) -> float | None:
        return value(registry, name, **labels)

    assert get("watchkeeper_evaluator_received_events_total", system="s1", kind="prediction") == 10
    assert get("watchkeeper_evaluator_received_events_total", system="s1", kind="outcome") == 7
    assert get("watchkeeper_evaluator_labelled_predictions_total", system="s1") == 6
    dropped = "watchkeeper_evaluator_dropped_events_total"
    assert get(dropped, system="s1", kind="prediction", reason="duplicate") == 2
    assert get(dropped, system="s1", kind="outcome", reason="expired") == 1
    assert get(dropped, system="s1", kind="outcome", reason="unmatched") == 3
    # a known system without events yet: its counters exist at 0
    assert get("watchkeeper_evaluator_received_events_total", system="s2", kind="prediction") == 0
    assert get(dropped, system="s2", kind="outcome", reason="duplicate") == 0
    wm = "watchkeeper_evaluator_watermark_timestamp_seconds"
    assert get(wm, system="s1", stream="predictions") == 1_700_000_000.0
    assert get(wm, system="s1", stream="outcomes") is None  # no outcome yet: no watermark
    lag = get("watchkeeper_evaluator_watermark_lag_seconds", system="s1", stream="predictions")
    assert lag is not None and lag > 0
    # the histogram against numpy's own count of values <= each bound (negatives as 0)
    every = np.clip(np.concatenate(delays), 0, None)
    for bound in LABEL_DELAY_BUCKETS:
        assert get(
            "watchkeeper_evaluator_label_delay_seconds_bucket", system="s1", le=repr(bound)
        ) == float(np.sum(every <= bound)), bound
    assert get("watchkeeper_evaluator_label_delay_seconds_bucket", system="s1", le="+Inf") == 7
    assert get("watchkeeper_evaluator_label_delay_seconds_count", system="s1") == 7
    assert get("watchkeeper_evaluator_label_delay_seconds_sum", system="s1") == float(every.sum())
    # the next checkpoint adds its own delays only
    part = _partition("s1", predictions=1_700_000_100.0, counters=counters)
    metrics.checkpointed({0: part}, {"s1": [np.asarray([5.0])]})
    assert get("watchkeeper_evaluator_label_delay_seconds_count", system="s1") == 8
    assert get(wm, system="s1", stream="predictions") == 1_700_000_100.0


def test_dead_letters_are_counted_by_source_topic() -> None:
    registry = CollectorRegistry()
    topics = Topics(prefix="x.")
    metrics = EvaluatorMetrics(registry, topics=topics)
    name = "watchkeeper_dlq_records_total"
    for topic in (topics.predictions, topics.outcomes, topics.registry):
        assert value(registry, name, service="evaluator", source_topic=topic) == 0
    metrics.dead_letter(Record(topics.outcomes, 0, 5, None, b"{", 0))
    assert value(registry, name, service="evaluator", source_topic=topics.outcomes) == 1
    assert value(registry, "watchkeeper_evaluator_dead_lettered_total") == 1


async def test_a_taken_over_partition_seeds_state_from_the_newest_verdict(tmp_path: Path) -> None:
    """Restart or rebalance: the breach stays a breach (the newest pass or breach in the
    database; a later window with insufficient data does not count)."""
    db = Database(f"sqlite:///{tmp_path / 'e.db'}")
    async with migrated_database(db, [OUTBOX, MIGRATIONS]):
        store = EvaluatorStore(db, stream="p")
        results = [
            result(EvaluationStatus.PASS, 0),
            result(EvaluationStatus.BREACH, 1),
            result(EvaluationStatus.INSUFFICIENT_DATA, 2),
        ]
        store.add_results([(r, 60, None) for r in results], topic="evaluations")
        store.commit()
        store.close()
        registry = CollectorRegistry()
        metrics = EvaluatorMetrics(registry, db=db)
        metrics.system_changed(snapshot())
        labels = {"system": "s1", "objective": "acc", "metric": "accuracy"}
        assert value(registry, "watchkeeper_objective_state", **labels) == 0
        metrics.seed(metrics.latest_verdicts(["s1"]))
        assert value(registry, "watchkeeper_objective_state", **labels) == 2
        assert value(registry, "watchkeeper_objective_breached", **labels) == 1
        # the partition moves away: its measurements are the new owner's
        metrics.record(results[1])
        metrics.partition_dropped(["s1"])
        assert value(registry, "watchkeeper_objective_state", **labels) == 0
        assert value(registry, "watchkeeper_objective_value", **labels) is None
        assert value(registry, "watchkeeper_objective_threshold", **labels) == 0.8


async def test_window_state_size_of_the_owned_partitions(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'e.db'}")
    async with migrated_database(db, [OUTBOX, MIGRATIONS]):
        store = EvaluatorStore(db, stream="wk.predictions")
        claim = store.claim(0)
        text = '{"n": 3, "name": "é"}'
        store.save_partition(
            0, epoch=claim.epoch, offsets={}, state={}, windows=[("s1", 60, 0, text)], closed=[]
        )
        store.commit()
        store.close()
        registry = CollectorRegistry()
        metrics = EvaluatorMetrics(registry, db=db)
        assert value(registry, "watchkeeper_evaluator_window_state_bytes", kind="open") == 0
        metrics.checkpointed({0: PartitionState(0, 1, {})}, {})
        assert value(registry, "watchkeeper_evaluator_window_states", kind="open") == 1
        assert value(registry, "watchkeeper_evaluator_window_state_bytes", kind="open") == len(
            text.encode()
        )
        assert value(registry, "watchkeeper_evaluator_window_states", kind="label") == 0


def test_a_drift_objective_names_its_feature() -> None:
    registry = CollectorRegistry()
    metrics = EvaluatorMetrics(registry)
    psi = objective("psi", 0.2, "le", id="drift", parameters={"feature": "income"})
    metrics.system_changed(system([psi], system_id="s1"))
    labels = {"system": "s1", "objective": "drift", "metric": "psi"}
    info = {**labels, "comparator": "le", "severity": "minor", "feature": "income"}
    assert value(registry, "watchkeeper_objective_info", **info) == 1


def test_prediction_latency_per_system_from_latency_ms() -> None:
    """Milliseconds from the events, in seconds; events without a latency are not counted;
    a known system without predictions has its series at 0."""
    registry = CollectorRegistry()
    metrics = EvaluatorMetrics(registry)
    metrics.known_systems(["s1", "s2"])
    latencies = [np.asarray([3.0, np.nan, 40.0]), np.asarray([1500.0, 90_000.0])]
    metrics.checkpointed({}, {}, {"s1": latencies})
    name = "watchkeeper_evaluator_prediction_latency_seconds"
    seconds = np.asarray([0.003, 0.04, 1.5, 90.0])
    for bound in PREDICTION_LATENCY_BUCKETS:
        found = value(registry, f"{name}_bucket", system="s1", le=repr(bound))
        assert found == float(np.sum(seconds <= bound)), bound
    assert value(registry, f"{name}_count", system="s1") == 4
    assert value(registry, f"{name}_sum", system="s1") == pytest.approx(seconds.sum())
    assert value(registry, f"{name}_count", system="s2") == 0
