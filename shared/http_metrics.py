"""HTTP request metrics for every service: one pure ASGI middleware, outermost in each app.

``watchkeeper_http_requests_total{service, route, method, status}`` and
``watchkeeper_http_request_duration_seconds{service, route, method}``. ``route`` is the route
template (``/v1/systems/{system_id}``), never the raw path, so ids do not become label
values: the template FastAPI's router put in the scope, or, for an answer given before routing
(``RequestGuard``'s 401/413, ingest's fast path), the template of the route the path matches;
``(unmatched)`` when none does. Methods outside the standard set count as ``other``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette._utils import get_route_path
from starlette.routing import BaseRoute, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["UNMATCHED", "HttpMetrics", "HttpMetricsMiddleware"]

UNMATCHED = "(unmatched)"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class HttpMetrics:
    """The two HTTP families on ``registry`` for one ``service``."""

    def __init__(self, registry: CollectorRegistry, *, service: str) -> None:
        self.service = service
        self.requests = Counter(
            "watchkeeper_http_requests",
            "HTTP requests answered, by service, route template, method and status",
            ["service", "route", "method", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "watchkeeper_http_request_duration_seconds",
            "Time from a request's arrival to the last byte of its answer",
            ["service", "route", "method"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(self.service, route, method, str(status)),
                self.duration.labels(self.service, route, method),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


def _template(route: Any) -> str | None:
    template = getattr(route, "path_format", None)
    return template if isinstance(template, str) else None


def _templates(routes: Sequence[BaseRoute]) -> Iterator[str]:
    """The path templates of ``routes``, into included routers (FastAPI includes them lazily:
    their routes are reached through ``effective_route_contexts``)."""
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if callable(contexts):
            for context in contexts():
                found = _template(getattr(context, "starlette_route", None)) or _template(context)
                if found is not None:
                    yield found
        else:
            found = _template(route)
            if found is not None:
                yield found


class HttpMetricsMiddleware:
    """Counts and times every HTTP request of the app it wraps (``routes``: the app's own,
    to name the template of a request answered before the router ran)."""

    def __init__(self, app: ASGIApp, *, metrics: HttpMetrics, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes
        self._patterns: list[tuple[re.Pattern[str], str]] | None = None
        """The app's templates as regular expressions, built at the first unrouted request
        (every route is registered by then)."""
        self._static: dict[str, str] = {}
        """Templates found by matching, for paths without parameters (bounded by the app)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            method = scope["method"] if scope["method"] in _METHODS else "other"
            route = _template(scope.get("route")) or self._match(scope)
            self.metrics.observe(route, method, status, time.perf_counter() - started)

    def _match(self, scope: Scope) -> str:
        """The template of the first route the request's path matches (any method)."""
        path = get_route_path(scope)
        found = self._static.get(path)
        if found is not None:
            return found
        if self._patterns is None:
            self._patterns = [(compile_path(t)[0], t) for t in _templates(self.routes)]
        for pattern, template in self._patterns:
            if pattern.match(path):
                if template == path:
                    self._static[path] = template
                return template
        return UNMATCHED
