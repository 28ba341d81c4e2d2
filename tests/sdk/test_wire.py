"""What an ingest response means, Retry-After parsing and the backoff schedule."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from watchkeeper_sdk._backoff import Backoff
from watchkeeper_sdk._wire import MAX_RETRY_AFTER, Action, classify, parse_retry_after

EVENTS = [{"event_id": "a"}, {"event_id": "b"}]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("3", 3.0), ("1.5", 1.5), ("-4", 0.0), ("99999", MAX_RETRY_AFTER), ("soon", None), ("", None)],
)
def test_retry_after_delta_seconds(value: str, seconds: float | None) -> None:
    assert parse_retry_after(value) == seconds


def test_retry_after_http_date() -> None:
    now = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Sat, 01 Jun 2024 12:00:30 GMT", now=now) == 30.0


def test_accepted_batch_reports_duplicates_and_per_event_rejections() -> None:
    body = (
        b'{"accepted": 0, "duplicates": ["a"],'
        b' "rejected": [{"index": 1, "field": "x", "reason": "bad"}]}'
    )

    reply = classify(202, {}, body, EVENTS)

    assert reply.action is Action.DONE
    assert reply.duplicates == 1
    (rejected,) = reply.rejected
    assert (rejected.event_id, rejected.field, rejected.reason) == ("b", "x", "bad")


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retryable_statuses(status: int) -> None:
    reply = classify(status, {"retry-after": "2"}, b"{}", EVENTS)
    assert (reply.action, reply.retry_after) == (Action.RETRY, 2.0)


@pytest.mark.parametrize("status", [400, 415, 422])
def test_refusals_are_final_and_carry_the_detail(status: int) -> None:
    reply = classify(status, {}, b'{"detail": "nope"}', EVENTS)
    assert reply.action is Action.REJECT
    assert reply.detail == "nope"
    assert [r.event_id for r in reply.rejected] == ["a", "b"]


@pytest.mark.parametrize(
    ("status", "cause"),
    [(301, "not_found"), (401, "unauthorized"), (403, "forbidden"), (404, "not_found")],
)
def test_setup_problems_hold_the_events(status: int, cause: str) -> None:
    reply = classify(status, {}, b'{"detail": "nope"}', EVENTS)
    assert (reply.action, reply.cause, reply.rejected) == (Action.HOLD, cause, ())


@pytest.mark.parametrize("key", ["detail", "rejected"])
def test_a_whole_batch_422_drops_invalid_events_and_holds_unknown_systems(key: str) -> None:
    entries = [
        {"index": 0, "field": "features.x", "reason": "must be a number"},
        {"index": 1, "field": "system_id", "reason": "unknown AI system"},
    ]
    body = orjson.dumps({key: entries, "accepted": 0})

    reply = classify(422, {}, body, EVENTS)

    (rejected,) = reply.rejected
    assert (rejected.event_id, rejected.field, rejected.reason) == (
        "a",
        "features.x",
        "must be a number",
    )
    assert (reply.held, reply.cause) == ((1,), "unknown_system")


def test_too_large_splits_until_one_event_is_left() -> None:
    assert classify(413, {}, b"", EVENTS).action is Action.SPLIT
    assert classify(413, {}, b"", EVENTS[:1]).action is Action.REJECT


def test_backoff_grows_with_jitter_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(0.5, 4.0)
    delays = [backoff.next_delay() for _ in range(6)]

    for n, delay in enumerate(delays, start=1):
        ceiling = min(4.0, 0.5 * 2 ** (n - 1))
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert backoff.next_delay() <= 0.5


def test_backoff_never_retries_before_retry_after() -> None:
    backoff = Backoff(0.01, 0.1)
    assert 5.0 <= backoff.next_delay(retry_after=5.0) <= 5.5
