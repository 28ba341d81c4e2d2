"""The metrics the Grafana dashboards read: accepted/rejected/duplicates by system and reason."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.factories import make_prediction
from tests.ingest.conftest import MakeIngest


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
    assert ("watchkeeper_ingest_bus_errors_total", (("reason", "unavailable"),)) not in metrics
