"""NDJSON framing of several events per Kafka record (shared/bus/framing.py)."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.bus.framing import MAX_BYTES, frame, unframe

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
_objects = st.dictionaries(st.text(), _json, max_size=6)


@given(st.lists(_objects, max_size=40), st.integers(1, 7), st.integers(1, 400))
@settings(max_examples=200, deadline=None)
def test_frames_hold_every_value_once_in_order_within_the_limits(
    objects: list[dict[str, object]], max_events: int, max_bytes: int
) -> None:
    values = [orjson.dumps(o) for o in objects]
    records = frame(values, max_events=max_events, max_bytes=max_bytes)
    assert [i for _v, start, stop in records for i in range(start, stop)] == list(
        range(len(values))
    )
    for value, start, stop in records:
        assert 1 <= stop - start <= max_events
        assert len(value) <= max_bytes or stop - start == 1  # an oversized event travels alone
        lines = unframe(value)
        events = [value] if lines is None else lines
        assert [orjson.loads(e) for e in events] == objects[start:stop]


@given(_objects, st.sampled_from([None, 0, 1, 2, 4]))
@settings(max_examples=300, deadline=None)
def test_one_object_over_several_lines_is_never_taken_for_several_events(
    obj: dict[str, object], indent: int | None
) -> None:
    text = json.dumps(obj, indent=indent).encode()
    lines = unframe(text)
    assert lines is None or (len(lines) == 1 and json.loads(lines[0]) == obj)


def test_default_limits_keep_records_under_kafkas_default_message_size() -> None:
    event = orjson.dumps({"event_id": "e", "features": {f"f{i}": i / 7 for i in range(20)}})
    records = frame([event] * 5000)
    assert len(records) == 5
    assert all(len(v) <= MAX_BYTES < 1024 * 1024 for v, _a, _b in records)
    big = b'{"x": "' + b"a" * (MAX_BYTES + 10) + b'"}'
    assert [(a, b) for _v, a, b in frame([event, big, event])] == [(0, 1), (1, 2), (2, 3)]


def test_max_events_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_events"):
        frame([b"{}"], max_events=0)
