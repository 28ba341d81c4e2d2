"""A fake ingest (the SDK's I/O edge) and client factories for the SDK tests.

``FakeIngest`` speaks the ingest HTTP API: it decodes gzip'd JSON arrays or NDJSON, checks the
bearer key, answers 202 with accepted/duplicates/rejected, and can be scripted to fail. It is
reachable either through an ``httpx.MockTransport`` (in process) or as a real HTTP server on
127.0.0.1 (for connection-refused and subprocess tests).
"""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from watchkeeper_sdk import AsyncWatchkeeper, Watchkeeper

API_KEY = "wk_test_key"
SYSTEM_ID = "credit-scoring"
MODEL_VERSION = "2024.06.1"
PATHS = {"/v1/predictions": "prediction", "/v1/outcomes": "outcome"}

Scripted = tuple[int, dict[str, str], Any]
"""A scripted answer: status, headers, JSON body."""


@dataclass
class Attempt:
    """One request ingest saw (decoded), and the status it answered."""

    path: str
    headers: dict[str, str]
    events: list[dict[str, Any]]
    status: int
    at: float = field(default_factory=time.monotonic)  # when ingest answered
    began: float | None = None  # when the request left the client (see ``slow_transport``)


class FakeIngest:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.attempts: list[Attempt] = []
        self.accepted: list[dict[str, Any]] = []
        self.script: deque[Scripted] = deque()
        self.rule: Callable[[list[dict[str, Any]]], Scripted | None] | None = None
        self.reject: Callable[[dict[str, Any]], tuple[str, str] | None] | None = None
        self.down = False
        self.api_keys = {API_KEY}  # keys ingest knows (a test may add one "once propagated")
        self.gate: threading.Event | None = None
        self.started = 0
        self._seen: set[str] = set()
        self._server: ThreadingHTTPServer | None = None
        self.port: int | None = None

    # -- what the tests look at ---------------------------------------------------------------

    def accepted_ids(self) -> list[str]:
        with self.lock:
            return [event["event_id"] for event in self.accepted]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Block until ``count`` events were accepted; returns them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.accepted) >= count:
                    return list(self.accepted)
            time.sleep(0.01)
        raise AssertionError(f"ingest accepted {len(self.accepted)} events, expected {count}")

    # -- the protocol -------------------------------------------------------------------------

    def respond(self, path: str, headers: dict[str, str], body: bytes) -> Scripted:
        with self.lock:
            self.started += 1
        if self.gate is not None:
            self.gate.wait(30)
        if headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        if headers.get("content-type", "").startswith("application/x-ndjson"):
            events = [orjson.loads(line) for line in body.splitlines() if line]
        else:
            events = orjson.loads(body)
        with self.lock:
            answer: Scripted | None = None
            if headers.get("authorization") not in {f"Bearer {key}" for key in self.api_keys}:
                answer = (401, {}, {"detail": "unknown API key"})
            elif path not in PATHS:
                answer = (404, {}, {"detail": "not found"})
            elif self.script:
                answer = self.script.popleft()
            elif self.rule is not None:
                answer = self.rule(events)
            if answer is not None:
                self.attempts.append(Attempt(path, headers, events, answer[0]))
                return answer
            duplicates, rejected = [], []
            for index, event in enumerate(events):
                assert ("prediction_id" in event) == (path == "/v1/outcomes")
                refusal = self.reject(event) if self.reject else None
                if refusal is not None:
                    rejected.append({"index": index, "field": refusal[0], "reason": refusal[1]})
                elif event["event_id"] in self._seen:
                    duplicates.append(event["event_id"])
                else:
                    self._seen.add(event["event_id"])
                    self.accepted.append(event)
            self.attempts.append(Attempt(path, headers, events, 202))
            accepted = len(events) - len(duplicates) - len(rejected)
            return 202, {}, {"accepted": accepted, "duplicates": duplicates, "rejected": rejected}

    def transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            if self.down:
                raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
            headers = {key.lower(): value for key, value in request.headers.items()}
            status, extra, payload = self.respond(request.url.path, headers, request.content)
            return httpx.Response(status, headers=extra, content=orjson.dumps(payload))

        return httpx.MockTransport(handle)

    def slow_transport(self, delay: Callable[[int], float]) -> httpx.MockTransport:
        """Requests take ``delay(n)`` seconds (n: the request's number, from 0) without
        blocking the client's loop, so that several can be in flight; records ``began``."""
        inner = self.transport()
        numbers = iter(range(1 << 62))

        async def handle(request: httpx.Request) -> httpx.Response:
            began = time.monotonic()
            await asyncio.sleep(delay(next(numbers)))
            with self.lock:
                seen = len(self.attempts)
            response = await inner.handle_async_request(request)
            with self.lock:
                if len(self.attempts) > seen:  # the fake answers synchronously on this loop
                    self.attempts[-1].began = began
            return response

        return httpx.MockTransport(handle)

    # -- as a real server ---------------------------------------------------------------------

    def start(self, port: int = 0) -> int:
        ingest = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {key.lower(): value for key, value in self.headers.items()}
                status, extra, payload = ingest.respond(self.path, headers, body)
                content = orjson.dumps(payload)
                self.send_response(status)
                for key, value in extra.items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._server = server
        self.port = server.server_address[1]
        return self.port

    def stop(self) -> None:
        """Close the listening socket: clients now get connection refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        assert self.port is not None
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def ingest() -> Iterator[FakeIngest]:
    fake = FakeIngest()
    yield fake
    if fake.gate is not None:
        fake.gate.set()
    fake.stop()


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


def client_options(ingest: FakeIngest, spool_dir: Path, **overrides: Any) -> dict[str, Any]:
    """Fast settings for tests: short linger and backoff, in-process transport."""
    options: dict[str, Any] = {
        "url": "http://ingest.test",
        "api_key": API_KEY,
        "system_id": SYSTEM_ID,
        "model_version": MODEL_VERSION,
        "spool_dir": spool_dir,
        "transport": ingest.transport(),
        "linger": 0.02,
        "backoff": 0.01,
        "max_backoff": 0.05,
        "flush_at_exit": False,
    }
    options.update(overrides)
    return options


@pytest.fixture
def make_client(ingest: FakeIngest, spool_dir: Path) -> Iterator[Callable[..., Watchkeeper]]:
    clients: list[Watchkeeper] = []

    def make(**overrides: Any) -> Watchkeeper:
        client = Watchkeeper(**client_options(ingest, spool_dir, **overrides))
        clients.append(client)
        return client

    yield make
    if ingest.gate is not None:
        ingest.gate.set()
    for client in clients:
        client.close(timeout=2.0)


@pytest.fixture
async def make_async_client(ingest: FakeIngest, spool_dir: Path) -> Any:
    clients: list[AsyncWatchkeeper] = []

    def make(**overrides: Any) -> AsyncWatchkeeper:
        client = AsyncWatchkeeper(**client_options(ingest, spool_dir, **overrides))
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose(timeout=2.0)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def spool_files(spool_dir: Path) -> list[Path]:
    return sorted(spool_dir.glob("*/*.seg")) if spool_dir.exists() else []
