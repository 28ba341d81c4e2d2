"""The one-pass decoder accepts a body only when the exact validator accepts every record of
it, and forwards the same events: checked on generated bodies against the contract."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ingest.eventtime import EventTimeLimits
from services.ingest.fastdecode import FastDecoder, FastDecoders, system_hint
from services.ingest.validation import Kind, validate_events
from shared.contracts import OutcomeEvent, PredictionEvent, decode
from tests.ingest.test_validation import SYSTEM, prediction_base, records

DECODER = FastDecoder(SYSTEM)


def _agrees(kind: Kind, items: list[dict[str, Any]], ndjson: bool) -> None:
    model = PredictionEvent if kind == "predictions" else OutcomeEvent
    if ndjson:
        body = b"\n".join(orjson.dumps(item) for item in items)
    else:
        body = orjson.dumps(items if len(items) != 1 else items[0])
    events = DECODER.decode(kind, body, ndjson=ndjson)
    if events is None:
        return
    good, errors = validate_events(
        kind, orjson.loads(orjson.dumps(items)), lookup={"s-1": SYSTEM}.get
    )
    assert not errors, f"fast decoder accepted what the validator refuses: {items!r} {errors!r}"
    assert len(events) == len(good) == len(items)
    for event, exact in zip(events, good, strict=True):
        assert event.event_id == exact.event_id
        assert decode(model, DECODER.encode(event)) == decode(model, exact.value)


@settings(max_examples=600, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records("predictions"), min_size=1, max_size=3), st.booleans())
def test_never_accepts_a_prediction_body_the_validator_refuses(
    items: list[dict[str, Any]], ndjson: bool
) -> None:
    _agrees("predictions", items, ndjson)


@settings(max_examples=300, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records("outcomes"), min_size=1, max_size=3), st.booleans())
def test_never_accepts_an_outcome_body_the_validator_refuses(
    items: list[dict[str, Any]], ndjson: bool
) -> None:
    _agrees("outcomes", items, ndjson)


def test_the_common_shapes_take_the_one_pass_path() -> None:
    base = prediction_base()
    with_extras = {**base, "scores": {"0": 0.25, "1": 1}, "attributes": {"g": "f"}}
    with_extras["latency_ms"] = 3
    missing_nullable = {**base, "features": {"a": 2, "b": 7}}
    for body, ndjson in [
        (orjson.dumps(base), False),
        (orjson.dumps([base, with_extras, missing_nullable]), False),
        (orjson.dumps(base) + b"\n\n" + orjson.dumps(with_extras) + b"\n", True),
    ]:
        events = DECODER.decode("predictions", body, ndjson=ndjson)
        assert events is not None, body
    outcome = {"event_id": "o", "system_id": "s-1", "prediction_id": "e-1", "actual": 1}
    outcome["timestamp"] = "2026-01-01T00:00:00Z"
    assert DECODER.decode("outcomes", orjson.dumps([outcome]), ndjson=False) is not None


def test_the_bus_value_keeps_the_version_and_leaves_absent_optionals_out() -> None:
    events = DECODER.decode("predictions", orjson.dumps(prediction_base()), ndjson=False)
    assert events is not None
    value = orjson.loads(DECODER.encode(events[0]))
    assert value["schema_version"] == 1
    assert value["features"] == {"a": 1.5, "b": "x", "c": None, "d": True}
    assert not {"scores", "attributes", "latency_ms"} & set(value)


def test_anything_doubtful_goes_to_the_exact_validator() -> None:
    base = prediction_base()
    doubtful = [
        orjson.dumps([base, {**base, "system_id": "other"}]),  # another system's event
        orjson.dumps({**base, "features": {**base["features"], "z": 1}}),  # unknown feature
        orjson.dumps({**base, "features": {"b": "x"}}),  # required feature missing
        orjson.dumps({**base, "timestamp": "2026-02-30T00:00:00Z"}),  # no such day
        orjson.dumps({**base, "timestamp": "2026-01-01T00:00:00"}),  # naive
        orjson.dumps(base).replace(b"1.5", b"1180591620717411303424"),  # over 64 bits
        orjson.dumps(base).replace(b"1.5", b"NaN"),
        orjson.dumps(base).replace(b"1.5", b"1e999"),
        b"[]",
        b"[1]",
    ]
    for body in doubtful:
        assert DECODER.decode("predictions", body, ndjson=False) is None, body


def test_decoders_follow_the_systems_snapshot() -> None:
    decoders = FastDecoders()
    first = decoders(SYSTEM)
    assert decoders(SYSTEM) is first
    assert decoders(SYSTEM.model_copy(update={"name": "renamed"})) is not first
    assert system_hint(b' [{"event_id": "e", "system_id" : "s-1"}]') == "s-1"
    assert system_hint(b'{"system_id": 3}') is None


# Event-time and string limits: on records otherwise valid, the one-pass decoder must accept
# exactly what the exact validator accepts (so it neither lets a refused event through nor
# sends every realtime batch to the slow path).
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC).timestamp()
TIMES = EventTimeLimits(NOW, max_future_skew_s=3600, backfill_allowance_s=86_400)
EARLIEST, LATEST = TIMES.window(SYSTEM)
LIMITED = FastDecoder(SYSTEM, max_string_chars=6)

NEAR_EDGES = st.one_of(
    st.floats(EARLIEST - 3 * 86_400, EARLIEST + 3 * 86_400),
    st.floats(LATEST - 3 * 86_400, LATEST + 3 * 86_400),
    st.sampled_from([EARLIEST, LATEST, EARLIEST - 1e-6, LATEST + 1e-6]),
)
OFFSETS = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    moment = datetime.fromtimestamp(draw(NEAR_EDGES), draw(OFFSETS))
    text = moment.isoformat(timespec=draw(st.sampled_from(["seconds", "microseconds"])))
    return text.replace("+00:00", "Z") if draw(st.booleans()) else text


@st.composite
def limited_records(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    text = st.text(max_size=8)
    if kind == "predictions":
        item = prediction_base()
        item["features"]["b"] = draw(text)
        item["attributes"] = draw(
            st.dictionaries(text, text | st.integers(-1000, 1000), max_size=2)
        )
        item["scores"] = draw(st.none() | st.dictionaries(text, st.just(0.5), max_size=2))
        item["prediction"] = draw(text | st.integers(0, 1))
    else:
        item = {"event_id": "o-1", "system_id": "s-1", "prediction_id": "e-1"}
        item["actual"] = draw(text | st.integers(0, 1))
    item["timestamp"] = draw(timestamps())
    return item


def _agrees_exactly(kind: Kind, items: list[dict[str, Any]]) -> None:
    body = orjson.dumps(items)
    events = LIMITED.decode(kind, body, ndjson=False, times=TIMES)
    _good, errors = validate_events(
        kind, orjson.loads(body), lookup={"s-1": SYSTEM}.get, times=TIMES, max_string_chars=6
    )
    assert (events is not None) == (not errors), (items, errors)
    for error in errors:
        assert (
            "(max_future_skew_s)" in error.reason
            or "backfill_allowance_s" in error.reason
            or ("(max_string_chars)" in error.reason)
        ), error


@settings(max_examples=600, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(limited_records("predictions"), min_size=1, max_size=3))
def test_one_pass_takes_exactly_the_predictions_inside_the_limits(
    items: list[dict[str, Any]],
) -> None:
    _agrees_exactly("predictions", items)


@settings(max_examples=300, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(limited_records("outcomes"), min_size=1, max_size=3))
def test_one_pass_takes_exactly_the_outcomes_inside_the_limits(
    items: list[dict[str, Any]],
) -> None:
    _agrees_exactly("outcomes", items)
