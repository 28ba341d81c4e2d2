"""Pytest plugin: the platform deployed two ways, for tests that must pass on both.

``embedded``: the single-process app (in-process bus, SQLite) served by uvicorn in the test's
event loop. ``kafka-postgres``: each service in its own process (``python -m services.X``)
against the real Kafka broker and a fresh PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn

from shared.auth import Role, issue_token
from shared.bus import Bus, KafkaBus, Topics
from shared.contracts import EvaluationResult, decode
from tests.factories import make_outcome, make_prediction
from watchkeeper.embedded import EmbeddedOptions, create_embedded_app

__all__ = [
    "Deployment",
    "first_evaluation",
    "free_port",
    "fresh_database",
    "monitor_one_window",
    "next_evaluation",
    "post_until_accepted",
    "serve_in_thread",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("registry", "ingest", "evaluator", "alerts")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve_in_thread(asgi_app: Any, name: str) -> Iterator[str]:
    """Serve ``asgi_app`` with uvicorn on a free port in a daemon thread; yield its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(asgi_app, host="127.0.0.1", port=free_port(), log_level="warning")
    )
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, f"{name} did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def fresh_database(database_url: str) -> str:
    """Create an empty database next to the one in ``database_url`` and return its URL."""
    name = f"wk_{uuid.uuid4().hex[:12]}"
    conninfo = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return database_url.rsplit("/", 1)[0] + f"/{name}"


async def post_until_accepted(
    client: httpx.AsyncClient,
    url: str,
    events: list[dict[str, Any]],
    headers: dict[str, str],
    timeout_s: float = 30,
) -> httpx.Response:
    """Ingest refuses a system (or key) it has not yet heard of from the registry topic: retry."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = await client.post(url, json=events, headers=headers)
        if response.status_code == 202 or time.monotonic() > deadline:
            return response
        await asyncio.sleep(0.2)


async def first_evaluation(
    bus: Bus, matches: Callable[[EvaluationResult], bool], timeout_s: float
) -> EvaluationResult | None:
    """The first evaluation on the bus's evaluations topic that ``matches``; None on timeout."""
    consumer = bus.consumer([bus.topics.evaluations], group_id=None)
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for record in await consumer.poll(timeout_s=0.5):
                result = decode(EvaluationResult, record.value)
                if matches(result):
                    return result
    finally:
        await consumer.stop()
    return None


async def next_evaluation(
    deployment: Deployment, system_id: str, timeout_s: float = 60
) -> EvaluationResult:
    result = await first_evaluation(
        deployment.bus, lambda result: result.system_id == system_id, timeout_s
    )
    if result is None:
        raise AssertionError(f"no evaluation for {system_id} on the evaluations topic")
    return result


async def monitor_one_window(
    deployment: Deployment,
    client: httpx.AsyncClient,
    *,
    system: dict[str, Any],
    objective: dict[str, Any],
    actuals: list[Any],
    start: datetime,
) -> EvaluationResult:
    """Register the system and its objective, send one window of predictions (each predicting
    1, one second apart from ``start``) with the given actual outcomes, and return the window's
    evaluation from the evaluations topic.

    Labels go first: a window closes once its predictions went quiet, so sending the outcomes
    first makes the window's first evaluation a complete one.
    """
    engineer = deployment.as_user(Role.ML_ENGINEER)
    if engineer:  # with credentials the registry records the signed-in user as the author
        objective = {k: v for k, v in objective.items() if k != "changed_by"}
    response = await client.post(
        deployment.url("registry", "/v1/systems"), json=system, headers=engineer
    )
    assert response.status_code == 201, response.text
    response = await client.post(
        deployment.url("registry", f"/v1/systems/{system['id']}/objectives"),
        json=objective,
        headers=engineer,
    )
    assert response.status_code == 201, response.text
    key = await deployment.ingest_key(client, system["id"])
    predictions = [
        make_prediction(system["id"], ts=start + timedelta(seconds=i), prediction=1)
        for i in range(len(actuals))
    ]
    outcomes = [
        make_outcome(system["id"], p["event_id"], actual, ts=start)
        for p, actual in zip(predictions, actuals, strict=True)
    ]
    response = await post_until_accepted(
        client, deployment.url("ingest", "/v1/outcomes"), outcomes, key
    )
    assert response.status_code == 202, response.text
    response = await client.post(
        deployment.url("ingest", "/v1/predictions"), json=predictions, headers=key
    )
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == len(predictions)
    return await next_evaluation(deployment, system["id"])


@dataclass
class Deployment:
    kind: str
    urls: dict[str, str]
    bus: Bus
    logs: list[Path] = field(default_factory=list)
    auth_secret: str | None = None
    """Set when the services check credentials (the Kafka + PostgreSQL deployment)."""

    def as_user(self, role: Role = Role.ADMIN) -> dict[str, str]:
        """Headers of a signed-in user with ``role`` (none needed in open mode)."""
        if self.auth_secret is None:
            return {}
        token = issue_token(self.auth_secret, f"test-{role.value}", role, 600)
        return {"Authorization": f"Bearer {token}"}

    async def ingest_key(self, client: httpx.AsyncClient, system_id: str) -> dict[str, str]:
        """Headers carrying a new ingest key of the system (none needed in open mode)."""
        if self.auth_secret is None:
            return {}
        response = await client.post(
            self.url("registry", f"/v1/systems/{system_id}/ingest-keys"),
            json={"name": "tests"},
            headers=self.as_user(Role.ML_ENGINEER),
        )
        assert response.status_code == 201, response.text
        return {"Authorization": f"Bearer {response.json()['key']}"}

    def url(self, service: str, path: str) -> str:
        return self.urls[service] + path

    def log_tail(self, lines: int = 40) -> str:
        out = []
        for log in self.logs:
            text = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {log.name}\n" + "\n".join(text))
        return "\n".join(out)


async def wait_ready(urls: dict[str, str], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=5) as client:
        for name, base in urls.items():
            while True:
                try:
                    response = await client.get(base + "/readyz")
                    if response.status_code == 200:
                        break
                    detail = response.text
                except httpx.TransportError as exc:
                    detail = repr(exc)
                if time.monotonic() > deadline:
                    raise AssertionError(f"{name} not ready within {timeout_s}s: {detail}")
                await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def embedded_deployment(tmp_path: Path) -> AsyncIterator[Deployment]:
    options = EmbeddedOptions(
        data_dir=tmp_path,
        allowed_lateness_s=0.0,
        idle_close_s=1.0,
        tick_s=0.2,
    )
    app = create_embedded_app(options)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    base = f"http://127.0.0.1:{port}"
    urls = {name: f"{base}/{name}" for name in SERVICES}
    try:
        await wait_ready(urls)
        yield Deployment("embedded", urls, app.state.bus)
    finally:
        server.should_exit = True
        await task


@contextlib.contextmanager
def service_processes(
    *, tmp_path: Path, bootstrap: str, database_url: str, prefix: str, auth_secret: str
) -> Iterator[tuple[dict[str, str], list[Path]]]:
    procs: list[subprocess.Popen[bytes]] = []
    urls: dict[str, str] = {}
    logs: list[Path] = []
    try:
        for name in SERVICES:
            port = free_port()
            env_prefix = f"WK_{name.upper()}_"
            env = {
                **os.environ,
                f"{env_prefix}BUS": "kafka",
                f"{env_prefix}KAFKA_BOOTSTRAP": bootstrap,
                f"{env_prefix}DATABASE_URL": database_url,
                f"{env_prefix}TOPIC_PREFIX": prefix,
                f"{env_prefix}PORT": str(port),
                f"{env_prefix}GROUP_ID": f"{prefix}{name}",
                f"{env_prefix}AUTH_SECRET": auth_secret,
                "WK_EVALUATOR_REGISTRY_URL": urls.get("registry", ""),
                "WK_EVALUATOR_ALLOWED_LATENESS_S": "0",
                "WK_EVALUATOR_IDLE_CLOSE_S": "1",
                "WK_EVALUATOR_TICK_S": "0.2",
            }
            log = tmp_path / f"{name}.log"
            logs.append(log)
            with log.open("wb") as out:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", f"services.{name}"],
                        cwd=REPO_ROOT,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                    )
                )
            urls[name] = f"http://127.0.0.1:{port}"
        yield urls, logs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.asynccontextmanager
async def kafka_postgres_deployment(
    tmp_path: Path, bootstrap: str, database_url: str
) -> AsyncIterator[Deployment]:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    secret = secrets.token_urlsafe(32)
    url = await asyncio.to_thread(fresh_database, database_url)
    bus = KafkaBus(bootstrap, Topics(prefix=prefix))
    await bus.start()
    try:
        with service_processes(
            tmp_path=tmp_path,
            bootstrap=bootstrap,
            database_url=url,
            prefix=prefix,
            auth_secret=secret,
        ) as (urls, logs):
            deployment = Deployment("kafka-postgres", urls, bus, logs, auth_secret=secret)
            try:
                await wait_ready(urls)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{deployment.log_tail()}") from exc
            yield deployment
    finally:
        await bus.stop()


@pytest.fixture(params=["embedded", "kafka-postgres"])
async def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Deployment]:
    if request.param == "embedded":
        async with embedded_deployment(tmp_path) as deployed:
            yield deployed
    else:
        bootstrap = request.getfixturevalue("kafka_bootstrap")
        database_url = request.getfixturevalue("database_url")
        async with kafka_postgres_deployment(tmp_path, bootstrap, database_url) as deployed:
            yield deployed
