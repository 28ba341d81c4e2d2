"""The metrics on a running platform, embedded and on Kafka + PostgreSQL: a breaching window
moves every family the dashboards and alert rules read (freshness, objective threshold and
state, label coverage and delay, open nonconformities, consumer lag, DLQ, outbox, HTTP), each
service's scrape (and the embedded root's, all four in one) passes ``promtool check metrics``,
and retiring the objective, then the system, removes their series."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

from shared.auth import Role
from shared.contracts import EvaluationStatus
from tests.deployments import SERVICES, Deployment, monitor_one_window
from tests.factories import make_objective, make_system, past_window_start
from tests.shared.test_metrics_platform import promtool_check_metrics

SETTLE_S = 60.0

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def get(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def named(samples: Samples, name: str, **labels: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample called ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return {key: v for (n, key), v in samples.items() if n == name and wanted <= set(key)}


class Scraper:
    def __init__(self, deployment: Deployment, client: httpx.AsyncClient) -> None:
        self.deployment = deployment
        self.client = client

    async def text(self, service: str) -> str:
        response = await self.client.get(self.deployment.url(service, "/metrics"))
        assert response.status_code == 200, response.text
        return response.text

    async def until(self, service: str, done: Callable[[Samples], bool], what: str) -> Samples:
        deadline = time.monotonic() + SETTLE_S
        while True:
            samples = parse(await self.text(service))
            if done(samples):
                return samples
            if time.monotonic() > deadline:
                raise AssertionError(f"{service}: never {what}\n{self.deployment.log_tail()}")
            await asyncio.sleep(0.25)


async def test_metrics_follow_a_breach_and_a_retirement(deployment: Deployment) -> None:
    system = make_system()
    sid = system["id"]
    objective = make_objective(threshold=0.9, window_seconds=60, min_samples=10)
    oid = objective["id"]
    start = past_window_start(60)
    async with httpx.AsyncClient(timeout=30) as client:
        scraper = Scraper(deployment, client)
        result = await monitor_one_window(
            deployment,
            client,
            system=system,
            objective=objective,
            actuals=[1] * 10 + [0] * 10,  # accuracy 0.5 < 0.9: a breach
            start=start,
        )
        assert result.status is EvaluationStatus.BREACH
        sre = deployment.as_user(Role.SRE)
        response = await client.get(deployment.url("evaluator", f"/v1/streams/{sid}"), headers=sre)
        assert response.status_code == 200, response.text

        # --- evaluator -------------------------------------------------------------------
        objective_labels = {"system": sid, "objective": oid, "metric": "accuracy"}
        evaluator = await scraper.until(
            "evaluator",
            lambda s: (
                get(s, "watchkeeper_objective_state", **objective_labels) == 2
                and get(s, "watchkeeper_evaluator_label_delay_seconds_count", system=sid) == 20
            ),
            "breached with 20 label delays",
        )
        assert get(evaluator, "watchkeeper_objective_threshold", **objective_labels) == 0.9
        info = {**objective_labels, "comparator": "ge", "severity": "major", "feature": ""}
        assert get(evaluator, "watchkeeper_objective_info", **info) == 1
        assert get(evaluator, "watchkeeper_objective_value", **objective_labels) == 0.5
        evaluations = "watchkeeper_objective_evaluations_total"
        assert (get(evaluator, evaluations, **objective_labels, status="breach") or 0) >= 1
        received = "watchkeeper_evaluator_received_events_total"
        assert get(evaluator, received, system=sid, kind="prediction") == 20
        assert get(evaluator, received, system=sid, kind="outcome") == 20
        assert get(evaluator, "watchkeeper_evaluator_labelled_predictions_total", system=sid) == 20
        dropped = named(evaluator, "watchkeeper_evaluator_dropped_events_total", system=sid)
        assert len(dropped) == 4 and set(dropped.values()) == {0}
        watermark = get(
            evaluator,
            "watchkeeper_evaluator_watermark_timestamp_seconds",
            system=sid,
            stream="predictions",
        )
        assert watermark is not None and watermark >= start.timestamp() + 19
        lag = get(
            evaluator, "watchkeeper_evaluator_watermark_lag_seconds", system=sid, stream="outcomes"
        )
        # idle closing may have moved the quiet live system's watermarks on to the wall clock
        assert lag is not None and 0 <= lag <= time.time() - start.timestamp()
        # every outcome came at the window start: a delay of 0 to 19 s
        delays = "watchkeeper_evaluator_label_delay_seconds_bucket"
        assert get(evaluator, delays, system=sid, le="60.0") == 20
        stream_topics = {deployment.bus.topics.predictions, deployment.bus.topics.outcomes}
        await scraper.until(
            "evaluator",
            lambda s: _lagging(s, "evaluator") == stream_topics,
            "lag of both stream topics",
        )
        assert get(evaluator, "watchkeeper_evaluator_window_states", kind="label") is not None
        assert (get(evaluator, "watchkeeper_evaluator_checkpoint_seconds_count") or 0) >= 1
        published = "watchkeeper_outbox_published_records_total"
        assert (get(evaluator, published, service="evaluator") or 0) >= 1
        assert get(evaluator, "watchkeeper_outbox_pending_records", service="evaluator") == 0
        route = {"service": "evaluator", "route": "/v1/streams/{system_id}", "method": "GET"}
        assert get(evaluator, "watchkeeper_http_requests_total", **route, status="200") == 1
        routes = {dict(key)["route"] for key in named(evaluator, "watchkeeper_http_requests_total")}
        assert not any(sid in r for r in routes), routes  # a template, never the raw path

        # --- alerts ----------------------------------------------------------------------
        nc = {"system": sid, "classification": "major", "state": "raised"}
        alerts = await scraper.until(
            "alerts",
            lambda s: get(s, "watchkeeper_nonconformities_open", **nc) == 1,
            "one open major nonconformity",
        )
        assert sum(named(alerts, "watchkeeper_nonconformities_open", system=sid).values()) == 1
        assert get(alerts, "watchkeeper_corrective_actions_overdue", system=sid) == 0
        raised = {"system": sid, "change": "raised", "severity": "major"}
        assert get(alerts, "watchkeeper_nonconformity_changes_total", **raised) == 1
        await scraper.until(
            "alerts",
            lambda s: _lagging(s, "alerts") == {deployment.bus.topics.evaluations},
            "lag of the evaluations topic",
        )

        # --- ingest and registry ---------------------------------------------------------
        ingest = parse(await scraper.text("ingest"))
        accepted = "watchkeeper_ingest_events_accepted_total"
        assert get(ingest, accepted, system=sid, kind="predictions") == 20
        since = get(ingest, "watchkeeper_ingest_seconds_since_last_event", system=sid)
        assert since is not None and 0 <= since < SETTLE_S * 2
        post = {"service": "ingest", "route": "/v1/predictions", "method": "POST"}
        assert get(ingest, "watchkeeper_http_requests_total", **post, status="202") == 1
        registry = parse(await scraper.text("registry"))
        assert (get(registry, "watchkeeper_registry_systems", status="active") or 0) >= 1
        create = {"service": "registry", "route": "/v1/systems", "method": "POST"}
        assert get(registry, "watchkeeper_http_requests_total", **create, status="201") == 1

        # --- DLQ: a record that does not decode, counted by where it came from -----------
        topics = deployment.bus.topics
        await deployment.bus.producer.send(topics.outcomes, b"{not json", key=sid.encode())
        await deployment.bus.producer.send(topics.evaluations, b"{not json", key=sid.encode())
        dlq = "watchkeeper_dlq_records_total"
        await scraper.until(
            "evaluator",
            lambda s: get(s, dlq, service="evaluator", source_topic=topics.outcomes) == 1,
            "one outcome dead-lettered",
        )
        await scraper.until(
            "alerts",
            lambda s: get(s, dlq, service="alerts", source_topic=topics.evaluations) == 1,
            "one evaluation dead-lettered",
        )

        # --- Prometheus's own linter on every scrape -------------------------------------
        for service in SERVICES:
            promtool_check_metrics(await scraper.text(service))
        if deployment.kind == "embedded":
            await _embedded_root(deployment, client)

        # --- retirement --------------------------------------------------------------------
        engineer = deployment.as_user(Role.ML_ENGINEER)
        # with credentials the registry records the signed-in user as the author
        dropped_fields = ("id", "changed_by") if engineer else ("id",)
        retired = {k: v for k, v in objective.items() if k not in dropped_fields}
        retired |= {"status": "retired", "change_reason": "replaced"}
        response = await client.put(
            deployment.url("registry", f"/v1/systems/{sid}/objectives/{oid}"),
            json=retired,
            headers=engineer,
        )
        assert response.status_code == 200, response.text
        await scraper.until(
            "evaluator",
            lambda s: not any(dict(key).get("objective") == oid for _name, key in s),
            "without the retired objective's series",
        )
        definition = {k: v for k, v in system.items() if k != "id"} | {"status": "retired"}
        response = await client.put(
            deployment.url("registry", f"/v1/systems/{sid}"), json=definition, headers=engineer
        )
        assert response.status_code == 200, response.text
        for service in ("evaluator", "ingest"):
            await scraper.until(
                service,
                lambda s: not any(dict(key).get("system") == sid for _name, key in s),
                "without the retired system's series",
            )


def _lagging(samples: Samples, service: str) -> set[str]:
    """Topics with a consumer lag series of ``service``."""
    found = named(samples, "watchkeeper_consumer_lag_records", service=service)
    return {dict(key)["topic"] for key in found}


async def _embedded_root(deployment: Deployment, client: httpx.AsyncClient) -> None:
    """One /metrics at the root serves the four services' registries, each series once."""
    root = deployment.urls["registry"].removesuffix("/registry")
    response = await client.get(f"{root}/metrics")
    assert response.status_code == 200, response.text
    promtool_check_metrics(response.text)
    samples = parse(response.text)
    services = {dict(key)["service"] for key in named(samples, "watchkeeper_http_requests_total")}
    assert services == set(SERVICES)
    assert len(named(samples, "process_resident_memory_bytes")) == 1
    for service in SERVICES:
        own = parse((await client.get(deployment.url(service, "/metrics"))).text)
        missing = {name for name, _ in own if name.startswith("watchkeeper_")} - {
            name for name, _ in samples
        }
        assert not missing, (service, missing)
