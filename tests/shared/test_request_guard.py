"""Registry, evaluator and alerts refuse hostile bodies before reading them: no credentials ->
401, a body over the limit -> 413 naming it, counting the bytes the server pulled
(issue 10, defect 7)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI

from shared.auth import Role, issue_token
from shared.request_guard import RequestGuard, RouteLimit
from tests.deployments import Deployment

SECRET = "guard-secret-0123456789-0123456789"
CHUNK = b"x" * 65_536


class Body:
    """A streamed request body of ``chunks`` chunks that counts what the server pulled."""

    def __init__(self, chunks: int) -> None:
        self.chunks = chunks
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.pulled += len(CHUNK)
            yield CHUNK


def _apps(tmp_path: Path) -> dict[str, Callable[[], FastAPI]]:
    from services.alerts.app import create_app as alerts
    from services.alerts.settings import Settings as AlertsSettings
    from services.evaluator.app import create_app as evaluator
    from services.evaluator.settings import Settings as EvaluatorSettings
    from services.registry.app import create_app as registry
    from services.registry.settings import Settings as RegistrySettings

    common: dict[str, Any] = {"auth_secret": SECRET, "max_body_bytes": 256 * 1024}
    db = f"sqlite:///{tmp_path / 'guard.db'}"
    return {
        "/v1/systems": lambda: registry(RegistrySettings(database_url=db, **common)),
        "/v1/evaluations": lambda: evaluator(EvaluatorSettings(database_url=db, **common)),
        "/v1/nonconformities": lambda: alerts(AlertsSettings(database_url=db, **common)),
    }


def _token(role: Role = Role.ADMIN) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(SECRET, 'guard-test', role, 600)}"}


@pytest.mark.parametrize("path", ["/v1/systems", "/v1/evaluations", "/v1/nonconformities"])
async def test_services_refuse_before_reading_the_body(tmp_path: Path, path: str) -> None:
    app = _apps(tmp_path)[path]()
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        json = {"Content-Type": "application/json"}
        for headers in ({}, {"Authorization": "Bearer wk1.forged.token"}):
            body = Body(40)
            response = await client.post(path, content=body, headers={**json, **headers})
            assert response.status_code == 401, response.text
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert body.pulled == 0
        body = Body(40)
        declared = {**json, **_token(), "Content-Length": str(200 * 1024 * 1024)}
        response = await client.post(path, content=body, headers=declared)
        assert response.status_code == 413, response.text
        assert response.json() == {"detail": "body exceeds the limit of 262144 bytes"}
        assert body.pulled == 0
        body = Body(40)  # streamed without a length: refused once past the limit
        response = await client.post(path, content=body, headers={**json, **_token()})
        # (the evaluator has no write route: 405 without reading anything)
        assert response.status_code == (405 if path == "/v1/evaluations" else 413), response.text
        assert body.pulled <= 256 * 1024 + len(CHUNK)


async def _echo_size(scope: Any, receive: Any, send: Any) -> None:
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})


async def test_a_route_limit_lets_a_large_upload_stream_through() -> None:
    guard = RequestGuard(
        _echo_size,
        max_body_bytes=1024,
        auth_secret=None,
        route_limits=[RouteLimit("POST", r"/v1/systems/[^/]+/references", 10 * len(CHUNK))],
    )
    transport = httpx.ASGITransport(guard)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        response = await client.post("/v1/systems/s-1/references", content=Body(10))
        assert response.status_code == 200
        assert response.text == str(10 * len(CHUNK))
        body = Body(11)
        response = await client.post("/v1/systems/s-1/references", content=body)
        assert response.status_code == 413
        assert body.pulled == 11 * len(CHUNK)
        response = await client.post("/v1/systems", content=b"x" * 1025)
        assert response.status_code == 413
        assert (await client.get("/healthz")).status_code == 200


def _raw_post(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """POST with headers only (the body is never sent): the status line and the answer."""
    parts = urlsplit(url)
    lines = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < 20:
            chunk = sock.recv(65_536)
            if not chunk:
                break
            answer += chunk
    return int(answer.split(b" ", 2)[1]), answer


async def test_deployed_services_answer_before_the_body_arrives(deployment: Deployment) -> None:
    huge = {"Content-Type": "application/json", "Content-Length": str(500 * 1024 * 1024)}
    for service, path in [
        ("registry", "/v1/systems"),
        ("evaluator", "/v1/evaluations"),
        ("alerts", "/v1/nonconformities"),
    ]:
        url = deployment.url(service, path)
        if deployment.auth_secret is not None:
            status, answer = await asyncio.to_thread(_raw_post, url, huge)
            assert status == 401, answer
        admin = {**huge, **deployment.as_user(Role.ADMIN)}
        status, answer = await asyncio.to_thread(_raw_post, url, admin)
        assert status == 413, answer
        assert b"body exceeds the limit of" in answer
