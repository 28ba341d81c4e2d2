"""Issue 10, defects 5 and 6: batching of interleaved predictions and outcomes, and what the
SDK does with answers that mean "not yet" (wrong URL, key not propagated, system not yet
registered) as opposed to "never" (the event itself is invalid)."""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.sdk.conftest import (
    SYSTEM_ID,
    Attempt,
    FakeIngest,
    Scripted,
    client_options,
    wait_until,
)
from watchkeeper_sdk import (
    AsyncWatchkeeper,
    ConfigurationError,
    DeliveryError,
    Watchkeeper,
)

MakeClient = Callable[..., Watchkeeper]


def log_pairs(client: Watchkeeper, count: int) -> tuple[list[str], list[str]]:
    """``count`` times log_prediction then at once its log_outcome (the issue's loop)."""
    predictions, outcomes = [], []
    for i in range(count):
        prediction_id = client.log_prediction({"i": i}, i % 2)
        predictions.append(prediction_id)
        outcomes.append(client.log_outcome(prediction_id, (i + 1) % 2))
    return predictions, outcomes


def delivered(ingest: FakeIngest) -> list[Attempt]:
    return [attempt for attempt in ingest.attempts if attempt.status == 202]


def assert_batched_by_kind(ingest: FakeIngest, batch_size: int) -> None:
    """Every request holds one kind, at most batch_size events, and no outcome is sent
    before the request that carried its prediction."""
    sent_in: dict[str, int] = {}
    for number, attempt in enumerate(delivered(ingest)):
        assert len({"prediction_id" in event for event in attempt.events}) == 1
        assert 1 <= len(attempt.events) <= batch_size
        for event in attempt.events:
            if "prediction_id" in event:
                assert sent_in[event["prediction_id"]] < number, "outcome before its prediction"
            else:
                sent_in.setdefault(event["event_id"], number)


# -- defect 5: interleaved predictions and outcomes ---------------------------------------------


def test_spooled_interleaved_events_are_replayed_in_full_batches_by_kind(
    make_client: MakeClient, ingest: FakeIngest
) -> None:
    ingest.down = True
    client = make_client(batch_size=50, max_retries=0)

    predictions, outcomes = log_pairs(client, 200)
    wait_until(lambda: client.stats().spooled == 400)
    ingest.down = False

    assert client.flush(timeout=20)
    assert sorted(ingest.accepted_ids()) == sorted(predictions + outcomes)
    assert_batched_by_kind(ingest, 50)
    requests = delivered(ingest)
    # 200 predictions and 200 outcomes in batches of 50: 8 requests (not one per event)
    assert len(requests) == 8, [len(a.events) for a in requests]
    assert client.stats().replayed == 400


async def test_a_queue_of_interleaved_events_is_sent_in_full_batches_by_kind(
    ingest: FakeIngest, spool_dir: Path
) -> None:
    async with AsyncWatchkeeper(
        **client_options(ingest, spool_dir, batch_size=50, linger=60.0)
    ) as client:
        ids = []
        for i in range(50):  # the sender task does not run before the flush below
            prediction_id = await client.log_prediction({"i": i}, 1)
            ids += [prediction_id, await client.log_outcome(prediction_id, 0)]
        assert await client.flush(timeout=10)

    assert [(a.path, len(a.events)) for a in ingest.attempts] == [
        ("/v1/predictions", 50),
        ("/v1/outcomes", 50),
    ]
    assert sorted(ingest.accepted_ids()) == sorted(ids)


def test_interleaved_logging_faster_than_delivery_overflows_and_stays_batched(
    make_client: MakeClient, ingest: FakeIngest
) -> None:
    client = make_client(batch_size=100, max_queue=300, block_timeout=0.0, linger=0.05)

    predictions, outcomes = log_pairs(client, 3000)

    assert client.flush(timeout=60)
    assert sorted(ingest.accepted_ids()) == sorted(predictions + outcomes)
    assert_batched_by_kind(ingest, 100)
    requests = delivered(ingest)
    # 6,000 events: a request per event (the defect) would be ~6,000 requests
    assert len(requests) <= 6000 / 25, f"{len(requests)} requests for 6,000 events"


# -- several batches in flight ------------------------------------------------------------------


@pytest.mark.parametrize("max_in_flight", [1, 3])
@pytest.mark.parametrize("spooled", [False, True])
def test_up_to_max_in_flight_batches_are_sent_at_once(
    make_client: MakeClient, ingest: FakeIngest, max_in_flight: int, spooled: bool
) -> None:
    """Sent directly, or replayed from the spool (ingest down while they were logged)."""
    inner = ingest.slow_transport(lambda n: 0.05)
    in_flight = most = 0

    async def handle(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        in_flight += 1  # on the sender's loop: no lock needed
        most = max(most, in_flight)
        try:
            return await inner.handle_async_request(request)
        finally:
            in_flight -= 1

    ingest.down = spooled
    transport = httpx.MockTransport(handle)
    client = make_client(
        batch_size=10, max_in_flight=max_in_flight, max_retries=0, transport=transport
    )

    ids = [client.log_prediction({"i": i}, 0) for i in range(200)]
    if spooled:
        wait_until(lambda: client.stats().spooled == 200)
        most = 0
        ingest.down = False

    assert client.flush(timeout=30)
    assert most == max_in_flight
    assert sorted(ingest.accepted_ids()) == sorted(ids)
    assert [len(a.events) for a in ingest.attempts] == [10] * 20


@pytest.mark.parametrize("max_retries", [5, 0])
def test_no_outcome_leaves_before_every_prediction_logged_before_it_is_acknowledged(
    make_client: MakeClient, ingest: FakeIngest, max_retries: int
) -> None:
    """Requests take 0-40 ms, so batches in flight overtake each other, and every third
    request of predictions is answered 503 (retried in memory, or spooled with max_retries 0):
    still no request carries an outcome before every prediction logged before that outcome
    was acknowledged."""
    answers = itertools.count()

    def flaky(events: list[dict[str, Any]]) -> Scripted | None:
        if "prediction_id" not in events[0] and next(answers) % 3 == 0:
            return 503, {}, {"detail": "Kafka unavailable"}
        return None

    ingest.rule = flaky
    client = make_client(
        batch_size=20,
        max_in_flight=4,
        max_retries=max_retries,
        transport=ingest.slow_transport(lambda n: (n * 7 % 5) * 0.01),
    )
    logged: list[tuple[str, str]] = []  # (kind, event_id) in logging order
    predictions: list[str] = []
    for i in range(300):
        predictions.append(client.log_prediction({"i": i}, 0))
        logged.append(("prediction", predictions[-1]))
        if i >= 7:  # the outcome of a prediction logged a little earlier, often in another batch
            logged.append(("outcome", client.log_outcome(predictions[i - 7], 1)))

    assert client.flush(timeout=30)
    assert sorted(ingest.accepted_ids()) == sorted(event_id for _, event_id in logged)
    acknowledged: dict[str, float] = {}
    first_sent: dict[str, float] = {}
    for attempt in ingest.attempts:
        assert attempt.began is not None
        for event in attempt.events:
            if attempt.status == 202:
                acknowledged.setdefault(event["event_id"], attempt.at)
            first_sent.setdefault(event["event_id"], attempt.began)
    latest = 0.0  # when the last of the predictions logged so far was acknowledged
    for kind, event_id in logged:
        if kind == "outcome":
            assert first_sent[event_id] > latest, "an outcome left before an earlier prediction"
        else:
            latest = max(latest, acknowledged[event_id])
    assert (client.stats().spooled > 0) == (max_retries == 0)


# -- defect 6: "not yet" is kept and retried, "never" is dropped with its reason ----------------


def problem_logs(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "watchkeeper_sdk" and r.levelno >= logging.ERROR]


def test_a_key_not_yet_known_keeps_the_events_and_delivers_once_it_is(
    make_client: MakeClient, ingest: FakeIngest, caplog: pytest.LogCaptureFixture
) -> None:
    errors: list[DeliveryError] = []
    client = make_client(api_key="wk_late", batch_size=10, max_retries=1, on_error=errors.append)

    predictions, outcomes = log_pairs(client, 5)
    wait_until(lambda: sum(a.status == 401 for a in ingest.attempts) >= 4)

    with pytest.raises(ConfigurationError, match="401") as raised:
        client.flush(timeout=0.3)
    assert raised.value.cause == "unauthorized"
    stats = client.stats()
    assert stats.rejected == 0 and stats.dropped == 0
    assert stats.held_by_cause["unauthorized"] >= 10
    assert stats.problem is not None and "401" in stats.problem
    assert len(problem_logs(caplog)) == 1  # logged once for the cause, not per retry
    assert errors == []  # nothing was refused for good

    ingest.api_keys.add("wk_late")  # the key has propagated

    assert client.flush(timeout=10)
    assert sorted(ingest.accepted_ids()) == sorted(predictions + outcomes)
    assert_batched_by_kind(ingest, 10)
    assert client.stats().problem is None
    assert client.stats().sent == 10


def test_a_wrong_url_keeps_the_events_for_a_client_with_the_right_one(
    make_client: MakeClient, ingest: FakeIngest
) -> None:
    wrong = make_client(url="http://ingest.test/watchkeeper", max_retries=1)
    ids = [wrong.log_prediction({"i": i}, 0) for i in range(5)]

    with pytest.raises(ConfigurationError, match="404"):
        wrong.flush(timeout=0.5)
    assert wrong.stats().held_by_cause["not_found"] >= 5
    wrong.close(timeout=0.5)
    assert wrong.stats().spooled == 5  # kept on disk, not dropped
    assert ingest.accepted_ids() == []

    make_client()  # redeployed with the right URL, same spool_dir

    ingest.wait_for(5)
    assert ingest.accepted_ids() == ids


def refusal(status: int, shape: str, reason: str, field: str = "system_id") -> Any:
    """A whole-batch refusal as ingest answers it today (detail = the per-event list) or in
    the unified shape (rejected = the per-event list, as in a 202)."""

    def answer(events: list[dict[str, Any]]) -> Any:
        entries = [{"index": i, "field": field, "reason": reason} for i in range(len(events))]
        if shape == "current":
            return status, {}, {"detail": entries, "accepted": 0}
        return status, {}, {"detail": "no valid event", "accepted": 0, "rejected": entries}

    return answer


@pytest.mark.parametrize(
    ("status", "shape", "reason", "cause"),
    [
        (422, "current", "unknown AI system", "unknown_system"),
        (422, "unified", "unknown AI system", "unknown_system"),
        (403, "current", f"the API key is not valid for system {SYSTEM_ID!r}", "forbidden"),
    ],
)
def test_a_system_or_key_not_yet_propagated_keeps_the_events_until_it_is(
    make_client: MakeClient,
    ingest: FakeIngest,
    status: int,
    shape: str,
    reason: str,
    cause: str,
) -> None:
    registered = threading.Event()
    refuse = refusal(status, shape, reason)
    ingest.rule = lambda events: None if registered.is_set() else refuse(events)
    client = make_client(max_retries=1)

    predictions, outcomes = log_pairs(client, 3)
    with pytest.raises(ConfigurationError, match=str(status)) as raised:
        client.flush(timeout=0.5)
    assert raised.value.cause == cause
    assert client.stats().held_by_cause[cause] >= 3
    assert client.stats().rejected == 0

    registered.set()  # registry has told ingest about the system / the key

    assert client.flush(timeout=10)
    assert sorted(ingest.accepted_ids()) == sorted(predictions + outcomes)
    assert_batched_by_kind(ingest, 500)
    assert client.stats().rejected == 0


def test_events_of_an_unregistered_system_inside_a_202_are_kept_the_others_delivered(
    make_client: MakeClient, ingest: FakeIngest
) -> None:
    registered = threading.Event()
    ingest.reject = lambda event: (
        ("system_id", "unknown AI system")
        if event["system_id"] == "fraud" and not registered.is_set()
        else None
    )
    client = make_client(max_retries=1)

    first = client.log_prediction({"a": 1}, 0)
    held = client.log_prediction({"a": 2}, 0, system_id="fraud")
    last = client.log_prediction({"a": 3}, 0)
    wait_until(lambda: ingest.accepted_ids() == [first, last])
    with pytest.raises(ConfigurationError, match="unknown AI system"):
        client.flush(timeout=0.3)
    registered.set()

    assert client.flush(timeout=10)
    assert ingest.accepted_ids() == [first, last, held]
    stats = client.stats()
    assert (stats.sent, stats.rejected) == (3, 0)
    assert stats.held_by_cause["unknown_system"] >= 1


@pytest.mark.parametrize("shape", ["current", "unified"])
def test_invalid_events_in_a_whole_batch_422_are_dropped_with_their_reason(
    make_client: MakeClient, ingest: FakeIngest, shape: str
) -> None:
    errors: list[DeliveryError] = []
    ingest.script.append(refusal(422, shape, "must be >= 0", "features.age")([{}, {}]))
    client = make_client(on_error=errors.append)

    refused = [client.log_prediction({"age": -1}, 0) for _ in range(2)]

    assert client.flush(timeout=5)  # settled: nothing left to deliver
    assert len(ingest.attempts) == 1  # not retried: it could never succeed
    (error,) = errors
    assert error.status_code == 422
    assert [(r.event_id, r.field, r.reason) for r in error.rejected] == [
        (event_id, "features.age", "must be >= 0") for event_id in refused
    ]
    stats = client.stats()
    assert (stats.rejected, stats.sent, stats.held) == (2, 0, 0)


def test_check_validates_the_url_and_the_key(make_client: MakeClient, ingest: FakeIngest) -> None:
    make_client().check(timeout=5)  # fine: returns without raising

    with pytest.raises(ConfigurationError, match="401") as raised:
        make_client(api_key="wk_wrong").check(timeout=5)
    assert raised.value.cause == "unauthorized"
    with pytest.raises(ConfigurationError, match="404") as raised:
        make_client(url="http://ingest.test/nope").check(timeout=5)
    assert raised.value.cause == "not_found"
    ingest.down = True
    with pytest.raises(ConfigurationError, match="unreachable") as raised:
        make_client().check(timeout=5)
    assert raised.value.cause == "unreachable"
    assert ingest.accepted_ids() == []  # checking sends no event


async def test_async_flush_surfaces_a_wrong_key_and_delivers_once_it_is_known(
    make_async_client: Callable[..., AsyncWatchkeeper], ingest: FakeIngest
) -> None:
    client = make_async_client(api_key="wk_late", max_retries=1)
    event_id = await client.log_prediction({"a": 1}, 0)

    with pytest.raises(ConfigurationError, match="401"):
        await client.flush(timeout=0.3)
    with pytest.raises(ConfigurationError, match="401"):
        await client.check(timeout=5)
    ingest.api_keys.add("wk_late")

    await client.check(timeout=5)
    assert await client.flush(timeout=10)
    assert ingest.accepted_ids() == [event_id]
