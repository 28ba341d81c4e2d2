"""The dashboards and alert rules against a real Prometheus (Debian's package) scraping the four
services of the Kafka + PostgreSQL deployment while a stream with a breach runs.

Every panel target of every dashboard (variables substituted with the test's system and each of
its objectives) and every recording rule must return at least one series through
``/api/v1/query``, and every metric any target or rule names must be exported by a service. An
alerting rule returns a series only while it fires, so for those the test requires that each
one's metrics exist, that Prometheus evaluates every rule without error, and that the breach in
the stream makes ``AIObjectiveBreached`` pending or firing. ``promtool check metrics`` lints
each service's scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shared.auth import Role
from shared.contracts import EvaluationResult, decode
from tests.deployments import (
    Deployment,
    free_port,
    kafka_postgres_deployment,
    post_until_accepted,
    serve_in_thread,
)
from tests.factories import (
    make_income_drift_case,
    make_objective,
    make_outcome,
    make_prediction,
    past_window_start,
)
from watchkeeper.dashboards import OUT_DIR

PROMETHEUS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "rules"
JOB = "watchkeeper"
WAIT_S = 90.0

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^}]*\}|\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "by", "without", "on"}
_VARIABLE = re.compile(r"\$\{?(\w+)\}?")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, labels or keywords)."""
    bare = _GROUPING.sub(" ", _MATCHERS.sub(" ", _STRING.sub(" ", expr)))
    names = {m for m in _NAME.findall(bare) if m.lower() not in _KEYWORDS}
    return {n for n in names if not re.fullmatch(r"\d+[smhdwy]?", n)}


def test_metric_names_of_an_expression() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (service, le) (rate(wk_x_bucket{a="b(c)"}[5m])))\n'
        'or on (instance) label_replace(up offset 5m, "s", "x", "", "") > bool 2\n'
        "and ignoring (le) (time() - process_start_time_seconds) < 300"
    )
    assert metric_names(expr) == {"wk_x_bucket", "up", "process_start_time_seconds"}


def substitute(expr: str, variables: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in variables:
            pytest.fail(f"no value for the dashboard variable ${name} in {expr!r}")
        return variables[name]

    return _VARIABLE.sub(value, expr)


def dashboard_targets(system: str, objectives: list[str]) -> list[tuple[str, str]]:
    """(where, expression) of every panel target of every dashboard, once per objective."""
    targets: list[tuple[str, str]] = []
    for path in sorted(OUT_DIR.glob("*.json")):
        dashboard = json.loads(path.read_text())
        for objective in objectives:
            variables = {
                "system": system,
                "objective": objective,
                "job": JOB,
                "__rate_interval": "1m",
            }
            for panel in dashboard["panels"]:
                for target in panel.get("targets", []):
                    where = f"{path.stem} / {panel['title']} / {target['refId']} ({objective})"
                    targets.append((where, substitute(target["expr"], variables)))
    assert targets
    return targets


def rules() -> list[dict[str, Any]]:
    found = [
        rule
        for path in sorted(RULES.glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]
    assert found
    return found


def scrape_config(urls: dict[str, str]) -> dict[str, Any]:
    """deploy/prometheus/prometheus-local.yml (the config for ``make up-real``) with each
    target pointed at the test's service of the same ``component``, a 1-second scrape and
    evaluation, and the rules loaded from the repository."""
    config: dict[str, Any] = yaml.safe_load((PROMETHEUS_DIR / "prometheus-local.yml").read_text())
    config["global"] = {
        "scrape_interval": "1s",
        "scrape_timeout": "1s",
        "evaluation_interval": "1s",
    }
    config["rule_files"] = [str(PROMETHEUS_DIR / pattern) for pattern in config["rule_files"]]
    [job] = config["scrape_configs"]
    assert job["job_name"] == JOB
    for static in job["static_configs"]:
        static["targets"] = [urls[static["labels"]["component"]].removeprefix("http://")]
    assert {s["labels"]["component"] for s in job["static_configs"]} == set(urls)
    return config


@contextlib.contextmanager
def prometheus(tmp_path: Path, urls: dict[str, str]) -> Iterator[str]:
    """Debian's Prometheus on a free loopback port, scraping ``urls`` every second with the
    rules of deploy/prometheus/rules loaded; yields its base URL."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus not found: `make system-deps` installs Debian's prometheus package")
    config = scrape_config(urls)
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    port = free_port()
    log = tmp_path / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def webhook_receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """An Alertmanager-style webhook receiver that accepts everything; yields its URL and the
    bodies it received."""
    received: list[dict[str, Any]] = []

    async def hook(request: Request) -> Response:
        received.append(await request.json())
        return Response(status_code=200)

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    with contextlib.contextmanager(serve_in_thread)(app, "webhook") as base:
        yield f"{base}/hook", received


async def query(client: httpx.AsyncClient, base: str, expr: str) -> list[dict[str, Any]]:
    response = await client.get(f"{base}/api/v1/query", params={"query": expr})
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", (expr, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


Check = Callable[[], Awaitable[tuple[bool, Any]]]


async def until(
    description: str,
    check: Check,
    *,
    logs: Callable[[], str] = str,
    problems: list[str] | None = None,
    timeout_s: float = WAIT_S,
) -> None:
    """Poll ``check()`` (done, detail) every second until done. On timeout, fail with the last
    detail, or add it to ``problems`` (reported together at the end of the test)."""
    deadline = time.monotonic() + timeout_s
    while True:
        done, detail = await check()
        if done:
            return
        if time.monotonic() > deadline:
            if problems is None:
                pytest.fail(f"{description} within {timeout_s:.0f} s: {detail}\n{logs()}")
            problems.append(f"{description} within {timeout_s:.0f} s: {detail}")
            return
        await asyncio.sleep(1)


async def evaluations_of(
    deployment: Deployment, system_id: str, objectives: set[str]
) -> dict[str, Any]:
    """The first evaluation of each of ``objectives`` on the evaluations topic."""
    found: dict[str, EvaluationResult] = {}
    bus = deployment.bus
    consumer = bus.consumer([bus.topics.evaluations], group_id=None)
    await consumer.start()
    try:
        deadline = time.monotonic() + WAIT_S
        while set(found) != objectives and time.monotonic() < deadline:
            for record in await consumer.poll(timeout_s=0.5):
                result = decode(EvaluationResult, record.value)
                if result.system_id == system_id:
                    found.setdefault(result.objective_id, result)
    finally:
        await consumer.stop()
    assert set(found) == objectives, f"evaluations seen: {sorted(found)}\n{deployment.log_tail()}"
    return found


async def run_stream_with_a_breach(
    deployment: Deployment, client: httpx.AsyncClient
) -> tuple[str, list[str]]:
    """Register a system with a PSI objective on ``income`` (against an uploaded reference) and
    an accuracy objective, send one window of shifted, mostly wrong predictions with their
    outcomes (and one invalid event), and wait for both evaluations (both breach) and the
    nonconformity. Returns the system id and objective ids."""
    rng = np.random.default_rng(13)
    system, reference, drift = make_income_drift_case(rng, 2_000)
    accuracy = make_objective(threshold=0.8, window_seconds=60, min_samples=10)
    sid = system["id"]
    engineer = deployment.as_user(Role.ML_ENGINEER)
    response = await client.post(
        deployment.url("registry", "/v1/systems"), json=system, headers=engineer
    )
    assert response.status_code == 201, response.text
    response = await client.post(
        deployment.url("registry", f"/v1/systems/{sid}/references"),
        params={"filename": "reference.csv"},
        content=reference.to_csv(index=False).encode(),
        headers={**engineer, "Content-Type": "text/csv"},
    )
    assert response.status_code == 201, response.text
    for objective in (drift, accuracy):
        body = {k: v for k, v in objective.items() if k != "changed_by"}
        response = await client.post(
            deployment.url("registry", f"/v1/systems/{sid}/objectives"),
            json=body,
            headers=engineer,
        )
        assert response.status_code == 201, response.text
    key = await deployment.ingest_key(client, sid)

    start = past_window_start(60)
    predictions = [
        make_prediction(
            sid,
            ts=start + timedelta(seconds=i * 0.5),
            features={"income": float(x), "region": "north"},
            prediction=1,
            latency_ms=float(20 + i % 30),
        )
        for i, x in enumerate(rng.normal(60_000, 5_000, 100))
    ]
    # 80 of 100 wrong: accuracy 0.2 against an objective of 0.8
    outcomes = [
        make_outcome(sid, p["event_id"], 0 if i < 80 else 1, ts=start + timedelta(seconds=59))
        for i, p in enumerate(predictions)
    ]
    response = await post_until_accepted(
        client, deployment.url("ingest", "/v1/outcomes"), outcomes, key
    )
    assert response.status_code == 202, response.text
    invalid = make_prediction(sid, ts=start, features={"income": "lots", "region": "north"})
    response = await client.post(
        deployment.url("ingest", "/v1/predictions"), json=[*predictions, invalid], headers=key
    )
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == len(predictions)

    found = await evaluations_of(deployment, sid, {drift["id"], accuracy["id"]})
    assert {r.status.value for r in found.values()} == {"breach"}, found

    async def raised() -> tuple[bool, Any]:
        response = await client.get(
            deployment.url("alerts", "/v1/nonconformities"),
            params={"system_id": sid},
            headers=deployment.as_user(Role.QUALITY_MANAGER),
        )
        assert response.status_code == 200, response.text
        return bool(response.json()), response.json()

    await until("no nonconformity raised", raised, logs=deployment.log_tail)
    return sid, [accuracy["id"], drift["id"]]


async def check_metrics_lint(client: httpx.AsyncClient, urls: dict[str, str]) -> list[str]:
    """``promtool check metrics`` on each service's scrape: the problems found."""
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool not found: `make system-deps` installs Debian's prometheus package")
    problems = []
    for service, url in urls.items():
        text = (await client.get(f"{url}/metrics")).text
        result = await asyncio.to_thread(
            subprocess.run,
            [tool, "check", "metrics"],
            input=text,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            problems.append(f"promtool check metrics, {service}:\n{result.stdout}{result.stderr}")
    return problems


@pytest.fixture
async def deployment_with_receiver(
    tmp_path: Path,
    kafka_bootstrap: str,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[Deployment, list[dict[str, Any]]]]:
    with webhook_receiver() as (url, received):
        # the services inherit the environment: the alerts service notifies the receiver
        monkeypatch.setenv("WK_ALERTS_ROUTES", json.dumps([{"receiver": "sre", "url": url}]))
        async with kafka_postgres_deployment(tmp_path, kafka_bootstrap, database_url) as deployed:
            yield deployed, received


async def test_every_panel_and_rule_finds_series_in_a_real_prometheus(
    tmp_path: Path, deployment_with_receiver: tuple[Deployment, list[dict[str, Any]]]
) -> None:
    deployment, notified = deployment_with_receiver
    with prometheus(tmp_path, deployment.urls) as prom:
        async with httpx.AsyncClient(timeout=30) as client:

            def logs() -> str:
                return (
                    deployment.log_tail()
                    + "\n--- prometheus.log\n"
                    + ((tmp_path / "prometheus.log").read_text(errors="replace")[-4000:])
                )

            async def targets_up() -> tuple[bool, Any]:
                try:
                    response = await client.get(f"{prom}/api/v1/targets")
                except httpx.TransportError as exc:
                    return False, repr(exc)
                if response.status_code != 200:  # 503 until Prometheus is ready
                    return False, f"{response.status_code} {response.text[:200]}"
                active = response.json()["data"]["activeTargets"]
                health = {t["scrapeUrl"]: t["health"] for t in active}
                return len(health) == 4 and set(health.values()) == {"up"}, health

            await until("Prometheus did not scrape the four services", targets_up, logs=logs)
            system, objectives = await run_stream_with_a_breach(deployment, client)

            async def delivered() -> tuple[bool, Any]:
                return bool(notified), len(notified)

            await until("no notification delivered", delivered, logs=deployment.log_tail)

            # every panel target returns a series (rate() needs two scrapes: poll)
            panel_targets = dashboard_targets(system, objectives)
            recording = [(f"record {r['record']}", r["expr"]) for r in rules() if "record" in r]

            async def all_return_series() -> tuple[bool, Any]:
                empty = [
                    f"{where}: {expr}"
                    for where, expr in [*panel_targets, *recording]
                    if not await query(client, prom, expr)
                ]
                return not empty, "\n".join(["queries without a series:", *empty])

            problems: list[str] = []
            await until(
                "not every panel and recording rule found series",
                all_return_series,
                problems=problems,
            )

            # drift per feature names the feature of each drift objective
            drift = next(
                expr for where, expr in panel_targets if where.startswith("ai-system / Drift ")
            )
            features = {s["metric"].get("feature") for s in await query(client, prom, drift)}
            if features != {"income"}:
                problems.append(f"Drift per feature: series of features {features}, not income")

            # every metric any target or rule names is exported (by its name alone: a rule
            # may filter on a status no healthy run produces)
            named = {
                name: where
                for where, expr in [
                    *panel_targets,
                    *[(r.get("alert") or r["record"], r["expr"]) for r in rules()],
                ]
                for name in metric_names(expr)
            }
            missing = [
                f"{name} (in {where})"
                for name, where in sorted(named.items())
                if not await query(client, prom, f'count({{__name__="{name}"}})')
            ]
            if missing:
                problems.append("metrics no service exports:\n" + "\n".join(missing))

            # Prometheus evaluates every rule without error, and the breach is alerting
            async def rules_healthy() -> tuple[bool, Any]:
                groups = (await client.get(f"{prom}/api/v1/rules")).json()["data"]["groups"]
                loaded = [r for g in groups for r in g["rules"]]
                bad = [(r["name"], r["health"], r.get("lastError")) for r in loaded]
                bad = [b for b in bad if b[1] != "ok"]
                return len(loaded) == len(rules()) and not bad, (len(loaded), bad)

            await until("not every rule evaluated cleanly", rules_healthy, problems=problems)

            async def breach_alerting() -> tuple[bool, Any]:
                alerts = (await client.get(f"{prom}/api/v1/alerts")).json()["data"]["alerts"]
                mine = {
                    (a["labels"]["alertname"], a["labels"].get("objective"), a["state"])
                    for a in alerts
                    if a["labels"].get("system") == system
                }
                names = {(name, obj) for name, obj, _state in mine}
                expected = {("AIObjectiveBreached", o) for o in objectives}
                return expected <= names, mine

            await until(
                "AIObjectiveBreached is not pending or firing", breach_alerting, problems=problems
            )

            # the AI-system dashboard's links open pages of the alerts UI
            dashboard = json.loads((OUT_DIR / "ai-system.json").read_text())
            for link in (x for x in dashboard["links"] if x["type"] == "link"):
                url = substitute(
                    link["url"], {"alerts_url": deployment.urls["alerts"], "system": system}
                )
                response = await client.get(url, headers=deployment.as_user(Role.SRE))
                if response.status_code != 200:
                    problems.append(f"link {link['title']}: {url} answers {response.status_code}")

            problems += await check_metrics_lint(client, deployment.urls)
            assert not problems, "\n\n".join(problems)
