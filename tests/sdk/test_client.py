"""The sync client against a fake ingest: batching, ids, retries, refusals, spooling."""

from __future__ import annotations

import gzip
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson
import pytest

from tests.sdk.conftest import MODEL_VERSION, SYSTEM_ID, FakeIngest, spool_files, wait_until
from watchkeeper_sdk import (
    ClientClosedError,
    DeliveryError,
    InvalidEventError,
    Watchkeeper,
)

MakeClient = Callable[..., Watchkeeper]


def test_log_prediction_returns_generated_ids_and_ingest_gets_the_events(
    make_client: MakeClient, ingest: FakeIngest
) -> None:
    client = make_client()
    before = datetime.now(UTC)

    ids = [
        client.log_prediction(
            {"age": 41, "income": 52_000.5, "city": "Lyon", "debt": float("nan"), "vip": True},
            prediction=1,
            scores={"0": 0.25, "1": 0.75},
            attributes={"gender": "f"},
            latency_ms=3.5,
        )
        for _ in range(3)
    ]

    assert client.flush(timeout=5)
    assert len(set(ids)) == 3
    assert all(re.fullmatch(r"[0-9a-f]{32}", event_id) for event_id in ids)
    prefixes = [event_id[:12] for event_id in ids]  # hex Unix milliseconds
    assert sorted(prefixes) == prefixes
    events = ingest.wait_for(3)
    assert [event["event_id"] for event in events] == ids
    event = events[0]
    assert event["system_id"] == SYSTEM_ID
    assert event["model_version"] == MODEL_VERSION
    assert event["features"] == {
        "age": 41,
        "income": 52_000.5,
        "city": "Lyon",
        "debt": None,  # NaN means missing
        "vip": True,
    }
    assert event["prediction"] == 1
    assert event["scores"] == {"0": 0.25, "1": 0.75}
    assert event["attributes"] == {"gender": "f"}
    assert event["latency_ms"] == 3.5
    sent_at = datetime.fromisoformat(event["timestamp"])
    assert sent_at.tzinfo is not None
    assert before <= sent_at <= datetime.now(UTC)
    assert client.stats().sent == 3


def test_outcome_refers_to_the_prediction_and_caller_ids_and_times_are_kept(
    make_client: MakeClient, ingest: FakeIngest
) -> None:
    client = make_client()
    when = datetime(2024, 6, 1, 12, 30, tzinfo=UTC)

    prediction_id = client.log_prediction(
        {"x": 1.0}, "approve", event_id="req-42", timestamp=when, model_version="v2"
    )
    outcome_id = client.log_outcome(prediction_id, "default", timestamp="2024-06-03T08:00:00Z")

    assert prediction_id == "req-42"
    assert client.flush(timeout=5)
    by_path = {attempt.path: attempt.events for attempt in ingest.attempts}
    prediction = by_path["/v1/predictions"][0]
    outcome = by_path["/v1/outcomes"][0]
    assert prediction["timestamp"] == "2024-06-01T12:30:00+00:00"
    assert prediction["model_version"] == "v2"
    assert outcome == {
        "event_id": outcome_id,
        "system_id": SYSTEM_ID,
        "prediction_id": "req-42",
        "timestamp": "2024-06-03T08:00:00+00:00",
        "actual": "default",
    }


def test_batches_by_count_are_gzip_compressed_json_arrays(
    make_client: MakeClient, ingest: FakeIngest
) -> None:
    client = make_client(batch_size=10, linger=60.0)

    ids = [client.log_prediction({"i": i}, i % 2) for i in range(25)]

    # two full batches go without waiting for the (long) linger or a flush
    ingest.wait_for(20)
    assert [len(attempt.events) for attempt in ingest.attempts] == [10, 10]
    assert client.flush(timeout=5)
    assert [len(attempt.events) for attempt in ingest.attempts] == [10, 10, 5]
    assert ingest.accepted_ids() == ids
    for attempt in ingest.attempts:
        assert attempt.headers["content-encoding"] == "gzip"
        assert attempt.headers["content-type"] == "application/json"
        assert attempt.headers["authorization"] == "Bearer wk_test_key"


@pytest.mark.parametrize(
    ("url", "compress", "gzipped"),
    [
        ("http://ingest.test", None, True),
        ("https://ingest.example.org:8443/", None, True),
        ("http://127.0.0.1:8080", None, False),
        ("http://localhost:8080", None, False),
        ("http://[::1]:8080", None, False),
        ("http://127.0.0.1:8080", True, True),
        ("http://ingest.test", False, False),
    ],
)
def test_bodies_are_gzipped_unless_ingest_is_on_this_machine(
    make_client: MakeClient, ingest: FakeIngest, url: str, compress: bool | None, gzipped: bool
) -> None:
    client = make_client(url=url, compress=compress)

    event_id = client.log_prediction({"a": 1}, 0)

    assert client.flush(timeout=5)
    (attempt,) = ingest.attempts
    assert attempt.headers.get("content-encoding") == ("gzip" if gzipped else None)
    assert ingest.accepted_ids() == [event_id]


def test_the_wire_body_is_gzip_of_a_json_array(spool_dir: Path) -> None:
    import httpx

    bodies: list[bytes] = []

    def handle(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        return httpx.Response(202, json={"accepted": 1, "duplicates": [], "rejected": []})

    with Watchkeeper(
        "http://ingest.test",
        "key",
        "sys",
        model_version="v1",
        spool_dir=spool_dir,
        transport=httpx.MockTransport(handle),
        flush_at_exit=False,
    ) as client:
        event_id = client.log_prediction({"a": 1}, 0)
        assert client.flush(timeout=5)

    (body,) = bodies
    decoded = orjson.loads(gzip.decompress(body))
    assert isinstance(decoded, list)
    assert decoded[0]["event_id"] == event_id


def test_a_partial_batch_goes_after_the_linger_time(
    make_client: MakeClient, ingest: FakeIngest
) -> None:
    client = make_client(batch_size=1000, linger=0.1)

    for i in range(3):
        client.log_prediction({"i": i}, 0)

    ingest.wait_for(3)  # no flush: the linger timer sends the batch
    assert [len(attempt.events) for attempt in ingest.attempts] == [3]


def test_503_is_retried_no_sooner_than_retry_after(
    make_client: MakeClient, ingest: FakeIngest
) -> None:
    ingest.script.append((503, {"Retry-After": "1"}, {"detail": "Kafka unavailable"}))
    client = make_client()

    event_id = client.log_prediction({"a": 1}, 0)

    assert client.flush(timeout=10)
    first, second = ingest.attempts
    assert (first.status, second.status) == (503, 202)
    assert second.at - first.at >= 0.95
    assert ingest.accepted_ids() == [event_id]
    stats = client.stats()
    assert (stats.retried, stats.sent, stats.rejected, stats.dropped) == (1, 1, 0, 0)


def test_429_and_500_are_retried_with_backoff(make_client: MakeClient, ingest: FakeIngest) -> None:
    ingest.script.extend(
        [(429, {"Retry-After": "0"}, {"detail": "slow down"}), (500, {}, {"detail": "boom"})]
    )
    client = make_client(max_retries=5)

    ids = [client.log_prediction({"a": i}, 0) for i in range(3)]

    assert client.flush(timeout=10)
    assert [attempt.status for attempt in ingest.attempts] == [429, 500, 202]
    assert ingest.accepted_ids() == ids
    assert client.stats().retried == 2
    assert spool_files(client.spool_dir) == []  # recovered in memory, never touched the disk


def test_422_is_reported_to_on_error_counted_and_not_retried(
    make_client: MakeClient, ingest: FakeIngest
) -> None:
    errors: list[DeliveryError] = []
    ingest.script.append((422, {}, {"detail": "features.age: not in the registered schema"}))
    client = make_client(on_error=errors.append)

    refused = [client.log_prediction({"age": 1}, 0) for _ in range(2)]
    assert client.flush(timeout=5)
    later = client.log_prediction({"age": 2}, 1)
    assert client.flush(timeout=5)

    assert [attempt.status for attempt in ingest.attempts] == [422, 202]
    (error,) = errors
    assert error.status_code == 422
    assert error.kind == "prediction"
    assert "not in the registered schema" in error.detail
    assert [rejected.event_id for rejected in error.rejected] == refused
    assert ingest.accepted_ids() == [later]
    stats = client.stats()
    assert (stats.rejected, stats.sent, stats.retried, stats.dropped) == (2, 1, 0, 0)


def test_events_refused_inside_a_202_are_reported_with_their_field(
    make_client: MakeClient, ingest: FakeIngest
) -> None:
    errors: list[DeliveryError] = []
    ingest.reject = lambda event: (
        ("features.age", "must be >= 0") if event["features"]["age"] < 0 else None
    )
    client = make_client(on_error=errors.append)

    good = client.log_prediction({"age": 30}, 0)
    bad = client.log_prediction({"age": -1}, 0)
    assert client.flush(timeout=5)

    assert ingest.accepted_ids() == [good]
    (error,) = errors
    assert error.status_code == 202
    (rejected,) = error.rejected
    assert (rejected.event_id, rejected.field, rejected.reason) == (
        bad,
        "features.age",
        "must be >= 0",
    )
    assert client.stats().rejected == 1
    assert client.stats().sent == 1


def test_413_splits_the_batch_until_it_fits(make_client: MakeClient, ingest: FakeIngest) -> None:
    def too_large(events: list[dict[str, Any]]) -> Any:
        return (413, {}, {"detail": "body too large"}) if len(events) > 3 else None

    ingest.rule = too_large
    client = make_client(batch_size=10, linger=60.0)

    ids = [client.log_prediction({"i": i}, 0) for i in range(10)]

    assert client.flush(timeout=5)
    assert ingest.accepted_ids() == ids
    assert max(len(a.events) for a in ingest.attempts if a.status == 202) <= 3
    assert client.stats().rejected == 0


def test_ingest_down_spools_to_disk_then_replays_in_order_once(
    make_client: MakeClient, ingest: FakeIngest
) -> None:
    ingest.down = True
    client = make_client(batch_size=10, max_retries=1)

    ids = [client.log_prediction({"i": i}, 0) for i in range(30)]
    ids.append(client.log_outcome(ids[0], 1))
    wait_until(lambda: client.stats().spooled == 31)

    assert spool_files(client.spool_dir)  # on disk while ingest is down
    assert not client.flush(timeout=0.2)
    ingest.down = False
    more = [client.log_prediction({"i": i}, 0) for i in range(30, 35)]

    assert client.flush(timeout=10)
    assert ingest.accepted_ids() == ids + more  # order kept, nothing lost or repeated
    stats = client.stats()
    assert stats.replayed >= 31
    assert (stats.sent, stats.duplicates, stats.dropped) == (36, 0, 0)
    assert spool_files(client.spool_dir) == []


def test_connection_refused_by_a_real_socket_then_recovery(
    make_client: MakeClient, ingest: FakeIngest
) -> None:
    port = ingest.start()
    ingest.stop()  # nothing listens on the port now
    client = make_client(url=f"http://127.0.0.1:{port}", transport=None, max_retries=0)

    ids = [client.log_prediction({"i": i}, 0) for i in range(20)]
    wait_until(lambda: client.stats().spooled == 20)
    ingest.start(port)

    assert client.flush(timeout=10)
    assert ingest.accepted_ids() == ids
    assert client.stats().replayed == 20


def test_spool_survives_a_restart_and_the_next_client_replays_it(
    make_client: MakeClient, ingest: FakeIngest
) -> None:
    ingest.down = True
    first = make_client(max_retries=0)
    ids = [first.log_prediction({"i": i}, 0) for i in range(10)]
    first.close(timeout=0.5)  # ingest still down: everything goes to disk
    assert first.stats().spooled == 10
    assert spool_files(first.spool_dir)

    ingest.down = False
    second = make_client()  # same spool_dir
    ingest.wait_for(10)
    second_ids = [second.log_prediction({"i": 99}, 1)]
    assert second.flush(timeout=5)

    assert ingest.accepted_ids() == ids + second_ids
    assert second.stats().replayed == 10
    wait_until(lambda: spool_files(first.spool_dir) == [])


def test_queue_full_blocks_briefly_then_spills_to_disk_without_loss(
    make_client: MakeClient, ingest: FakeIngest
) -> None:
    ingest.gate = threading.Event()  # ingest hangs on the first request
    client = make_client(max_queue=5, block_timeout=0.01, batch_size=2, linger=0.0)

    first = client.log_prediction({"i": 0}, 0)
    wait_until(lambda: ingest.started == 1)
    rest = [client.log_prediction({"i": i}, 0) for i in range(1, 21)]

    stats = client.stats()
    assert stats.spooled >= 15  # callers were not blocked for long: the overflow went to disk
    assert stats.queued <= 5
    ingest.gate.set()
    assert client.flush(timeout=10)
    assert ingest.accepted_ids() == [first, *rest]
    assert client.stats().dropped == 0


def test_invalid_events_are_refused_at_the_call(make_client: MakeClient) -> None:
    client = make_client()

    with pytest.raises(InvalidEventError, match="event_id"):
        client.log_prediction({"a": 1}, 0, event_id="has space")
    with pytest.raises(InvalidEventError, match="timezone"):
        client.log_prediction({"a": 1}, 0, timestamp=datetime(2024, 1, 1))
    with pytest.raises(InvalidEventError, match=r"features\.a"):
        client.log_prediction({"a": float("inf")}, 0)
    with pytest.raises(InvalidEventError, match=r"features\.a"):
        client.log_prediction({"a": float("-inf")}, 0)
    with pytest.raises(InvalidEventError, match=r"features\.a: integer"):
        client.log_prediction({"a": 2**64}, 0)
    with pytest.raises(InvalidEventError, match=r"attributes\.g"):
        client.log_prediction({"a": 1}, 0, attributes={"g": float("inf")})
    with pytest.raises(InvalidEventError, match="names must be str"):
        client.log_prediction({1: 1}, 0)  # type: ignore[dict-item]
    with pytest.raises(InvalidEventError, match=r"features\.a"):
        client.log_prediction({"a": [1, 2]}, 0)  # type: ignore[dict-item]
    with pytest.raises(InvalidEventError, match="prediction"):
        client.log_prediction({"a": 1}, float("nan"))
    with pytest.raises(InvalidEventError, match=r"scores\.1"):
        client.log_prediction({"a": 1}, 0, scores={"1": 1.5})
    with pytest.raises(InvalidEventError, match="prediction_id"):
        client.log_outcome("", 1)
    assert client.stats().queued == 0


def test_system_and_model_version_come_from_the_client_or_the_call(
    make_client: MakeClient, ingest: FakeIngest
) -> None:
    client = make_client(system_id=None, model_version=None)

    with pytest.raises(InvalidEventError, match="system_id"):
        client.log_prediction({"a": 1}, 0, model_version="v1")
    with pytest.raises(InvalidEventError, match="model_version"):
        client.log_prediction({"a": 1}, 0, system_id="fraud")
    client.log_prediction({"a": 1}, 0, system_id="fraud", model_version="v1")

    assert client.flush(timeout=5)
    assert ingest.wait_for(1)[0]["system_id"] == "fraud"


def test_numpy_like_scalars_and_int_class_labels_are_converted(
    make_client: MakeClient, ingest: FakeIngest
) -> None:
    np = pytest.importorskip("numpy")
    client = make_client()

    client.log_prediction(
        {"a": np.float64(0.5), "b": np.int64(3), "c": np.bool_(True), "d": np.float32("nan")},
        np.int64(1),
        scores={0: np.float64(0.4), 1: 0.6},
    )

    assert client.flush(timeout=5)
    event = ingest.wait_for(1)[0]
    assert event["features"] == {"a": 0.5, "b": 3, "c": True, "d": None}
    assert event["prediction"] == 1
    assert event["scores"] == {"0": 0.4, "1": 0.6}


def test_the_caller_may_reuse_its_dicts_after_logging(
    make_client: MakeClient, ingest: FakeIngest
) -> None:
    client = make_client(linger=60.0)
    features: dict[str, float | None] = {"a": 1, "b": float("nan")}
    scores = {"0": 0.25, "1": 0.75}
    attributes = {"g": "f"}

    client.log_prediction(features, 0, scores=scores, attributes=attributes)
    features["a"] = 2
    features["c"] = float("inf")
    scores["1"] = 9.0
    attributes["g"] = "m"

    assert client.flush(timeout=5)
    (event,) = ingest.wait_for(1)
    assert event["features"] == {"a": 1, "b": None}  # NaN is sent as null (missing)
    assert event["scores"] == {"0": 0.25, "1": 0.75}
    assert event["attributes"] == {"g": "f"}


def test_any_mapping_of_features_is_accepted(make_client: MakeClient, ingest: FakeIngest) -> None:
    client = make_client()

    client.log_prediction(MappingProxyType({"a": 1.5, "b": "x"}), 0)

    assert client.flush(timeout=5)
    assert ingest.wait_for(1)[0]["features"] == {"a": 1.5, "b": "x"}


def test_close_delivers_the_queue_and_later_calls_are_refused(
    make_client: MakeClient, ingest: FakeIngest
) -> None:
    client = make_client(linger=60.0)
    ids = [client.log_prediction({"a": i}, 0) for i in range(3)]

    client.close()

    assert ingest.accepted_ids() == ids
    with pytest.raises(ClientClosedError):
        client.log_prediction({"a": 1}, 0)


def test_old_timestamps_are_sent_as_given(make_client: MakeClient, ingest: FakeIngest) -> None:
    client = make_client()
    when = datetime.now(UTC) - timedelta(days=3)

    client.log_outcome("p1", 0.5, timestamp=when)

    assert client.flush(timeout=5)
    assert datetime.fromisoformat(ingest.wait_for(1)[0]["timestamp"]) == when


def test_close_with_a_hung_ingest_spools_the_batch_in_flight(
    ingest: FakeIngest, spool_dir: Path, make_client: MakeClient
) -> None:
    import asyncio

    import httpx

    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()  # never answers
        raise AssertionError("unreachable")

    hung = make_client(transport=httpx.MockTransport(hang), timeout=60.0)
    ids = [hung.log_prediction({"i": i}, 0) for i in range(3)]
    wait_until(lambda: hung.stats().queued == 0)  # the batch is in flight

    hung.close(timeout=0.2)

    assert hung.stats().spooled == 3
    make_client()  # a healthy client on the same spool_dir replays it
    ingest.wait_for(3)
    assert ingest.accepted_ids() == ids
