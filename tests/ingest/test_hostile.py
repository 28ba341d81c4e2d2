"""Bodies and events ingest must refuse, cleanly: deep nesting, broken gzip, huge strings,
event times outside the allowed skew; whole-batch refusals in the partial-refusal shape; large
bodies parsed off the event loop (issue 10, defects 3, 6 and 7)."""

from __future__ import annotations

import asyncio
import gzip
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from services.ingest.fastdecode import FastDecoders
from shared.contracts import SystemSnapshot
from tests.factories import make_outcome, make_prediction
from tests.ingest.conftest import MakeIngest


async def test_deeply_nested_json_is_a_400_not_a_500(make_ingest: MakeIngest) -> None:
    async with make_ingest() as ingest:
        for body in (b"[" * 20_000 + b"]" * 20_000, b'{"a":' * 5_000 + b"1" + b"}" * 5_000):
            response = await ingest.client.post("/v1/predictions", content=body)
            assert response.status_code == 400, response.text
            assert "nested" in response.json()["detail"]


async def test_gzip_with_a_second_member_truncation_or_trailing_garbage_is_a_400(
    make_ingest: MakeIngest,
) -> None:
    async with make_ingest() as ingest:
        first = gzip.compress(orjson.dumps([make_prediction(ingest.system_id)]))
        second = gzip.compress(orjson.dumps([make_prediction(ingest.system_id)]))
        cases = {
            "second gzip member": first + second,
            "truncated": first[:-6],
            "trailing data": first + b"garbage",
        }
        for expected, body in cases.items():
            response = await ingest.client.post(
                "/v1/predictions", content=body, headers={"Content-Encoding": "gzip"}
            )
            assert response.status_code == 400, (expected, response.text)
            assert expected in response.json()["detail"]
        assert await ingest.topic_values() == []


async def test_strings_over_the_limit_are_refused_naming_the_field(
    make_ingest: MakeIngest,
) -> None:
    async with make_ingest(max_string_chars=100) as ingest:
        system_id = ingest.system_id
        long = "x" * 101
        bad = [
            make_prediction(system_id, features={"income": 1.0, "region": long}),
            make_prediction(system_id, attributes={"group": long}),
            make_prediction(system_id, attributes={long: "a"}),
            make_prediction(system_id, prediction=long),
            make_prediction(system_id, scores={long: 0.5}),
        ]
        fields = ["features.region", "attributes.group", "attributes", "prediction", "scores"]
        fine = make_prediction(system_id, features={"income": 1.0, "region": "y" * 100})
        response = await ingest.client.post("/v1/predictions", json=[fine, *bad])
        assert response.status_code == 202, response.text
        rejected = response.json()["rejected"]
        assert [r["field"] for r in rejected] == fields
        assert [r["index"] for r in rejected] == [1, 2, 3, 4, 5]
        for r in rejected:
            assert "longer than 100 characters (max_string_chars)" in r["reason"]
            assert long not in r["field"] + r["reason"]
        # one bad event alone (the one-pass decoder's case) and an outcome
        response = await ingest.client.post("/v1/predictions", json=bad[0])
        assert response.status_code == 422, response.text
        assert response.json()["rejected"][0]["field"] == "features.region"
        outcome = make_outcome(system_id, "p-1", long)
        response = await ingest.client.post("/v1/outcomes", json=outcome)
        assert response.status_code == 422, response.text
        assert response.json()["rejected"][0]["field"] == "actual"


async def test_whole_batch_refusal_lists_events_like_a_partial_one(
    make_ingest: MakeIngest,
) -> None:
    async with make_ingest() as ingest:
        bad = make_prediction(ingest.system_id, features={"income": "high", "region": "n"})
        partial = await ingest.client.post(
            "/v1/predictions", json=[make_prediction(ingest.system_id), bad]
        )
        whole = await ingest.client.post("/v1/predictions", json=[bad, bad])
        assert partial.status_code == 202
        assert whole.status_code == 422
        entry = {"field": "features.income", "reason": "expected a number, got str"}
        assert partial.json()["rejected"] == [{"index": 1, **entry}]
        assert whole.json() == {
            "accepted": 0,
            "duplicates": [],
            "rejected": [{"index": 0, **entry}, {"index": 1, **entry}],
            "detail": [{"index": 0, **entry}, {"index": 1, **entry}],
        }


async def test_event_times_outside_the_skew_are_refused_naming_the_limit(
    make_ingest: MakeIngest,
) -> None:
    horizon = 3 * 24 * 3600
    async with make_ingest(
        system={"label_horizon_seconds": horizon},
        max_future_skew_s=3600,
        backfill_allowance_s=86_400,
    ) as ingest:
        now = datetime.now(UTC)
        system_id = ingest.system_id
        future = make_prediction(system_id, ts=datetime(2200, 1, 1, tzinfo=UTC))
        ahead = make_prediction(system_id, ts=now + timedelta(hours=2))
        old = make_prediction(system_id, ts=now - timedelta(days=5))
        fine = [
            make_prediction(system_id, ts=now + timedelta(minutes=50)),
            make_prediction(system_id, ts=now - timedelta(days=3, hours=23)),
        ]
        # all good: the one-pass decoder takes them
        response = await ingest.client.post("/v1/predictions", json=fine)
        assert response.status_code == 202, response.text
        assert response.json()["accepted"] == 2
        for bad in (future, ahead, old):
            response = await ingest.client.post("/v1/predictions", json=bad)
            assert response.status_code == 422, response.text
        response = await ingest.client.post("/v1/predictions", json=[future, ahead, old])
        assert response.status_code == 422, response.text
        reasons = [(r["field"], r["reason"]) for r in response.json()["rejected"]]
        assert reasons == [
            ("timestamp", "more than 3600 s in the future (max_future_skew_s)"),
            ("timestamp", "more than 3600 s in the future (max_future_skew_s)"),
            (
                "timestamp",
                "older than 345600 s (label_horizon_seconds 259200 s + "
                "backfill_allowance_s 86400 s)",
            ),
        ]
        late = make_outcome(system_id, "p-1", 1, ts=now - timedelta(days=3, hours=1))
        early = make_outcome(system_id, "p-2", 1, ts=datetime(2200, 1, 1, tzinfo=UTC))
        response = await ingest.client.post("/v1/outcomes", json=[late, early])
        assert response.status_code == 202, response.text
        assert [r["index"] for r in response.json()["rejected"]] == [1]
        assert response.json()["rejected"][0]["field"] == "timestamp"


class _BlockingDecoders(FastDecoders):
    """Decoders whose decode waits, for bodies over ``size``, until the test lets it go."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, system: SystemSnapshot) -> Any:
        decoder = super().__call__(system)
        outer = self

        class Blocking:
            def __getattr__(self, name: str) -> Any:
                return getattr(decoder, name)

            def decode(self, kind: str, body: bytes, **kwargs: Any) -> Any:
                if len(body) > outer.size:
                    outer.entered.set()
                    outer.release.wait(10)
                return decoder.decode(kind, body, **kwargs)

        return Blocking()


async def test_large_bodies_are_parsed_off_the_event_loop(make_ingest: MakeIngest) -> None:
    async with make_ingest(parse_in_thread_bytes=4096) as ingest:
        decoders = _BlockingDecoders(4096)
        ingest.app.state.ingest.fast = decoders
        big = [make_prediction(ingest.system_id) for _ in range(30)]
        assert len(orjson.dumps(big)) > 4096
        big_request = asyncio.create_task(ingest.client.post("/v1/predictions", json=big))
        assert await asyncio.to_thread(decoders.entered.wait, 30)
        # the big body's parse is in progress; the loop still answers another request
        small = await ingest.client.post("/v1/predictions", json=make_prediction(ingest.system_id))
        still_parsing = not big_request.done()
        decoders.release.set()
        assert small.status_code == 202, small.text
        assert still_parsing
        assert (await big_request).json()["accepted"] == 30
