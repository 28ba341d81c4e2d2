"""Turning a request body into validated events, naming the field of every problem (pure)."""

from __future__ import annotations

import gzip
import math
import zlib
from collections.abc import Callable, Sequence
from typing import Any, Literal

import orjson
from pydantic import ValidationError

from shared.contracts import (
    FeatureType,
    OutcomeEvent,
    PredictionEvent,
    SystemSnapshot,
)

from .schemas import RecordError

__all__ = ["BodyError", "Kind", "check_features", "parse_body", "validate_events"]

Kind = Literal["predictions", "outcomes"]

_TYPE_TAGS = {"bool", "int", "float", "str", "none", "dict[str,float]", "constrained-str"}


class BodyError(Exception):
    """The body as a whole is unusable; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def parse_body(
    body: bytes, *, content_type: str, content_encoding: str, max_bytes: int
) -> list[Any]:
    """JSON object, JSON array or NDJSON, optionally gzip-compressed, into raw items."""
    if content_encoding.strip().lower() == "gzip":
        try:
            decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
            body = decompressor.decompress(body, max_bytes + 1)
        except (zlib.error, gzip.BadGzipFile) as exc:
            raise BodyError(400, f"body: invalid gzip data ({exc})") from exc
        if len(body) > max_bytes:
            raise BodyError(413, f"body: decompressed size exceeds the limit of {max_bytes} bytes")
    elif content_encoding.strip() not in ("", "identity"):
        raise BodyError(415, f"Content-Encoding {content_encoding!r} is not supported (use gzip)")
    if not body.strip():
        raise BodyError(400, "body: empty; send a JSON object, a JSON array or NDJSON")
    if "ndjson" in content_type or "jsonlines" in content_type:
        items: list[Any] = []
        for number, line in enumerate(body.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                items.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise BodyError(400, f"body: line {number} is not valid JSON ({exc})") from exc
        return items
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BodyError(400, f"body: not valid JSON ({exc})") from exc
    if isinstance(parsed, list):
        return parsed
    return [parsed]


def _field(loc: Sequence[int | str]) -> str:
    parts = [str(p) for p in loc if str(p) not in _TYPE_TAGS and not str(p).startswith("function")]
    return ".".join(parts) or "(record)"


def check_features(event: PredictionEvent, system: SystemSnapshot) -> tuple[str, str] | None:
    """The first way the event's features break the system's schema, as (field, reason)."""
    specs = {f.name: f for f in system.features}
    for name in event.features:
        if name not in specs:
            return f"features.{name}", "unknown feature (not in the registered schema)"
    for name, spec in specs.items():
        if name not in event.features:
            if spec.nullable:
                continue
            return f"features.{name}", "required feature missing"
        value = event.features[name]
        if value is None:
            if not spec.nullable:
                return f"features.{name}", "null is not allowed (feature is not nullable)"
            continue
        if spec.type is FeatureType.NUMERIC:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return f"features.{name}", f"expected a number, got {type(value).__name__}"
            if isinstance(value, float) and not math.isfinite(value):
                return f"features.{name}", "NaN and infinity are not allowed"
        elif spec.type is FeatureType.BOOLEAN:
            if not isinstance(value, bool):
                return f"features.{name}", f"expected a boolean, got {type(value).__name__}"
        elif not isinstance(value, str | int) or isinstance(value, bool):
            return f"features.{name}", f"expected a category string, got {type(value).__name__}"
    return None


def validate_events(
    kind: Kind,
    items: Sequence[Any],
    *,
    lookup: Callable[[str], SystemSnapshot | None],
    system_scope: str | None = None,
) -> tuple[list[PredictionEvent | OutcomeEvent], list[int], list[RecordError]]:
    """Validate every item; returns the good events, their indexes, and one error per bad one."""
    model: type[PredictionEvent] | type[OutcomeEvent] = (
        PredictionEvent if kind == "predictions" else OutcomeEvent
    )
    good: list[PredictionEvent | OutcomeEvent] = []
    indexes: list[int] = []
    errors: list[RecordError] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            errors.append(RecordError(index=index, field="(record)", reason="not a JSON object"))
            continue
        try:
            event = model.model_validate(item)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            errors.append(RecordError(index=index, field=_field(first["loc"]), reason=first["msg"]))
            continue
        if system_scope is not None and event.system_id != system_scope:
            errors.append(
                RecordError(
                    index=index, field="system_id", reason="the API key is not for this system"
                )
            )
            continue
        system = lookup(event.system_id)
        if system is None:
            errors.append(RecordError(index=index, field="system_id", reason="unknown AI system"))
            continue
        if system.status != "active":
            errors.append(RecordError(index=index, field="system_id", reason="system is retired"))
            continue
        if isinstance(event, PredictionEvent):
            problem = check_features(event, system)
            if problem is not None:
                errors.append(RecordError(index=index, field=problem[0], reason=problem[1]))
                continue
        good.append(event)
        indexes.append(index)
    return good, indexes, errors
