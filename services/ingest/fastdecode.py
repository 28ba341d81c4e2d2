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
``YYYY-MM-DD[T ]HH:MM:SS[.ffffff](Z|+HH:MM)`` (what pydantic reads alike and the evaluator's
columnar reader takes as is).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal

import msgspec

from shared.contracts import FeatureType, SystemSnapshot

from .validation import PerSystem

__all__ = ["FastDecoder", "FastDecoders", "system_hint"]

_ID = Annotated[
    str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*\Z")
]
_TIMESTAMP = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])[T ]"
        r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?"
        r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])\Z"
    ),
]
_INT = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
_SCALAR = str | _INT | float | bool
_PROBABILITY = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
_LATENCY = Annotated[float, msgspec.Meta(ge=0.0)]
_VERSION = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
_FEATURE_TYPES: dict[FeatureType, Any] = {
    FeatureType.NUMERIC: _INT | float,
    FeatureType.CATEGORICAL: str | _INT,
    FeatureType.BOOLEAN: bool,
}
_HINT = re.compile(rb'"system_id"\s*:\s*"([A-Za-z0-9][A-Za-z0-9._:\-]{0,127})"')


def _version() -> int:
    return 1


def system_hint(body: bytes) -> str | None:
    """The first ``system_id`` written in the body: which system's decoder to try first
    when the credentials do not say (open mode)."""
    found = _HINT.search(body, 0, 4096)
    return found.group(1).decode() if found is not None else None


class FastDecoder:
    """Decoders of prediction and outcome bodies of one system; encodes accepted events."""

    def __init__(self, system: SystemSnapshot) -> None:
        self.system = system
        system_id: Any = Literal[system.system_id]
        features = msgspec.defstruct(
            "Features",
            [
                (f"f{i}", _FEATURE_TYPES[f.type] | None, None)
                if f.nullable
                else (f"f{i}", _FEATURE_TYPES[f.type])
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
                ("prediction", _SCALAR),
                ("scores", dict[str, _PROBABILITY] | None, None),
                ("attributes", dict[str, _SCALAR | None], msgspec.field(default_factory=dict)),
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
                ("actual", _SCALAR),
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

    def decode(self, kind: str, body: bytes, *, ndjson: bool) -> list[Any] | None:
        """Every event of the body, or None when any record needs the exact validator."""
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
        return events

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

    def __init__(self) -> None:
        super().__init__(FastDecoder)
