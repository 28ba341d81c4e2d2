"""Hostile request bodies are refused before any route reads them: credentials first, then size.

FastAPI reads and parses a route's body before its dependencies run, so without this an
unauthenticated 200 MB POST is read (and parsed) in full only to get its 401. ``RequestGuard``
is a pure ASGI middleware every service puts in front of its routes:

* with an ``auth_secret`` set, a request of a writing method (anything but GET, HEAD, OPTIONS)
  without a valid user token in ``Authorization: Bearer`` gets 401 before a byte of its body
  is read (``shared.auth.verify_token``; the route still checks the role);
* a body over the route's limit gets 413 naming the limit: at once when ``Content-Length``
  says so, or as soon as the streamed body passes it (the route then sees a disconnect).

``/healthz``, ``/readyz`` and ``/metrics`` pass untouched. A route that needs a larger limit
(the registry's reference uploads, streamed to disk) gets its own through ``route_limits``.
``open_writes`` names paths a writing request may reach without a token (the alerts web UI's
sign-in form, which carries the token in its body); their body limit still applies.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
from pydantic import SecretStr
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import TokenError, verify_token

__all__ = ["RequestGuard", "RouteLimit"]

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


@dataclass(frozen=True, slots=True)
class RouteLimit:
    """A body limit of its own for ``method`` on paths matching ``path`` (a full match)."""

    method: str
    path: str
    max_body_bytes: int


async def _answer(
    send: Send, status: int, detail: str, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    body = orjson.dumps({"detail": detail})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _route_path(scope: Scope) -> str:
    """The path inside the app (the embedded runner mounts each service under a prefix)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


class RequestGuard:
    """See the module docstring. ``max_body_bytes`` is the limit of every other route."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        auth_secret: SecretStr | None,
        route_limits: Sequence[RouteLimit] = (),
        open_writes: Sequence[str] = (),
    ) -> None:
        self.app = app
        self.open_writes = frozenset(open_writes)
        self.max_body_bytes = max_body_bytes
        self.auth_secret = auth_secret
        self.route_limits = [
            (limit.method.upper(), re.compile(limit.path), limit.max_body_bytes)
            for limit in route_limits
        ]

    def _limit(self, method: str, path: str) -> int:
        for route_method, pattern, limit in self.route_limits:
            if method == route_method and pattern.fullmatch(path):
                return limit
        return self.max_body_bytes

    def _credential_problem(self, headers: Headers) -> tuple[str, bytes] | None:
        if self.auth_secret is None:
            return None
        scheme, _, credential = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            return "authorization: send 'Authorization: Bearer <user token>'", b"Bearer"
        try:
            verify_token(self.auth_secret, credential.strip())
        except TokenError as exc:
            return f"authorization: {exc}", b'Bearer error="invalid_token"'
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = _route_path(scope)
        if path in _OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        headers = Headers(scope=scope)
        if method not in _SAFE_METHODS and path not in self.open_writes:
            problem = self._credential_problem(headers)
            if problem is not None:
                await _answer(send, 401, problem[0], [(b"www-authenticate", problem[1])])
                return
        limit = self._limit(method, path)
        too_large = f"body exceeds the limit of {limit} bytes"
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _answer(send, 413, too_large, [(b"connection", b"close")])
            return

        received = 0
        refused = answered = started = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if answered:
                return  # the 413 went out; the route's answer to the disconnect is dropped
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        async def counted_receive() -> Message:
            nonlocal received, refused, answered
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    if not started:
                        await _answer(send, 413, too_large, [(b"connection", b"close")])
                        answered = True
                    return {"type": "http.disconnect"}
            return message

        await self.app(scope, counted_receive, guarded_send)
