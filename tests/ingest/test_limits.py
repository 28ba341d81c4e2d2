"""Per-system rate limits: 429 with Retry-After once a system's bucket is empty."""

from __future__ import annotations

from services.ingest.limits import RateLimiter
from tests.factories import make_prediction
from tests.ingest.conftest import MakeIngest


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_bucket_admits_the_rate_and_tells_how_long_to_wait() -> None:
    clock = Clock()
    limiter = RateLimiter(events_per_s=10, burst_s=1, clock=clock)
    assert limiter.admit({"a": 10}) is None  # the full bucket
    assert limiter.admit({"a": 1}) == 1  # empty: wait
    clock.now = 0.5
    assert limiter.admit({"a": 5}) is None  # refilled 5
    assert limiter.admit({"b": 10}) is None  # other systems have their own bucket
    assert limiter.admit({"a": 25}) == 1
    clock.now = 1.0
    assert limiter.admit({"a": 25}) is None  # a batch larger than the burst runs into debt
    assert limiter.admit({"a": 1}) == 2  # 20 events of debt at 10/s


def test_overrides_and_no_limit() -> None:
    limiter = RateLimiter(events_per_s=None, overrides={"slow": 1}, clock=Clock())
    assert limiter.admit({"fast": 1_000_000}) is None
    assert limiter.admit({"slow": 1}) is None
    assert limiter.admit({"slow": 1}) == 1


async def test_over_the_limit_answers_429_and_takes_nothing(make_ingest: MakeIngest) -> None:
    async with make_ingest(rate_limit_events_per_s=5, rate_limit_burst_s=1) as ingest:
        events = [make_prediction(ingest.system_id) for _ in range(8)]  # 3 events of debt
        assert (await ingest.client.post("/v1/predictions", json=events)).status_code == 202
        limited = await ingest.client.post(
            "/v1/predictions", json=make_prediction(ingest.system_id)
        )
        assert limited.status_code == 429
        assert int(limited.headers["Retry-After"]) >= 1
        assert ingest.system_id in limited.json()["detail"]
        assert len(await ingest.topic_values()) == 8
