"""The one HTTP middleware every service uses: requests by route template (never a raw path
with ids in it), method and status, with a latency histogram; answers given before routing
(a guard's 401) and failures (500) are counted too."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.http_metrics import UNMATCHED
from shared.metrics import serve_metrics


class RefuseWrites:
    """A guard answering 401 to every POST before the router sees it (as RequestGuard does)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            await send({"type": "http.response.start", "status": 401, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await self.app(scope, receive, send)


def make_app(registry: CollectorRegistry) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/things/{thing_id}")
    def thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    @app.post("/v1/things/{thing_id}")
    def write(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    @app.get("/v1/broken")
    def broken() -> None:
        raise RuntimeError("boom")

    app.add_middleware(RefuseWrites)
    serve_metrics(app, registry, service="things")
    return app


async def test_requests_are_counted_by_route_template_method_and_status() -> None:
    registry = CollectorRegistry()
    app = make_app(registry)
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://things") as client:
        for thing_id in ("a", "b", "c"):
            assert (await client.get(f"/v1/things/{thing_id}")).status_code == 200
        assert (await client.post("/v1/things/a")).status_code == 401
        assert (await client.get("/no/such/path")).status_code == 404
        assert (await client.request("PROPFIND", "/v1/things/a")).status_code == 405
        assert (await client.get("/v1/broken")).status_code == 500
        text = (await client.get("/metrics")).text

    def requests(route: str, method: str, status: str) -> float | None:
        labels = {"service": "things", "route": route, "method": method, "status": status}
        return registry.get_sample_value("watchkeeper_http_requests_total", labels)

    def timed(route: str, method: str) -> float | None:
        labels = {"service": "things", "route": route, "method": method}
        return registry.get_sample_value("watchkeeper_http_request_duration_seconds_count", labels)

    template = "/v1/things/{thing_id}"
    assert requests(template, "GET", "200") == 3
    assert timed(template, "GET") == 3
    assert requests(template, "POST", "401") == 1  # answered before routing: still its route
    assert requests(UNMATCHED, "GET", "404") == 1
    assert requests(template, "other", "405") == 1
    assert requests("/v1/broken", "GET", "500") == 1
    # a scrape is counted once its answer is sent: not in its own body, in the next one
    assert 'route="/metrics"' not in text
    assert requests("/metrics", "GET", "200") == 1
    # no raw path (ids) as a label value
    assert "/v1/things/a" not in text and "/no/such/path" not in text
    buckets = registry.get_sample_value(
        "watchkeeper_http_request_duration_seconds_bucket",
        {"service": "things", "route": template, "method": "GET", "le": "+Inf"},
    )
    assert buckets == 3
