"""A whole request body decoded and validated in one C call, for one known AI system (pure).

The common request (what the SDK sends: a batch of well-formed events of one system) is
decoded by msgspec straight into structs typed after the contract *and* the system's
registered feature schema, so parsing, the contract check and the schema check happen in one
pass without a Python call per event. Anything that pass refuses (one bad record, another
system's event, a value the types below are stricter about than the contract, NaN ...) makes
the caller fall back to :func:`services.ingest.validation.validate_events`, which names the
field and the reason of each problem. So this path only ever accepts bodies every record of
which the contract and the schema accept, with the same values
(``tests/ingest/test_fastdecode.py`` checks that on generated records).

Stricter than the contract on purpose: integers must fit in 64 bits and timestamps must be
``YYYY-MM-DD[T ]HH:MM:SS[.ffffff](Z|+HH:MM)`` (``shared.contracts.TIMESTAMP_PATTERN``, what
pydantic reads alike and the evaluator's columnar reader takes as is). Ids, model versions and
timestamps follow the rules ``shared.contracts`` declares.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

import msgspec

from shared.contracts import (
    IDENTIFIER_PATTERN,
    MODEL_VERSION_MAX_LENGTH,
    TIMESTAMP_PATTERN,
    FeatureType,
    SystemSnapshot,
)

from .eventtime import EventTimeLimits
from .validation import PerSystem

__all__ = ["FastDecoder", "FastDecoders", "system_hint"]

# msgspec searches with Python's re: anchored at both ends (\Z: no newline after the end)
_ID = Annotated[str, msgspec.Meta(pattern=rf"^{IDENTIFIER_PATTERN}\Z")]
_TIMESTAMP = Annotated[str, msgspec.Meta(pattern=rf"^{TIMESTAMP_PATTERN}\Z")]
_INT = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
_PROBABILITY = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
_LATENCY = Annotated[float, msgspec.Meta(ge=0.0)]
_VERSION = Annotated[str, msgspec.Meta(min_length=1, max_length=MODEL_VERSION_MAX_LENGTH)]
_DAY_S = 86_400.0
_HINT = re.compile(rb'"system_id"\s*:\s*"(' + IDENTIFIER_PATTERN.encode() + rb')"')


def _version() -> int:
    return 1


def system_hint(body: bytes) -> str | None:
    """The first ``system_id`` written in the body: which system's decoder to try first
    when the credentials do not say (open mode)."""
    found = _HINT.search(body, 0, 4096)
    return found.group(1).decode() if found is not None else None


class FastDecoder:
    """Decoders of prediction and outcome bodies of one system; encodes accepted events.

    ``max_string_chars`` bounds feature, attribute and score names and values, the prediction
    and the actual, as ``validation.long_string`` does (None: no bound)."""

    def __init__(self, system: SystemSnapshot, max_string_chars: int | None = None) -> None:
        self.system = system
        system_id: Any = Literal[system.system_id]
        text: Any = Annotated[str, msgspec.Meta(max_length=max_string_chars)]
        scalar: Any = text | _INT | float | bool
        feature_types: dict[FeatureType, Any] = {
            FeatureType.NUMERIC: _INT | float,
            FeatureType.CATEGORICAL: text | _INT,
            FeatureType.BOOLEAN: bool,
        }
        features = msgspec.defstruct(
            "Features",
            [
                (f"f{i}", feature_types[f.type] | None, None)
                if f.nullable
                else (f"f{i}", feature_types[f.type])
                for i, f in enumerate(system.features)
            ],
            rename={f"f{i}": f.name for i, f in enumerate(system.features)},
            forbid_unknown_fields=True,
        )
        # schema_version comes from a factory so omit_defaults keeps writing it; the other
        # defaults (no scores, attributes or latency) are left out of the bus value, as absent
        prediction = msgspec.defstruct(
            "Prediction",
            [
                ("event_id", _ID),
                ("system_id", system_id),
                ("model_version", _VERSION),
                ("timestamp", _TIMESTAMP),
                ("features", features),
                ("prediction", scalar),
                ("scores", dict[text, _PROBABILITY] | None, None),
                ("attributes", dict[text, scalar | None], msgspec.field(default_factory=dict)),
                ("latency_ms", _LATENCY | None, None),
                ("schema_version", Literal[1], msgspec.field(default_factory=_version)),
            ],
            forbid_unknown_fields=True,
            omit_defaults=True,
        )
        outcome = msgspec.defstruct(
            "Outcome",
            [
                ("event_id", _ID),
                ("system_id", system_id),
                ("prediction_id", _ID),
                ("timestamp", _TIMESTAMP),
                ("actual", scalar),
                ("schema_version", Literal[1], msgspec.field(default_factory=_version)),
            ],
            forbid_unknown_fields=True,
            omit_defaults=True,
        )
        self._decoders = {
            "predictions": (
                msgspec.json.Decoder(list[prediction]),  # type: ignore[valid-type]
                msgspec.json.Decoder(prediction),
            ),
            "outcomes": (
                msgspec.json.Decoder(list[outcome]),  # type: ignore[valid-type]
                msgspec.json.Decoder(outcome),
            ),
        }
        self._encoder = msgspec.json.Encoder()
        self._dates: set[str] = set()

    def decode(
        self, kind: str, body: bytes, *, ndjson: bool, times: EventTimeLimits | None = None
    ) -> list[Any] | None:
        """Every event of the body, or None when any record needs the exact validator
        (``times``: also when an event time is outside its window)."""
        many, one = self._decoders[kind]
        try:
            if ndjson:
                events = [one.decode(line) for line in body.splitlines() if line.strip()]
            else:
                stripped = body.lstrip()
                events = many.decode(body) if stripped[:1] == b"[" else [one.decode(body)]
        except (msgspec.ValidationError, msgspec.DecodeError):
            return None
        if not events or not self._dates_valid(events):
            return None
        if times is not None and not self._times_valid(events, times):
            return None
        return events

    def _times_valid(self, events: list[Any], times: EventTimeLimits) -> bool:
        """Every event time inside the window. A day whose every instant (offsets up to
        +-23:59) is inside is decided once; only events of the days at the window's edges
        are parsed one by one."""
        earliest, latest = times.window(self.system)
        inside: dict[str, bool] = {}
        for event in events:
            timestamp: str = event.timestamp
            day = timestamp[:10]
            whole = inside.get(day)
            if whole is None:
                start = datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp()
                if start + 2 * _DAY_S < earliest or start - _DAY_S > latest:
                    return False
                whole = inside[day] = start - _DAY_S >= earliest and start + 2 * _DAY_S <= latest
            if (
                not whole
                and not earliest <= datetime.fromisoformat(timestamp).timestamp() <= latest
            ):
                return False
        return True

    def _dates_valid(self, events: list[Any]) -> bool:
        """The pattern bounds every part of a timestamp but the day of the month (and year
        0): check each distinct date once."""
        dates = self._dates
        for event in events:
            day = event.timestamp[:10]
            if day not in dates:
                try:
                    date.fromisoformat(day)
                except ValueError:
                    return False
                if len(dates) > 10_000:
                    dates.clear()
                dates.add(day)
        return True

    def encode(self, event: Any) -> bytes:
        return self._encoder.encode(event)


class FastDecoders(PerSystem[FastDecoder]):
    """One decoder per system."""

    def __init__(self, max_string_chars: int | None = None) -> None:
        super().__init__(lambda system: FastDecoder(system, max_string_chars))
