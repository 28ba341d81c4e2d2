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

__all__ = ["PATHS", "Action", "Reply", "classify", "encode_batch", "parse_retry_after"]

PATHS: Mapping[EventKind, str] = {"prediction": "/v1/predictions", "outcome": "/v1/outcomes"}

MAX_RETRY_AFTER = 600.0
"""Longest Retry-After honoured (seconds); a larger value is capped rather than obeyed blindly."""

_RETRYABLE_4XX = frozenset({408, 425, 429})


class Action(Enum):
    DONE = "done"  # ingest answered for every event (accepted, duplicate or rejected)
    RETRY = "retry"  # nothing was taken; send the same events again later
    SPLIT = "split"  # body too large; send smaller batches
    REJECT = "reject"  # ingest refused the whole batch for good


@dataclass(frozen=True, slots=True)
class Reply:
    action: Action
    status_code: int | None
    detail: str = ""
    retry_after: float | None = None
    duplicates: int = 0
    rejected: tuple[RejectedEvent, ...] = field(default_factory=tuple)


def encode_batch(
    events: Sequence[Mapping[str, Any]], *, compress: bool
) -> tuple[bytes, dict[str, str]]:
    """A JSON array body and its headers; gzip-compressed when ``compress``."""
    body = orjson.dumps(events)
    headers = {"Content-Type": "application/json"}
    if compress:
        body = gzip.compress(body, compresslevel=5, mtime=0)
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


def _partial_rejections(
    payload: object, events: Sequence[Mapping[str, Any]]
) -> tuple[tuple[RejectedEvent, ...], int]:
    """Per-event rejections and the duplicate count from a 2xx body (lenient about its shape)."""
    if not isinstance(payload, dict):
        return (), 0
    duplicates = payload.get("duplicates")
    n_duplicates = len(duplicates) if isinstance(duplicates, list) else 0
    rejected: list[RejectedEvent] = []
    entries = payload.get("rejected")
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, dict):
            continue
        index = entry.get("index")
        if not isinstance(index, int) or not 0 <= index < len(events):
            continue
        field_name = entry.get("field")
        rejected.append(
            RejectedEvent(
                event=events[index],
                reason=str(entry.get("reason", "rejected by ingest")),
                field=field_name if isinstance(field_name, str) else None,
            )
        )
    return tuple(rejected), n_duplicates


def classify(
    status_code: int,
    headers: Mapping[str, str],
    body: bytes,
    events: Sequence[Mapping[str, Any]],
) -> Reply:
    """What an ingest response means for the batch ``events`` it answered."""
    if 200 <= status_code < 300:
        try:
            payload = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            payload = None
        rejected, duplicates = _partial_rejections(payload, events)
        return Reply(Action.DONE, status_code, duplicates=duplicates, rejected=rejected)
    retry_after = parse_retry_after(headers.get("retry-after"))
    if status_code >= 500 or status_code in _RETRYABLE_4XX:
        return Reply(Action.RETRY, status_code, _detail(body), retry_after)
    if status_code == 413 and len(events) > 1:
        return Reply(Action.SPLIT, status_code, _detail(body))
    detail = _detail(body) or f"HTTP {status_code}"
    return Reply(
        Action.REJECT,
        status_code,
        detail,
        rejected=tuple(RejectedEvent(event=event, reason=detail) for event in events),
    )
