"""Ingest HTTP routes: authenticate, parse, validate, deduplicate, produce, answer after the ack.

Order of checks, each answering on its own: API key (401) -> body size and batch length
(413) -> gzip and JSON (400) -> per-record contract, schema, event time, string lengths and
key scope (good records go on; with none left: 422, or 403 when only the key's scope refused
them) -> rate limit (429) ->
duplicate store (503 while an earlier request still delivers one of the events) -> Kafka
(503 with Retry-After when it does not acknowledge within ``kafka_send_timeout_s``).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter as Tally
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.auth import bearer_token
from shared.bus import BusUnavailable
from shared.bus.framing import frame
from shared.bus.kafka import DeliveryIncomplete
from shared.contracts import SystemSnapshot
from shared.errors import respond

from .context import IngestContext
from .dedup import Claim, Claims, Verdict
from .deps import ContextDep
from .errors import (
    ANSWERS,
    BodyError,
    DedupUnavailable,
    IngestError,
    RateLimited,
    RecordsRefused,
    Unauthorized,
    Unavailable,
)
from .eventtime import EventTimeLimits
from .fastdecode import system_hint
from .schemas import IngestResponse, RecordError
from .validation import (
    Accepted,
    Kind,
    decompress_body,
    is_ndjson,
    parse_items,
    validate_events,
)

__all__ = ["IngestFastPath", "router"]

router = APIRouter(prefix="/v1", tags=["ingest"])


_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"oneOf": [{"type": "object"}, {"type": "array"}]}},
            "application/x-ndjson": {"schema": {"type": "string"}},
        },
    }
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "body is not JSON / NDJSON / one complete gzip stream, or too deep"},
    401: {"description": "missing or unknown ingest API key (Authorization: Bearer <key>)"},
    403: {"description": "the API key belongs to another AI system"},
    413: {"description": "body or batch over the limit (named in the answer)"},
    415: {"description": "unsupported Content-Encoding"},
    422: {
        "description": "no valid record; as a 202, each bad record in rejected (and detail) "
        "by index, field, reason"
    },
    429: {"description": "the system is over its rate limit; see Retry-After"},
    503: {"description": "Kafka or the duplicate store did not answer; see Retry-After"},
}


def _json(payload: Any, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status, headers, media_type="application/json")


def _unavailable(ctx: IngestContext, reason: str) -> Unavailable:
    return Unavailable(reason, ctx.settings.retry_after_s)


def _unauthorized(ctx: IngestContext, reason: str, why: str) -> Unauthorized:
    ctx.metrics.auth_failures.labels(reason).inc()
    return Unauthorized(why)


async def _read_body(request: Request, limit: int) -> bytes | None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _too_many(count: int, limit: int) -> BodyError:
    return BodyError(413, f"batch of {count} exceeds the limit of {limit} events")


def _decode_fast(
    kind: Kind,
    body: bytes,
    content_type: str,
    ctx: IngestContext,
    key_system: str | None,
    times: EventTimeLimits,
) -> list[Accepted] | None:
    """The whole body through the system's one-pass decoder (see ``fastdecode``); None when
    the exact validator must look at it (it then names every problem)."""
    system_id = key_system if ctx.auth_required else system_hint(body)
    system = ctx.view.get(system_id) if system_id is not None else None
    if system is None or system.status != "active":
        return None
    decoder = ctx.fast(system)
    events = decoder.decode(kind, body, ndjson=is_ndjson(content_type), times=times)
    if events is None:
        return None
    encode = decoder.encode
    return [
        Accepted(index, system.system_id, event.event_id, encode(event))
        for index, event in enumerate(events)
    ]


@dataclass(frozen=True, slots=True)
class _Parsed:
    good: list[Accepted]
    errors: list[RecordError]
    items: list[Any]
    """The raw records when the exact validator read them (to count refusals by system)."""


def _parse(
    kind: Kind,
    body: bytes,
    *,
    content_type: str,
    content_encoding: str,
    ctx: IngestContext,
    key_system: str | None,
    times: EventTimeLimits,
) -> _Parsed:
    """Body to validated events (pure CPU work, so it may run in a worker thread); raises
    ``BodyError`` when the body as a whole is refused."""
    settings = ctx.settings
    body = decompress_body(
        body, content_encoding=content_encoding, max_bytes=settings.max_body_bytes
    )
    decoded = _decode_fast(kind, body, content_type, ctx, key_system, times)
    if decoded is not None:
        if len(decoded) > settings.max_batch_events:
            raise _too_many(len(decoded), settings.max_batch_events)
        return _Parsed(decoded, [], [])
    items, finite = parse_items(body, content_type=content_type)
    if len(items) > settings.max_batch_events:
        raise _too_many(len(items), settings.max_batch_events)

    def authorized(system: SystemSnapshot) -> str | None:
        if system.system_id == key_system:
            return None
        return f"the API key is not valid for system {system.system_id!r}"

    good, errors = validate_events(
        kind,
        items,
        lookup=ctx.view.get,
        authorized=authorized if ctx.auth_required else None,
        checks=ctx.checks,
        finite=finite,
        times=times,
        max_string_chars=settings.max_string_chars,
    )
    return _Parsed(good, errors, items)


async def _ingest(kind: Kind, request: Request, ctx: IngestContext, atomic: bool) -> Response:
    started = time.perf_counter()
    try:
        response = await _handle(kind, request, ctx, atomic)
    except IngestError as exc:
        response = respond(ANSWERS, exc, _json)
    metrics = ctx.metrics
    metrics.request_seconds.labels(kind).observe(time.perf_counter() - started)
    metrics.requests.labels(kind, str(response.status_code)).inc()
    return response


async def _handle(kind: Kind, request: Request, ctx: IngestContext, atomic: bool) -> Response:
    settings, metrics = ctx.settings, ctx.metrics
    key_system: str | None = None
    if ctx.auth_required:
        key = bearer_token(request)
        if key is None:
            raise _unauthorized(
                ctx, "missing", "Authorization: send 'Authorization: Bearer <ingest API key>'"
            )
        if not ctx.view.loaded:
            raise _unavailable(ctx, "registry view is still loading; retry shortly")
        key_system = ctx.keys.system_of(key)
        if key_system is None:
            raise _unauthorized(ctx, "unknown", "Authorization: unknown or revoked ingest API key")

    limit = settings.max_body_bytes
    body = await _read_body(request, limit)
    if body is None:
        raise BodyError(413, f"body exceeds the limit of {limit} bytes")
    if not ctx.view.loaded:
        raise _unavailable(ctx, "registry view is still loading; retry shortly")
    encoding = request.headers.get("content-encoding", "")
    parse = functools.partial(
        _parse,
        kind,
        body,
        content_type=request.headers.get("content-type", "application/json"),
        content_encoding=encoding,
        ctx=ctx,
        key_system=key_system,
        times=EventTimeLimits(
            time.time(), settings.max_future_skew_s, settings.backfill_allowance_s
        ),
    )
    # a large body would stall every other request for as long as it takes to parse
    weight = len(body) * (16 if encoding.strip().lower() == "gzip" else 1)
    if weight > settings.parse_in_thread_bytes:
        parsed = await asyncio.to_thread(parse)
    else:
        parsed = parse()
    good, errors = parsed.good, parsed.errors
    metrics.batch_size.observe(len(parsed.items) if parsed.items else len(good))
    if errors:
        _count_rejections(ctx, kind, parsed.items, errors)
        if atomic or not good:
            scope_only = key_system is not None and all(
                e.field == "system_id" and e.reason.startswith("the API key") for e in errors
            )
            raise RecordsRefused([e.model_dump() for e in errors], key_scope_only=scope_only)

    # the first of several records with one event_id in this request is the one that counts
    duplicates: list[Accepted] = []
    distinct: list[Accepted] = []
    seen: set[tuple[str, str]] = set()
    for event in good:
        identity = (event.system_id, event.event_id)
        if identity in seen:
            duplicates.append(event)
        else:
            seen.add(identity)
            distinct.append(event)

    per_system = Tally(event.system_id for event in distinct)
    wait = ctx.limiter.admit(per_system)
    if wait is not None:
        for system_id, count in per_system.items():
            metrics.rate_limited.labels(system_id, kind).inc(count)
        limited = ", ".join(sorted(per_system))
        raise RateLimited(f"rate limit of system {limited} exceeded; retry after {wait}s", wait)

    return await _deliver(kind, ctx, distinct, duplicates, errors)


async def _deliver(
    kind: Kind,
    ctx: IngestContext,
    events: list[Accepted],
    duplicates: list[Accepted],
    errors: list[RecordError],
) -> Response:
    metrics = ctx.metrics
    seq: int | None = None
    claims: Sequence[Claim] = ()
    if ctx.dedup is not None and events:
        system_ids = [e.system_id for e in events]
        horizons = {system_id: ctx.horizon_s(system_id) for system_id in set(system_ids)}
        claims = Claims(kind, system_ids, [e.event_id for e in events], horizons)
        started = time.perf_counter()
        try:
            seq, verdicts = await ctx.dedup.claim(claims)
        except DedupUnavailable as exc:
            metrics.dedup_errors.inc()
            raise _unavailable(ctx, str(exc)) from exc
        metrics.dedup_seconds.observe(time.perf_counter() - started)
        if verdicts.count(Verdict.NEW) != len(verdicts):  # the common case: all new
            in_flight = verdicts.count(Verdict.IN_FLIGHT)
            if in_flight:
                ctx.dedup.settle(
                    seq, [c for c, v in zip(claims, verdicts, strict=True) if v is Verdict.NEW]
                )
                raise _unavailable(
                    ctx,
                    f"{in_flight} events of this request are still being delivered by an "
                    "earlier request; retry to learn their fate",
                )
            fresh = [
                (e, c) for e, c, v in zip(events, claims, verdicts, strict=True) if v is Verdict.NEW
            ]
            duplicates.extend(
                e for e, v in zip(events, verdicts, strict=True) if v is Verdict.DUPLICATE
            )
            events = [e for e, _c in fresh]
            claims = [c for _e, c in fresh]

    if events:
        topic = ctx.bus.topics.predictions if kind == "predictions" else ctx.bus.topics.outcomes
        started = time.perf_counter()
        records = _records(events)
        try:
            await ctx.bus.producer.send_many(topic, [(key, value) for key, value, _ in records])
        except DeliveryIncomplete as exc:
            metrics.bus_errors.labels("unacknowledged").inc()
            if seq is not None:
                per_record = [[claims[i] for i in members] for _k, _v, members in records]
                ctx.follower.follow(exc.delivery, seq, per_record)
            raise _unavailable(ctx, f"event bus unavailable: {exc}") from exc
        except BusUnavailable as exc:
            metrics.bus_errors.labels("unavailable").inc()
            if seq is not None and ctx.dedup is not None:
                ctx.dedup.settle(seq, claims)
            raise _unavailable(ctx, f"event bus unavailable: {exc}") from exc
        metrics.produce_seconds.observe(time.perf_counter() - started)
    if seq is not None and ctx.dedup is not None:
        ctx.dedup.settle(seq)

    for system_id, count in Tally(event.system_id for event in events).items():
        metrics.event_accepted(system_id, kind, count)
    for system_id, count in Tally(event.system_id for event in duplicates).items():
        metrics.duplicates.labels(system_id, kind).inc(count)
    return _json(
        {
            "accepted": len(events),
            "duplicates": [event.event_id for event in duplicates],
            "rejected": [e.model_dump() for e in errors],
        },
        202,
    )


def _records(events: Sequence[Accepted]) -> list[tuple[bytes, bytes, list[int]]]:
    """Kafka records for the events: per system, in order, several events per record
    (``shared.bus.framing``); each with the indexes of its events in ``events``."""
    by_system: dict[str, list[int]] = {}
    for index, event in enumerate(events):
        by_system.setdefault(event.system_id, []).append(index)
    records: list[tuple[bytes, bytes, list[int]]] = []
    for system_id, indexes in by_system.items():
        key = system_id.encode()
        framed = frame([events[i].value for i in indexes])
        records += [(key, value, indexes[start:stop]) for value, start, stop in framed]
    return records


def _count_rejections(
    ctx: IngestContext, kind: Kind, items: list[Any], errors: list[RecordError]
) -> None:
    """Count refusals by system and the field at fault; unregistered system ids (anything
    a client makes up) are counted as 'unknown' so label cardinality stays bounded."""
    tally: Tally[tuple[str, str]] = Tally()
    for error in errors:
        item = items[error.index]
        claimed = item.get("system_id") if isinstance(item, dict) else None
        known = isinstance(claimed, str) and ctx.view.get(claimed) is not None
        system = claimed if known and isinstance(claimed, str) else "unknown"
        tally[(system, error.field.split(".")[0])] += 1
    for (system, field), count in tally.items():
        ctx.metrics.rejected.labels(system, kind, field).inc(count)


@router.post(
    "/predictions",
    status_code=202,
    response_model=IngestResponse,
    openapi_extra=_BODY_DOC,
    responses=_RESPONSES,
)
async def ingest_predictions(request: Request, ctx: ContextDep, atomic: bool = False) -> Response:
    """One prediction event, a JSON array of them, or NDJSON (optionally gzip-compressed).

    202 lists how many were accepted, which event_ids were duplicates (already accepted
    within the label horizon: not produced again) and every refused record (index, field,
    reason). ``atomic=true``: one bad record refuses the whole batch (422).
    """
    return await _ingest("predictions", request, ctx, atomic)


@router.post(
    "/outcomes",
    status_code=202,
    response_model=IngestResponse,
    openapi_extra=_BODY_DOC,
    responses=_RESPONSES,
)
async def ingest_outcomes(request: Request, ctx: ContextDep, atomic: bool = False) -> Response:
    """One outcome event, a JSON array of them, or NDJSON (optionally gzip-compressed)."""
    return await _ingest("outcomes", request, ctx, atomic)


_PATHS: dict[str, Kind] = {"/v1/predictions": "predictions", "/v1/outcomes": "outcomes"}
_BOOLEAN = {"true": True, "1": True, "yes": True, "on": True}
_BOOLEAN |= {"false": False, "0": False, "no": False, "off": False}


def _atomic(query: bytes) -> bool | None:
    """``atomic`` from a query string as FastAPI reads a bool; None when unreadable."""
    atomic = False
    for part in query.split(b"&"):
        name, _, value = part.partition(b"=")
        if name == b"atomic":
            parsed = _BOOLEAN.get(value.decode("latin-1").lower())
            if parsed is None:
                return None
            atomic = parsed
    return atomic


class IngestFastPath:
    """ASGI middleware serving ``POST /v1/predictions|outcomes`` with the same handler as the
    routes above, without FastAPI's routing, dependency and middleware layers (~40 % of the
    CPU of a single-event request). Everything else, and any request it is unsure about
    (an unreadable ``atomic``), goes to the app, whose routes also document the API."""

    def __init__(self, app: ASGIApp, ctx: IngestContext) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = _PATHS.get(scope["path"]) if scope["type"] == "http" else None
        if kind is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        atomic = _atomic(scope.get("query_string", b""))
        if atomic is None:
            await self.app(scope, receive, send)
            return
        response = await _ingest(kind, Request(scope, receive), self.ctx, atomic)
        await response(scope, receive, send)
