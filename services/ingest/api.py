"""Ingest HTTP routes: parse, validate, produce, and answer only after the bus acknowledged."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from shared.bus import Bus, BusUnavailable
from shared.contracts import encode
from shared.registry_view import RegistryView

from .metrics import IngestMetrics
from .schemas import IngestResponse
from .settings import Settings
from .validation import BodyError, Kind, parse_body, validate_events

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["ingest"])


class IngestContext:
    def __init__(
        self, *, settings: Settings, bus: Bus, view: RegistryView, metrics: IngestMetrics
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.view = view
        self.metrics = metrics


def context(request: Request) -> IngestContext:
    ctx: IngestContext = request.app.state.ingest
    return ctx


ContextDep = Annotated[IngestContext, Depends(context)]

_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"oneOf": [{"type": "object"}, {"type": "array"}]}},
            "application/x-ndjson": {"schema": {"type": "string"}},
        },
    }
}


def _unavailable(ctx: IngestContext, reason: str) -> JSONResponse:
    return JSONResponse(
        {"detail": reason},
        status_code=503,
        headers={"Retry-After": str(ctx.settings.retry_after_s)},
    )


async def _ingest(kind: Kind, request: Request, ctx: IngestContext, atomic: bool) -> JSONResponse:
    limit = ctx.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return JSONResponse({"detail": f"body exceeds the limit of {limit} bytes"}, 413)
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            return JSONResponse({"detail": f"body exceeds the limit of {limit} bytes"}, 413)
    try:
        items = parse_body(
            bytes(body),
            content_type=request.headers.get("content-type", "application/json"),
            content_encoding=request.headers.get("content-encoding", ""),
            max_bytes=limit,
        )
    except BodyError as exc:
        return JSONResponse({"detail": exc.reason}, exc.status)
    if len(items) > ctx.settings.max_batch_events:
        return JSONResponse(
            {
                "detail": f"batch of {len(items)} exceeds the limit of "
                f"{ctx.settings.max_batch_events} events"
            },
            413,
        )
    if not ctx.view.loaded:
        return _unavailable(ctx, "registry view is still loading; retry shortly")
    ctx.metrics.batch_size.observe(len(items))
    good, _indexes, errors = validate_events(kind, items, lookup=ctx.view.get)
    for error in errors:
        item = items[error.index]
        system = item.get("system_id") if isinstance(item, dict) else None
        ctx.metrics.rejected.labels(
            str(system) if error.field != "system_id" else "unknown",
            kind,
            error.field.split(".")[0],
        ).inc()
    if errors and (atomic or not good):
        return JSONResponse(
            {"detail": [e.model_dump() for e in errors], "accepted": 0}, status_code=422
        )
    topic = ctx.bus.topics.predictions if kind == "predictions" else ctx.bus.topics.outcomes
    started = time.perf_counter()
    try:
        await ctx.bus.producer.send_many(
            topic, [(event.system_id.encode(), encode(event)) for event in good]
        )
    except BusUnavailable as exc:
        ctx.metrics.bus_errors.inc()
        return _unavailable(ctx, f"event bus unavailable: {exc}")
    ctx.metrics.produce_seconds.observe(time.perf_counter() - started)
    for event in good:
        ctx.metrics.accepted.labels(event.system_id, kind).inc()
    response = IngestResponse(accepted=len(good), rejected=errors)
    return JSONResponse(response.model_dump(), status_code=202)


@router.post(
    "/predictions",
    status_code=202,
    response_model=IngestResponse,
    openapi_extra=_BODY_DOC,
    responses={413: {}, 422: {}, 503: {}},
)
async def ingest_predictions(
    request: Request, ctx: ContextDep, atomic: bool = False
) -> JSONResponse:
    """One prediction event, a JSON array of them, or NDJSON (optionally gzip-compressed)."""
    return await _ingest("predictions", request, ctx, atomic)


@router.post(
    "/outcomes",
    status_code=202,
    response_model=IngestResponse,
    openapi_extra=_BODY_DOC,
    responses={413: {}, 422: {}, 503: {}},
)
async def ingest_outcomes(request: Request, ctx: ContextDep, atomic: bool = False) -> JSONResponse:
    """One outcome event, a JSON array of them, or NDJSON (optionally gzip-compressed)."""
    return await _ingest("outcomes", request, ctx, atomic)
