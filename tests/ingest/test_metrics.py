"""The metrics the Grafana dashboards read: accepted/rejected/duplicates by system and reason."""

from __future__ import annotations

import asyncio
import time

from prometheus_client.parser import text_string_to_metric_families

from tests.factories import make_prediction
from tests.ingest.conftest import MakeIngest, publish_system


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def test_counts_by_system_kind_and_reason(make_ingest: MakeIngest) -> None:
    async with make_ingest() as ingest:
        sid = ingest.system_id
        good = make_prediction(sid)
        bad = make_prediction(sid)
        bad["features"]["income"] = "lots"
        stranger = make_prediction("made-up-system")
        await ingest.client.post("/v1/predictions", json=[good, bad, stranger])
        await ingest.client.post("/v1/predictions", json=good)  # duplicate
        await ingest.client.post(
            "/v1/predictions", content=b"{", headers={"Content-Type": "application/json"}
        )
        metrics = samples((await ingest.client.get("/metrics")).text)

    def value(name: str, **labels: str) -> float:
        return metrics.get((name, tuple(sorted(labels.items()))), 0.0)

    kind = "predictions"
    assert value("watchkeeper_ingest_events_accepted_total", system=sid, kind=kind) == 1
    assert (
        value("watchkeeper_ingest_events_rejected_total", system=sid, kind=kind, reason="features")
        == 1
    )
    # a made-up system id is not a label value (bounded cardinality)
    assert (
        value(
            "watchkeeper_ingest_events_rejected_total",
            system="unknown",
            kind=kind,
            reason="system_id",
        )
        == 1
    )
    assert value("watchkeeper_ingest_events_duplicate_total", system=sid, kind=kind) == 1
    assert value("watchkeeper_ingest_requests_total", kind=kind, status="202") == 2
    assert value("watchkeeper_ingest_requests_total", kind=kind, status="400") == 1
    assert value("watchkeeper_ingest_batch_events_count") == 2
    assert value("watchkeeper_ingest_produce_seconds_count") == 1
    assert value("watchkeeper_ingest_dedup_seconds_count") == 2
    assert value("watchkeeper_ingest_request_seconds_count", kind=kind) == 3
    assert ("watchkeeper_ingest_pending_deliveries", ()) in metrics
    assert value("watchkeeper_ingest_bus_errors_total", reason="unavailable") == 0


async def test_a_fresh_app_has_its_counters_at_zero(make_ingest: MakeIngest) -> None:
    """Series exist from the start, so the first burst is an increase Prometheus can see
    (a series born at 3 has no increase: the IngestBusUnavailable alert would not fire)."""
    async with make_ingest() as ingest:
        sid = ingest.system_id
        metrics = samples((await ingest.client.get("/metrics")).text)

    def value(name: str, **labels: str) -> float | None:
        return metrics.get((name, tuple(sorted(labels.items()))))

    for reason in ("unavailable", "unacknowledged"):
        assert value("watchkeeper_ingest_bus_errors_total", reason=reason) == 0, reason
    for reason in ("missing", "unknown"):
        assert value("watchkeeper_ingest_auth_failures_total", reason=reason) == 0, reason
    for kind in ("predictions", "outcomes"):
        for status in ("202", "400", "413", "422", "429", "503"):
            assert value("watchkeeper_ingest_requests_total", kind=kind, status=status) == 0
        for name in ("events_accepted", "events_duplicate", "rate_limited_events"):
            assert value(f"watchkeeper_ingest_{name}_total", system=sid, kind=kind) == 0, name
        fields = ("features", "prediction") if kind == "predictions" else ("actual",)
        for reason in ("event_id", "system_id", "timestamp", *fields):
            labels = {"system": sid, "kind": kind, "reason": reason}
            assert value("watchkeeper_ingest_events_rejected_total", **labels) == 0, labels
    assert value("watchkeeper_ingest_dedup_errors_total") == 0


async def test_freshness_since_the_last_accepted_event(make_ingest: MakeIngest) -> None:
    """Seconds since the system's last event: since the start until one came, then since it."""
    async with make_ingest() as ingest:
        sid = ingest.system_id
        registry = ingest.app.state.metrics_registry

        def get(name: str, **labels: str) -> float | None:
            value: float | None = registry.get_sample_value(name, labels)
            return value

        waited = get("watchkeeper_ingest_seconds_since_last_event", system=sid)
        assert waited is not None and waited >= 0
        last = "watchkeeper_ingest_last_event_timestamp_seconds"
        assert get(last, system=sid, kind="predictions") is None
        before = time.time()
        response = await ingest.client.post("/v1/predictions", json=[make_prediction(sid)])
        assert response.status_code == 202, response.text
        stamp = get(last, system=sid, kind="predictions")
        assert stamp is not None and before <= stamp <= time.time()
        since = get("watchkeeper_ingest_seconds_since_last_event", system=sid)
        assert since is not None and 0 <= since <= time.time() - before
        # a refused event is not fresh data
        bad = make_prediction(sid)
        bad["features"]["income"] = "lots"
        await ingest.client.post("/v1/predictions", json=[bad])
        assert get(last, system=sid, kind="predictions") == stamp


async def test_a_retired_system_loses_its_series(make_ingest: MakeIngest) -> None:
    async with make_ingest() as ingest:
        sid = ingest.system_id
        await ingest.client.post("/v1/predictions", json=[make_prediction(sid)])
        metrics = samples((await ingest.client.get("/metrics")).text)
        assert any(dict(labels).get("system") == sid for _, labels in metrics)
        await publish_system(ingest.bus, sid, status="retired")
        deadline = time.monotonic() + 10
        while any(dict(labels).get("system") == sid for _, labels in metrics):
            assert time.monotonic() < deadline, [k for k in metrics if ("system", sid) in k[1]]
            await asyncio.sleep(0.02)
            metrics = samples((await ingest.client.get("/metrics")).text)


async def test_fast_path_requests_have_http_metrics(make_ingest: MakeIngest) -> None:
    """POST /v1/predictions skips FastAPI's routing (IngestFastPath): still counted, under its
    route template, with the platform's HTTP series."""
    async with make_ingest() as ingest:
        sid = ingest.system_id
        for _ in range(2):
            await ingest.client.post("/v1/predictions", json=[make_prediction(sid)])
        await ingest.client.post(
            "/v1/outcomes", content=b"{", headers={"Content-Type": "application/json"}
        )
        metrics = samples((await ingest.client.get("/metrics")).text)

    def value(name: str, **labels: str) -> float:
        return metrics.get((name, tuple(sorted(labels.items()))), 0.0)

    http = "watchkeeper_http_requests_total"
    assert value(http, service="ingest", route="/v1/predictions", method="POST", status="202") == 2
    assert value(http, service="ingest", route="/v1/outcomes", method="POST", status="400") == 1
    count = "watchkeeper_http_request_duration_seconds_count"
    assert value(count, service="ingest", route="/v1/predictions", method="POST") == 2
