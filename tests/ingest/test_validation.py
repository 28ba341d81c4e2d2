"""The fast validation path accepts only what the bus contract accepts, and forwards the same
event: checked on generated records against the pydantic models themselves."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.ingest.validation import fast_event, validate_events
from shared.contracts import (
    FeatureSpec,
    FeatureType,
    OutcomeEvent,
    PredictionEvent,
    decode,
)
from tests.factories import make_snapshot

SYSTEM = make_snapshot(
    "s-1",
    features=[
        FeatureSpec(name="a", type=FeatureType.NUMERIC),
        FeatureSpec(name="b", type=FeatureType.CATEGORICAL),
        FeatureSpec(name="c", type=FeatureType.NUMERIC, nullable=True),
        FeatureSpec(name="d", type=FeatureType.BOOLEAN, nullable=True),
    ],
)

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=5,
)
IDS = st.one_of(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,140}", fullmatch=True),
    st.sampled_from(["", " a", "a b", "é", "a\n", "-a", "x" * 128, "x" * 129]),
    JSON,
)
TIMESTAMPS = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),
    st.sampled_from(
        [
            "2026-01-01T00:00:00Z",
            "2026-01-01 00:00:00+01:00",
            "2026-02-30T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:00+24:00",
            "2026-01-01T00:00:00+00:60",
            "2026-01-01T00:00:00-05:75",
            "2026-01-01T00:00:00.1234567Z",
            "20260101T000000Z",
            "2026-01-01T00:00Z",
            "٢٠٢٦-01-01T00:00:00Z",
            "1700000000",
        ]
    ),
    JSON,
)
PROBABILITIES = st.one_of(st.floats(min_value=-0.5, max_value=1.5), st.integers(-1, 2), JSON)


def prediction_base() -> dict[str, Any]:
    return {
        "event_id": "e-1",
        "system_id": "s-1",
        "model_version": "v1",
        "timestamp": "2026-01-01T00:00:00+00:00",
        "features": {"a": 1.5, "b": "x", "c": None, "d": True},
        "prediction": 1,
    }


FIELDS = {
    "event_id": IDS,
    "system_id": IDS,
    "prediction_id": IDS,
    "model_version": st.one_of(st.text(max_size=130), JSON),
    "timestamp": TIMESTAMPS,
    "features": st.one_of(
        st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e"]), JSON, max_size=5), JSON
    ),
    "attributes": st.one_of(st.dictionaries(st.text(max_size=4), JSON_SCALARS, max_size=3), JSON),
    "prediction": JSON,
    "actual": JSON,
    "scores": st.one_of(
        st.none(), st.dictionaries(st.text(max_size=3), PROBABILITIES, max_size=3), JSON
    ),
    "latency_ms": st.one_of(st.floats(-1, 1e6, allow_nan=False), st.integers(-5, 5), JSON),
    "schema_version": st.one_of(st.just(1), st.just(True), st.just(1.0), st.just(2), JSON),
    "surprise": JSON,
}


@st.composite
def records(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    if kind == "predictions":
        item = prediction_base()
        names = ["event_id", "system_id", "model_version", "timestamp", "features", "attributes"]
        names += ["prediction", "scores", "latency_ms", "schema_version", "surprise"]
    else:
        item = {"event_id": "o-1", "system_id": "s-1", "prediction_id": "e-1"}
        item |= {"timestamp": "2026-01-01T00:00:00Z", "actual": 0}
        names = ["event_id", "system_id", "prediction_id", "timestamp", "actual"]
        names += ["schema_version", "surprise"]
    for name in draw(st.lists(st.sampled_from(names), max_size=3, unique=True)):
        if draw(st.booleans()) and name in item:
            del item[name]
        else:
            item[name] = draw(FIELDS[name])
    return item


def _agrees(kind: str, item: dict[str, Any]) -> None:
    """Whatever ingest accepts, the contract accepts, and the bytes ingest forwards decode
    to exactly the event the contract builds from the client's record."""
    model = PredictionEvent if kind == "predictions" else OutcomeEvent
    original = orjson.loads(orjson.dumps(item))
    good, errors = validate_events(kind, [item], lookup=lambda _id: SYSTEM)  # type: ignore[arg-type]
    if not good:
        assert len(errors) == 1
        return
    try:
        expected = model.model_validate(original)
    except ValidationError as exc:  # pragma: no cover - a failure is the bug this test hunts
        raise AssertionError(f"ingest accepted what the contract refuses: {original!r}") from exc
    assert decode(model, good[0].value) == expected


@settings(max_examples=600, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(records("predictions"))
def test_fast_path_never_accepts_a_prediction_the_contract_refuses(item: dict[str, Any]) -> None:
    _agrees("predictions", item)


@settings(max_examples=300, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(records("outcomes"))
def test_fast_path_never_accepts_an_outcome_the_contract_refuses(item: dict[str, Any]) -> None:
    _agrees("outcomes", item)


def test_the_common_shape_takes_the_fast_path() -> None:
    assert fast_event("predictions", prediction_base())
    assert fast_event("predictions", {**prediction_base(), "scores": {"0": 0.25, "1": 1}})
    assert not fast_event("predictions", {**prediction_base(), "scores": {"0": "0.5"}})
    assert not fast_event("predictions", {**prediction_base(), "timestamp": "2026-01-01T00:00:00"})


def test_an_offset_of_sixty_minutes_or_more_is_refused_as_the_contract_refuses_it() -> None:
    """Python's ``fromisoformat`` reads +00:60 as +01:00; pydantic refuses it, so must ingest."""
    for stamp in ("2026-01-01T00:00:00+00:60", "2026-01-01 00:00:00-05:75"):
        item = {**prediction_base(), "timestamp": stamp}
        assert not fast_event("predictions", item)
        good, errors = validate_events("predictions", [item], lookup=lambda _id: SYSTEM)
        assert not good
        assert [e.field for e in errors] == ["timestamp"]
