"""The ingest HTTP protocol: request bodies and what a response means for the sender.

Pure functions, no I/O: the engine decides what to do with a :class:`Reply`.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import Enum
from typing import Any

import orjson

from watchkeeper_sdk._errors import EventKind, RejectedEvent

__all__ = [
    "PATHS",
    "Action",
    "Cause",
    "Reply",
    "classify",
    "encode_batch",
    "event_of",
    "hold_cause",
    "parse_retry_after",
]

PATHS: Mapping[EventKind, str] = {"prediction": "/v1/predictions", "outcome": "/v1/outcomes"}

MAX_RETRY_AFTER = 600.0
"""Longest Retry-After honoured (seconds); a larger value is capped rather than obeyed blindly."""

_RETRYABLE_4XX = frozenset({408, 425, 429})


class Action(Enum):
    DONE = "done"  # ingest answered for every event (accepted, duplicate, rejected or held)
    RETRY = "retry"  # nothing was taken; send the same events again later
    SPLIT = "split"  # body too large; send smaller batches
    HOLD = "hold"  # nothing was taken because of a setup problem (``cause``): keep, retry
    REJECT = "reject"  # ingest refused the whole batch for good


class Cause:
    """Why events are kept instead of delivered: problems that a fix elsewhere resolves."""

    NOT_FOUND = "not_found"  # 404/405/3xx: the URL does not lead to ingest
    UNAUTHORIZED = "unauthorized"  # 401: ingest does not know the key (yet)
    FORBIDDEN = "forbidden"  # 403: the key is not valid for the event's system (yet)
    UNKNOWN_SYSTEM = "unknown_system"  # 422 "unknown AI system": not registered (yet)
    UNREACHABLE = "unreachable"  # check() only: no HTTP answer at all


@dataclass(frozen=True, slots=True)
class Reply:
    action: Action
    status_code: int | None
    detail: str = ""
    retry_after: float | None = None
    duplicates: int = 0
    rejected: tuple[RejectedEvent, ...] = field(default_factory=tuple)
    held: tuple[int, ...] = ()  # indexes of events to keep and send again
    cause: str | None = None  # why (None: they were only not taken, e.g. beside a refusal)


def encode_batch(events: Sequence[bytes], *, compress: bool) -> tuple[bytes, dict[str, str]]:
    """A JSON array of the events (each already JSON) and its headers; gzip-compressed when
    ``compress``."""
    body = b"[%s]" % b",".join(events)
    headers = {"Content-Type": "application/json"}
    if compress:
        body = gzip.compress(body, compresslevel=1, mtime=0)  # fast: the sender is CPU-bound
        headers["Content-Encoding"] = "gzip"
    return body, headers


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), capped."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _detail(body: bytes) -> str:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:500].decode("utf-8", "replace")
    if isinstance(payload, dict) and "detail" in payload:
        detail = payload["detail"]
        return detail if isinstance(detail, str) else orjson.dumps(detail).decode()[:2000]
    return orjson.dumps(payload).decode()[:2000]


def hold_cause(reason: str) -> str | None:
    """The setup problem a per-event refusal reason means, or None if the event is invalid."""
    if reason.startswith("unknown AI system"):
        return Cause.UNKNOWN_SYSTEM
    if reason.startswith("the API key is not valid for system"):
        return Cause.FORBIDDEN
    return None


def _entries(payload: object) -> list[dict[str, Any]] | None:
    """The per-event list of a 202 (``rejected``) or of a whole-batch refusal (``detail``,
    or ``rejected`` in the unified shape); None when the body has none."""
    if not isinstance(payload, dict):
        return None
    for key in ("rejected", "detail"):
        entries = payload.get(key)
        if isinstance(entries, list) and any(isinstance(e, dict) for e in entries):
            return [entry for entry in entries if isinstance(entry, dict)]
    return None


def event_of(event: bytes | Mapping[str, Any]) -> Mapping[str, Any]:
    """An event as a mapping (events travel as their JSON bytes; decoded only to report)."""
    if isinstance(event, bytes):
        decoded: dict[str, Any] = orjson.loads(event)
        return decoded
    return event


def _per_event(
    status_code: int,
    payload: object,
    events: Sequence[bytes | Mapping[str, Any]],
    *,
    unlisted_taken: bool,
) -> Reply:
    """Split a per-event answer into dropped (invalid) and held (setup problem) events.

    ``unlisted_taken``: events the list does not name were accepted (a 202), else (a
    whole-batch refusal) they were not taken and are sent again.
    """
    rejected: list[RejectedEvent] = []
    held: list[int] = []
    causes: list[str] = []
    reasons: list[str] = []
    listed: set[int] = set()
    for entry in _entries(payload) or ():
        index = entry.get("index")
        if not isinstance(index, int) or not 0 <= index < len(events) or index in listed:
            continue
        listed.add(index)
        reason = str(entry.get("reason", "rejected by ingest"))
        field_name = entry.get("field")
        cause = hold_cause(reason)
        if cause is not None:
            held.append(index)
            causes.append(cause)
            reasons.append(reason)
            continue
        rejected.append(
            RejectedEvent(
                event=event_of(events[index]),
                reason=reason,
                field=field_name if isinstance(field_name, str) else None,
            )
        )
    if not unlisted_taken:
        held.extend(index for index in range(len(events)) if index not in listed)
    duplicates = payload.get("duplicates") if isinstance(payload, dict) else None
    return Reply(
        Action.DONE,
        status_code,
        detail=reasons[0] if reasons else "",
        duplicates=len(duplicates) if isinstance(duplicates, list) else 0,
        rejected=tuple(rejected),
        held=tuple(sorted(held)),
        cause=causes[0] if causes else None,
    )


_HOLD_STATUS = {401: Cause.UNAUTHORIZED, 403: Cause.FORBIDDEN, 404: Cause.NOT_FOUND}
_HOLD_STATUS[405] = Cause.NOT_FOUND


def classify(
    status_code: int,
    headers: Mapping[str, str],
    body: bytes,
    events: Sequence[bytes | Mapping[str, Any]],
) -> Reply:
    """What an ingest response means for the batch ``events`` it answered.

    Only refusals of the events themselves drop them (with the reason). Answers that a fix
    elsewhere turns into a 202 (wrong URL, key or system not known yet) hold the events:
    the sender keeps them, retries with backoff and reports the ``cause``.
    """
    if 200 <= status_code < 300:
        try:
            payload = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            payload = None
        return _per_event(status_code, payload, events, unlisted_taken=True)
    retry_after = parse_retry_after(headers.get("retry-after"))
    if status_code >= 500 or status_code in _RETRYABLE_4XX:
        return Reply(Action.RETRY, status_code, _detail(body), retry_after)
    if status_code == 413 and len(events) > 1:
        return Reply(Action.SPLIT, status_code, _detail(body))
    detail = _detail(body) or f"HTTP {status_code}"
    cause = _HOLD_STATUS.get(status_code)
    if cause is None and 300 <= status_code < 400:
        cause = Cause.NOT_FOUND  # a redirect: the URL points somewhere else
    if cause is not None:
        return Reply(Action.HOLD, status_code, detail, retry_after, cause=cause)
    if status_code == 422:
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            payload = None
        if _entries(payload) is not None:
            return _per_event(status_code, payload, events, unlisted_taken=False)
        if hold_cause(detail) is not None:
            return Reply(Action.HOLD, status_code, detail, retry_after, cause=hold_cause(detail))
    return Reply(
        Action.REJECT,
        status_code,
        detail,
        rejected=tuple(RejectedEvent(event=event_of(event), reason=detail) for event in events),
    )
