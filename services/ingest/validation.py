"""Turning a request body into validated events, naming the field of every problem (pure).

Every record is checked exactly as the bus contract (``PredictionEvent`` / ``OutcomeEvent``)
would check it, then against the system's registered feature schema. The common shape (what
the SDK sends: plain ids, ISO-8601 timestamps with an offset, numbers in range) is checked by
a few direct type tests (ids, timestamps and lengths by the rules ``shared.contracts`` declares)
and forwarded as the client's own JSON, which is ~10x cheaper than building a pydantic model per
event. Whatever that fast check is not sure about goes to the pydantic model itself, so the
fast path can only ever accept a subset of what the contract accepts
(``tests/ingest/test_validation.py`` checks that property on generated records).
"""

from __future__ import annotations

import gzip
import json
import math
import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Generic, Literal, NamedTuple, TypeVar

import orjson
from pydantic import ValidationError

from shared.contracts import (
    IDENTIFIER_PATTERN,
    MODEL_VERSION_MAX_LENGTH,
    TIMESTAMP_PATTERN,
    FeatureType,
    OutcomeEvent,
    PredictionEvent,
    SystemSnapshot,
    encode,
)

from .errors import BodyError
from .eventtime import EventTimeLimits
from .schemas import RecordError

__all__ = [
    "Accepted",
    "BodyError",
    "EventTimeLimits",
    "Kind",
    "PerSystem",
    "SchemaCheck",
    "SchemaChecks",
    "check_features",
    "decompress_body",
    "fast_event",
    "is_ndjson",
    "long_string",
    "parse_items",
    "validate_events",
]

Kind = Literal["predictions", "outcomes"]
T = TypeVar("T")

_TYPE_TAGS = {"bool", "int", "float", "str", "none", "dict[str,float]", "constrained-str"}

_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)
_TIMESTAMP = re.compile(TIMESTAMP_PATTERN)
_SIGNATURES = 4096  # feature signatures remembered per system (see SchemaCheck.passes)
_SCALARS = (bool, int, float, str)
_SCALARS_OR_NONE = (*_SCALARS, type(None))
_SCALAR_OR_NONE_TYPES = frozenset(_SCALARS_OR_NONE)
_PREDICTION_FIELDS = frozenset(PredictionEvent.model_fields)
_OUTCOME_FIELDS = frozenset(OutcomeEvent.model_fields)


class Accepted(NamedTuple):
    """A valid event, ready for the bus: its position in the request and its JSON value."""

    position: int
    system_id: str
    event_id: str
    value: bytes


_ALLOWED: dict[FeatureType, frozenset[type]] = {
    FeatureType.NUMERIC: frozenset({int, float}),
    FeatureType.CATEGORICAL: frozenset({str, int}),
    FeatureType.BOOLEAN: frozenset({bool}),
}


class SchemaCheck:
    """A system's feature schema compiled for the common case: every feature present, each
    of an allowed type. Anything else goes to :func:`check_features` for the exact reason.
    (JSON numbers are always finite, so the NaN/inf test is only needed there.)"""

    def __init__(self, system: SystemSnapshot) -> None:
        self.system = system
        self.names = frozenset(f.name for f in system.features)
        self.allowed = tuple(
            (f.name, _ALLOWED[f.type] | ({type(None)} if f.nullable else set()))
            for f in system.features
        )
        self._passed: set[tuple[Any, ...]] = set()

    def passes(self, features: dict[str, Any]) -> bool:
        # A batch's records nearly always share their key order and value types: remember
        # the (keys..., types...) signatures that passed, so a repeat costs one tuple lookup.
        signature = (*features, *map(type, features.values()))
        if signature in self._passed:
            return True
        if features.keys() != self.names:
            return False
        for name, allowed in self.allowed:
            if type(features[name]) not in allowed:
                return False
        if len(self._passed) < _SIGNATURES:
            self._passed.add(signature)
        return True


class PerSystem(Generic[T]):
    """Something compiled from a system's snapshot, once per system, rebuilt when the
    registry view holds a new snapshot of it."""

    def __init__(self, build: Callable[[SystemSnapshot], T]) -> None:
        self._build = build
        self._built: dict[str, tuple[SystemSnapshot, T]] = {}

    def __call__(self, system: SystemSnapshot) -> T:
        built = self._built.get(system.system_id)
        if built is None or built[0] is not system:
            built = self._built[system.system_id] = (system, self._build(system))
        return built[1]


class SchemaChecks(PerSystem[SchemaCheck]):
    """Compiled schema checks per system."""

    def __init__(self) -> None:
        super().__init__(SchemaCheck)


_TOO_DEEP = "body: nested too deeply (JSON deeper than 1024 levels)"


def _loads(data: bytes) -> tuple[Any, bool]:
    """orjson, or (for NaN, Infinity, 1e999: not JSON, but what many encoders write) the
    standard library, so the record and field at fault can be named; True when finite."""
    try:
        return orjson.loads(data), True
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):
            raise BodyError(400, _TOO_DEEP) from None
        try:
            return json.loads(data), False
        except RecursionError:
            raise BodyError(400, _TOO_DEEP) from None
        except ValueError:
            raise exc from None


def _non_finite(value: Any) -> str | None:
    """The dotted path of the first NaN or infinity in ``value``, if any (depth-first, without
    recursion: the standard library parses deeper than Python's stack would walk)."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if type(item) is float:
            if not math.isfinite(item):
                return path
        elif type(item) is dict or type(item) is list:
            pairs = item.items() if type(item) is dict else enumerate(item)
            children = [(child, f"{path}.{key}" if path else str(key)) for key, child in pairs]
            stack.extend(reversed(children))
    return None


def decompress_body(body: bytes, *, content_encoding: str, max_bytes: int) -> bytes:
    """The body as sent, gunzipped when ``Content-Encoding: gzip`` (within ``max_bytes``)."""
    if content_encoding.strip().lower() == "gzip":
        try:
            decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
            body = decompressor.decompress(body, max_bytes + 1)
        except (zlib.error, gzip.BadGzipFile) as exc:
            raise BodyError(400, f"body: invalid gzip data ({exc})") from exc
        if len(body) > max_bytes:
            raise BodyError(413, f"body: decompressed size exceeds the limit of {max_bytes} bytes")
        # one complete gzip stream and nothing after it: anything else would be read in part
        if not decompressor.eof:
            raise BodyError(400, "body: invalid gzip data (truncated stream)")
        if decompressor.unused_data[:2] == b"\x1f\x8b":
            raise BodyError(400, "body: invalid gzip data (a second gzip member; send one)")
        if decompressor.unused_data:
            raise BodyError(400, "body: invalid gzip data (trailing data after the stream)")
    elif content_encoding.strip() not in ("", "identity"):
        raise BodyError(415, f"Content-Encoding {content_encoding!r} is not supported (use gzip)")
    if not body.strip():
        raise BodyError(400, "body: empty; send a JSON object, a JSON array or NDJSON")
    return body


def is_ndjson(content_type: str) -> bool:
    return "ndjson" in content_type or "jsonlines" in content_type


def parse_items(body: bytes, *, content_type: str) -> tuple[list[Any], bool]:
    """JSON object, JSON array or NDJSON (already decompressed) into raw items.

    The flag is False when some number was NaN or infinite (``validate_events`` then names
    the field of each)."""
    if is_ndjson(content_type):
        items: list[Any] = []
        finite = True
        for number, line in enumerate(body.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item, line_finite = _loads(line)
            except orjson.JSONDecodeError as exc:
                raise BodyError(400, f"body: line {number} is not valid JSON ({exc})") from exc
            items.append(item)
            finite = finite and line_finite
        return items, finite
    try:
        parsed, finite = _loads(body)
    except orjson.JSONDecodeError as exc:
        raise BodyError(400, f"body: not valid JSON ({exc})") from exc
    if isinstance(parsed, list):
        return parsed, finite
    return [parsed], finite


def _field(loc: Sequence[int | str]) -> str:
    parts = [str(p) for p in loc if str(p) not in _TYPE_TAGS and not str(p).startswith("function")]
    return ".".join(parts) or "(record)"


def _identifier(value: object) -> bool:
    return type(value) is str and _IDENTIFIER.fullmatch(value) is not None


def _timestamp(value: object) -> bool:
    if type(value) is not str or _TIMESTAMP.fullmatch(value) is None:
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _scalar_map(value: object) -> bool:
    return type(value) is dict and _SCALAR_OR_NONE_TYPES.issuperset(map(type, value.values()))


def _probabilities(value: object) -> bool:
    if type(value) is not dict:
        return False
    for p in value.values():
        if (type(p) is not float and type(p) is not int) or not 0.0 <= p <= 1.0:
            return False
    return True


def _number(value: object) -> bool:
    return type(value) is float or type(value) is int


def fast_event(kind: Kind, item: dict[str, Any]) -> bool:
    """True when ``item`` certainly satisfies the contract as it is (no coercion needed).

    For predictions, ``features`` is only checked to be an object here: its values are
    checked against the system's schema (which admits only scalars and null) afterwards.
    """
    if kind == "predictions":
        if not _PREDICTION_FIELDS.issuperset(item):
            return False
        model_version = item.get("model_version")
        scores = item.get("scores")
        latency = item.get("latency_ms")
        return (
            _identifier(item.get("event_id"))
            and _identifier(item.get("system_id"))
            and type(model_version) is str
            and 1 <= len(model_version) <= MODEL_VERSION_MAX_LENGTH
            and _timestamp(item.get("timestamp"))
            and type(item.get("features")) is dict
            and type(item.get("prediction")) in _SCALARS
            and ("attributes" not in item or _scalar_map(item["attributes"]))
            and (scores is None or _probabilities(scores))
            and (latency is None or (_number(latency) and latency >= 0))
            and item.get("schema_version", 1) == 1
            and type(item.get("schema_version", 1)) is int
        )
    if not _OUTCOME_FIELDS.issuperset(item):
        return False
    return (
        _identifier(item.get("event_id"))
        and _identifier(item.get("system_id"))
        and _identifier(item.get("prediction_id"))
        and _timestamp(item.get("timestamp"))
        and type(item.get("actual")) in _SCALARS
        and item.get("schema_version", 1) == 1
        and type(item.get("schema_version", 1)) is int
    )


def long_string(item: dict[str, Any], limit: int) -> tuple[str, str] | None:
    """The first string of ``item`` longer than ``limit`` characters among those whose
    length only the client bounds: feature, attribute and score names and values, the
    prediction and the actual, as (field, reason). A long name is not echoed back."""
    reason = f"longer than {limit} characters (max_string_chars)"
    for name in ("features", "attributes", "scores"):
        mapping = item.get(name)
        if type(mapping) is not dict:
            continue
        for key, value in mapping.items():
            if len(key) > limit:
                return name, f"a name is {reason}"
            if type(value) is str and len(value) > limit:
                return f"{name}.{key}", reason
    for name in ("prediction", "actual"):
        value = item.get(name)
        if type(value) is str and len(value) > limit:
            return name, reason
    return None


def check_features(features: Mapping[str, Any], system: SystemSnapshot) -> tuple[str, str] | None:
    """The first way the features break the system's schema, as (field, reason)."""
    specs = {f.name: f for f in system.features}
    for name in features:
        if name not in specs:
            return f"features.{name}", "unknown feature (not in the registered schema)"
    for name, spec in specs.items():
        if name not in features:
            if spec.nullable:
                continue
            return f"features.{name}", "required feature missing"
        value = features[name]
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
    authorized: Callable[[SystemSnapshot], str | None] | None = None,
    checks: SchemaChecks | None = None,
    finite: bool = True,
    times: EventTimeLimits | None = None,
    max_string_chars: int | None = None,
) -> tuple[list[Accepted], list[RecordError]]:
    """Validate every item; returns the good events (as bus values) and one error per bad one.

    ``authorized(system)`` returns why the request's credentials may not write events of
    that system (None when they may); None means open mode (no credentials checked).
    ``finite=False`` (from ``parse_items``): look for NaN/infinity in every record first.
    ``times``: refuse event times outside its window; ``max_string_chars``: refuse longer
    feature, attribute, score, prediction and actual strings (None: no limit).
    """
    model: type[PredictionEvent] | type[OutcomeEvent] = (
        PredictionEvent if kind == "predictions" else OutcomeEvent
    )
    compiled = checks or SchemaChecks()
    good: list[Accepted] = []
    errors: list[RecordError] = []
    for index, item in enumerate(items):
        if type(item) is not dict:
            errors.append(RecordError(index=index, field="(record)", reason="not a JSON object"))
            continue
        if not finite:
            where = _non_finite(item)
            if where is not None:
                errors.append(
                    RecordError(index=index, field=where, reason="NaN and infinity are not allowed")
                )
                continue
        if max_string_chars is not None:
            long = long_string(item, max_string_chars)
            if long is not None:
                errors.append(RecordError(index=index, field=long[0], reason=long[1]))
                continue
        event: PredictionEvent | OutcomeEvent | None = None
        if fast_event(kind, item):
            system_id: str = item["system_id"]
            event_id: str = item["event_id"]
            features: dict[str, Any] | None = item.get("features")
            when = item["timestamp"]
        else:
            try:
                event = model.model_validate(item)
            except ValidationError as exc:
                first = exc.errors(include_url=False)[0]
                errors.append(
                    RecordError(index=index, field=_field(first["loc"]), reason=first["msg"])
                )
                continue
            system_id, event_id = event.system_id, event.event_id
            features = event.features if isinstance(event, PredictionEvent) else None
            when = event.timestamp
        system = lookup(system_id)
        if system is None:
            errors.append(RecordError(index=index, field="system_id", reason="unknown AI system"))
            continue
        if authorized is not None:
            refusal = authorized(system)
            if refusal is not None:
                errors.append(RecordError(index=index, field="system_id", reason=refusal))
                continue
        if system.status != "active":
            errors.append(RecordError(index=index, field="system_id", reason="system is retired"))
            continue
        if times is not None:
            moment = datetime.fromisoformat(when) if type(when) is str else when
            late = times.problem(moment.timestamp(), system)
            if late is not None:
                errors.append(RecordError(index=index, field="timestamp", reason=late))
                continue
        if features is not None and not compiled(system).passes(features):
            problem = check_features(features, system)
            if problem is not None:
                errors.append(RecordError(index=index, field=problem[0], reason=problem[1]))
                continue
        if event is None:
            item["schema_version"] = 1
            value = orjson.dumps(item)
        else:
            value = encode(event)
        good.append(Accepted(index, system_id, event_id, value))
    return good, errors
