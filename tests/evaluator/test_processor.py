"""The stream processor: join, windows, revisions and the delivery guarantee (on SQLite)."""

from __future__ import annotations

import math
import time
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from services.evaluator.consumer import MaybeWaiting, ProcessorConfig
from services.evaluator.pacing import OutcomePacer
from services.evaluator.store import EvaluatorStore
from shared.bus.framing import frame
from shared.contracts import OutcomeEvent, Task, encode

from .conftest import (
    T0,
    Harness,
    flush_events,
    objective,
    reference_profile,
    synthetic_stream,
    system,
)

OBJECTIVES = [
    objective("accuracy", 0.7, id="acc"),
    objective("roc_auc", 0.7, id="auc"),
    objective("label_coverage", 0.5, id="cov"),
    objective("equal_opportunity_difference", 0.3, "le", id="eod", parameters={"attribute": "g"}),
    objective("psi", 0.1, "lt", id="psi", parameters={"feature": "x1"}),
    objective("wasserstein", 0.1, "lt", id="wass", parameters={"feature": "x2"}),
    objective("jensenshannon", 0.1, "lt", id="js", parameters={"feature": "c"}),
    objective("missing_rate", 0.1, "le", id="miss", parameters={"feature": "x3"}),
    objective("unseen_category_rate", 0.05, "le", id="unseen", parameters={"feature": "c"}),
    objective("out_of_range_rate", 0.01, "le", id="oor", parameters={"feature": "x2"}),
    objective("volume", 100, id="vol"),
    objective("latency_percentile", 50, "le", id="p95", parameters={"percentile": "95"}),
    objective("estimated_accuracy", 0.6, id="cbpe"),
    objective("demographic_parity_difference", 0.2, "le", id="dpd", parameters={"attribute": "g"}),
    objective("dataset_drift_share", 0.5, "lt", id="share"),
    objective("accuracy", 0.7, id="acc5m", window_seconds=300),
]


def _stream_setup() -> tuple[Any, Any, dict[int, Any]]:
    profile = reference_profile()
    sys_a = system(OBJECTIVES, system_id="a", reference=profile)
    sys_b = system(OBJECTIVES[:4], system_id="b", reference=profile)
    streams = {}
    for partition, (sid, seed) in enumerate((("a", 7), ("b", 8))):
        stream = synthetic_stream(system_id=sid, seed=seed, n=2500)
        flush = flush_events(sid, T0 + 100_000)
        stream.predictions += flush.predictions
        stream.outcomes += flush.outcomes
        streams[partition] = stream
    return profile, (sys_a, sys_b), streams


def _starts(result: dict[str, Any], start: int) -> bool:
    return datetime.fromisoformat(result["window_start"]).timestamp() == start


def _same(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        x, y = dict(a[key]), dict(b[key])
        vx, vy = x.pop("value"), y.pop("value")
        x["evidence"], y["evidence"] = dict(x["evidence"]), dict(y["evidence"])
        bx, by = x["evidence"].pop("band", None), y["evidence"].pop("band", None)
        assert x == y, key
        if vx is None or vy is None:
            assert vx == vy, key
        else:  # float sums over differently cut batches differ in the last bits only
            assert math.isclose(vx, vy, rel_tol=1e-9, abs_tol=1e-12), key
        assert (bx is None) == (by is None), key
        for name in () if bx is None else bx:  # the sampling-error band: same, to rounding
            assert math.isclose(bx[name], by[name], rel_tol=1e-9, abs_tol=1e-12), key


def _in_records(
    results: dict[str, dict[str, Any]], offsets: dict[tuple[str, int], list[int]]
) -> dict[str, dict[str, Any]]:
    """Results of a run with one record per event, with the evidence's offset ranges moved to
    the records the events were framed into (``offsets[(topic, partition)][event]``)."""
    moved = {}
    for key, result in results.items():
        ranges = [
            {
                **r,
                "first": offsets[(r["topic"], r["partition"])][r["first"]],
                "last": offsets[(r["topic"], r["partition"])][r["last"]],
            }
            for r in result["evidence"]["offsets"]
        ]
        moved[key] = {**result, "evidence": {**result["evidence"], "offsets": ranges}}
    return moved


def _framed_offsets(
    harness: Harness, streams: dict[int, Any], max_events: int
) -> dict[tuple[str, int], list[int]]:
    offsets = {}
    for partition, stream in streams.items():
        for topic, items in (
            (harness.topics.predictions, stream.predictions),
            (harness.topics.outcomes, stream.outcomes),
        ):
            of = [0] * len(items)
            framed = frame([encode(e) for e in items], max_events=max_events)
            for record, (_, start, stop) in enumerate(framed):
                of[start:stop] = [record] * (stop - start)
            offsets[(topic, partition)] = of
    return offsets


async def test_results_do_not_depend_on_batching_interleaving_framing_or_crashes(
    make_harness: Any,
) -> None:
    """The same evaluations whatever the polls, crashes, events per record and pacing of the
    outcomes; with several
    events per record the evidence names record offsets (the events' records)."""
    profile, systems, streams = _stream_setup()
    reference: dict[str, dict[str, Any]] | None = None
    for seed, crashes, max_events, lead in (
        (0, 0, 1, None),
        (1, 0, 1, None),
        (2, 3, 1, None),
        (3, 5, 1, None),
        (4, 0, 7, None),
        (5, 3, 40, None),
        (6, 0, 1, 0.0),
        (7, 4, 1, 10.0),
        (8, 3, 40, 2.0),
    ):
        # lead: outcomes paced as the runner paces them (held back while more than `lead`
        # seconds ahead of their predictions, at most 300 events per partition)
        pacer = None if lead is None else OutcomePacer(lead_s=lead, max_held=300)
        harness: Harness = make_harness(systems, [profile], pacer=pacer)
        await harness.ready()
        harness.run(streams, seed=seed, crashes=crashes, max_events=max_events)
        if pacer is not None:
            assert harness.most_held > 0, "outcomes ran ahead and were held"
            assert pacer.held() == 0
        results = harness.evaluations()
        if reference is None:
            reference = results
            assert len(results) > 300
            revised = [r for r in results.values() if r["revision"] > 0]
            assert revised, "late labels must revise some windows"
        elif max_events == 1:
            _same(reference, results)
        else:
            _same(_in_records(reference, _framed_offsets(harness, streams, max_events)), results)


async def test_label_windows_kept_in_the_store_give_the_same_results(
    make_harness: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no label window kept in memory after a checkpoint, a very late label reads its
    window back from the store: the evaluations do not change."""
    profile = reference_profile()
    sys_a = system(OBJECTIVES, system_id="a", reference=profile)
    stream = synthetic_stream(system_id="a", n=3000, rate=4.0, label_delay_s=20.0)
    # a few labels of early predictions come 400 s late, long after their window's last
    # revision: their window is read back from the store
    labelled = {o.prediction_id for o in stream.outcomes}
    late = [p for p in stream.predictions[:400] if p.event_id not in labelled][:20]
    stream.outcomes += [
        OutcomeEvent(
            event_id=f"late-{p.event_id}",
            system_id="a",
            prediction_id=p.event_id,
            timestamp=p.timestamp + timedelta(seconds=400),
            actual=1,
        )
        for p in late
    ]
    stream.outcomes.sort(key=lambda o: o.timestamp)
    flush = flush_events("a", T0 + 100_000)
    stream.predictions += flush.predictions
    stream.outcomes += flush.outcomes
    reloaded = []
    load = EvaluatorStore.load_labels

    def counting(store: EvaluatorStore, *key: Any) -> str | None:
        found = load(store, *key)
        reloaded.extend([key] if found is not None else [])
        return found

    monkeypatch.setattr(EvaluatorStore, "load_labels", counting)
    results = []
    for in_memory in (256, 0):
        config = ProcessorConfig(
            lateness_s=5.0, label_wait_s=1e9, label_windows_in_memory=in_memory
        )
        harness: Harness = make_harness([sys_a], [profile], config=config)
        await harness.ready()
        reloaded.clear()
        # both topics delivered in event-time order, so windows finish their revisions
        # before the very late labels come
        preds, outs = harness.records(stream)
        stamps = [p.timestamp for p in stream.predictions] + [o.timestamp for o in stream.outcomes]
        merged = [r for _, r in sorted(zip(stamps, preds + outs, strict=True), key=lambda x: x[0])]
        for i in range(0, len(merged), 100):
            harness.feed(merged[i : i + 100])
            harness.checkpoint()
        results.append(harness.evaluations())
    assert reloaded, "a late label read its window back from the store"
    _same(results[0], results[1])


async def test_join_counts_duplicates_unknown_and_late(make_harness: Any) -> None:
    profile, systems, streams = _stream_setup()
    harness: Harness = make_harness(systems, [profile])
    await harness.ready()
    harness.run(streams, seed=5)
    counters = harness.processor.partition(0).systems["a"].counters
    assert counters["duplicate_predictions"] == 20
    assert counters["duplicate_outcomes"] == 10
    # outcomes for predictions that never came are purged once the horizon passed
    assert counters["unknown_outcomes"] == 10
    assert counters["predictions"] == 2500 + 20 + 1
    labelled = counters["labelled"]
    assert labelled == len({o.prediction_id for o in streams[0].outcomes}) - 10
    # predictions up to 2 s out of order with 5 s lateness: none is late for 60 s windows
    assert counters.get("late_60s", 0) == 0


async def test_waiting_outcomes_found_with_or_without_their_ids_in_memory(
    make_harness: Any,
) -> None:
    """Outcomes that came before their prediction join it whether a filter in memory spares
    most predictions the lookup or every prediction is looked up in the store."""
    profile, systems, streams = _stream_setup()
    results, counters = [], []
    for bits in (16, 0):
        config = ProcessorConfig(lateness_s=5.0, label_wait_s=1e9, waiting_filter_bits=bits)
        harness: Harness = make_harness(systems, [profile], config=config)
        await harness.ready()
        harness.run(streams, seed=6, crashes=2)
        results.append(harness.evaluations())
        counters.append(harness.processor.partition(0).systems["a"].counters)
    assert counters[0]["waiting_outcomes"] > 0
    assert counters[0] == counters[1]
    _same(results[0], results[1])


async def test_window_metrics_match_independent_computations(make_harness: Any) -> None:
    profile, systems, streams = _stream_setup()
    harness: Harness = make_harness(systems, [profile])
    await harness.ready()
    harness.run({0: streams[0]}, seed=1)
    results = harness.evaluations()
    preds: dict[str, Any] = {}
    for p in streams[0].predictions:
        preds.setdefault(p.event_id, p)
    labels = {}
    for o in streams[0].outcomes:
        labels.setdefault(o.prediction_id, o)
    start = int(T0) + 60
    in_window = [p for p in preds.values() if start <= p.timestamp.timestamp() < start + 60]
    final_acc = max(
        (r for r in results.values() if r["objective_id"] == "acc" and _starts(r, start)),
        key=lambda r: r["revision"],
    )
    labelled = [p for p in in_window if p.event_id in labels]
    y = [labels[p.event_id].actual for p in labelled]
    assert final_acc["label_coverage"] == pytest.approx(len(labelled) / len(in_window))
    assert final_acc["value"] == pytest.approx(accuracy_score(y, [p.prediction for p in labelled]))
    auc = [r for r in results.values() if r["id"] == final_acc["id"].replace(":acc:", ":auc:")]
    assert auc and auc[0]["value"] == pytest.approx(
        roc_auc_score(y, [p.scores["1"] for p in labelled])  # type: ignore[index]
    )
    volume = [r for r in results.values() if r["objective_id"] == "vol" and _starts(r, start)]
    assert volume[0]["value"] == len(in_window)
    missing = [r for r in results.values() if r["objective_id"] == "miss" and _starts(r, start)]
    assert missing[0]["value"] == pytest.approx(
        np.mean([p.features["x3"] is None for p in in_window])
    )


async def test_revisions_follow_late_labels_until_the_horizon(make_harness: Any) -> None:
    profile, systems, streams = _stream_setup()
    harness: Harness = make_harness(systems, [profile])
    await harness.ready()
    harness.run({0: streams[0]}, seed=2)
    acc = sorted(
        (r for r in harness.evaluations().values() if r["objective_id"] == "acc"),
        key=lambda r: (r["window_start"], r["revision"]),
    )
    by_window: dict[str, list[dict[str, Any]]] = {}
    for r in acc:
        by_window.setdefault(r["window_start"], []).append(r)
    for revisions in by_window.values():
        assert [r["revision"] for r in revisions] == list(range(len(revisions)))
        coverages = [r["label_coverage"] for r in revisions]
        assert coverages == sorted(coverages)
        assert len(set(coverages)) == len(coverages), "a revision only when labels came"
    assert max(len(v) for v in by_window.values()) >= 3


async def test_every_catalog_metric_is_evaluated(make_harness: Any) -> None:
    profile, systems, streams = _stream_setup()
    harness: Harness = make_harness(systems, [profile])
    await harness.ready()
    harness.run({0: streams[0]}, seed=3)
    statuses: dict[str, set[str]] = {}
    for r in harness.evaluations().values():
        statuses.setdefault(r["objective_id"], set()).add(r["status"])
    for o in OBJECTIVES:
        assert statuses.get(o.id, set()) & {"pass", "breach"}, (o.id, statuses.get(o.id))
    assert "error" not in set().union(*statuses.values())


@pytest.mark.parametrize("metric", ["mae", "rmse", "mape", "r2"])
async def test_regression_metrics(make_harness: Any, metric: str) -> None:
    from sklearn import metrics as skm

    obj = objective(metric, 10.0, "le", id="reg")
    sys_r = system([obj], system_id="r", task=Task.REGRESSION)
    stream = synthetic_stream(system_id="r", n=600, labelled=1.0, label_delay_s=1.0)
    rng = np.random.default_rng(3)
    truth = {}
    for i, p in enumerate(stream.predictions):
        stream.predictions[i] = p.model_copy(update={"prediction": float(i % 7) + 1.0})
    for i, o in enumerate(stream.outcomes):
        value = float(rng.normal(4, 2))
        stream.outcomes[i] = o.model_copy(update={"actual": value})
        truth.setdefault(o.prediction_id, value)
    flush = flush_events("r", T0 + 100_000)
    stream.predictions += flush.predictions
    harness: Harness = make_harness(
        [sys_r], config=ProcessorConfig(lateness_s=5.0, label_wait_s=0.0)
    )
    harness.run({0: stream}, seed=4)
    preds: dict[str, Any] = {}
    for p in stream.predictions:
        preds.setdefault(p.event_id, p)
    start = int(T0)
    ids = [
        e for e, p in preds.items() if start <= p.timestamp.timestamp() < start + 60 and e in truth
    ]
    y = [truth[e] for e in ids]
    y_hat = [preds[e].prediction for e in ids]
    expected = {
        "mae": skm.mean_absolute_error(y, y_hat),
        "rmse": math.sqrt(skm.mean_squared_error(y, y_hat)),
        "mape": skm.mean_absolute_percentage_error(y, y_hat),
        "r2": skm.r2_score(y, y_hat),
    }[metric]
    finals = [r for r in harness.evaluations().values() if _starts(r, start)]
    final = max(finals, key=lambda r: r["revision"])
    assert final["value"] == pytest.approx(expected)


def test_the_waiting_filter_finds_every_id_added_and_few_others() -> None:
    added = [f"p-{i}" for i in range(5000)]
    maybe = MaybeWaiting(added[:1000], bits_per_id=16)
    maybe.add(added[1000:2000])
    assert all(maybe.maybe(added[:2000]))
    others = maybe.maybe([f"q-{i}" for i in range(10_000)])
    assert sum(others) < 1_000  # about the share of set bits (< 1/16 here)
    assert not maybe.full
    maybe.add(added[2000:])
    assert maybe.full and all(maybe.maybe(added))


async def test_a_partition_first_seen_between_checkpoints_is_taken_over_at_once(
    make_harness: Any,
) -> None:
    """On SQLite a second connection would wait for the open transaction's write lock (30 s,
    then fail): a partition that first appears after another one's rows were written joins
    that transaction, and the checkpoint makes both durable."""
    profile, systems, streams = _stream_setup()
    harness: Harness = make_harness(systems, [profile])
    await harness.ready()
    first, _ = harness.records(streams[0], 0)
    second, _ = harness.records(streams[1], 1)
    harness.feed(first[:100])  # partition 0's join rows, not committed yet
    started = time.monotonic()
    harness.feed(second[:100])
    assert time.monotonic() - started < 5
    harness.checkpoint()
    harness.crash()  # a restart reads both partitions back from the checkpoint
    for partition in (0, 1):
        state = harness.processor.partition(partition)
        assert state.epoch == 2 and state.offsets == {harness.topics.predictions: 100}
