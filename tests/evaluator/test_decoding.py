"""The columnar decoder agrees with the pydantic contract on every record, valid or not.

Batches of generated predictions and outcomes, many of them broken in the ways a bus can carry
(missing or extra keys, explicit nulls, wrong types, escaped keys, duplicate keys, NaN and huge
numbers, bad ids and timestamps, pretty-printed or non-UTF-8 text), are decoded by
``decode_predictions`` / ``decode_outcomes`` and, one by one, by ``shared.contracts.decode``.
Both must refuse the same records, and give the same values for the others.
"""

from __future__ import annotations

import itertools
import math
import os
from typing import Any

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.evaluator.columns import ColumnBatch, objects
from services.evaluator.decoding import (
    OutcomeBatch,
    PredictionBatch,
    decode_outcomes,
    decode_predictions,
    decode_records,
)
from shared.bus import Record, Topics
from shared.bus.framing import frame
from shared.contracts import OutcomeEvent, PredictionEvent, decode, encode
from shared.stats._common import category_key, category_keys

IDS = st.one_of(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,20}", fullmatch=True),
    st.sampled_from(["", " x", "a b", "é", "x" * 129, "-x", "a\n"]),
)
STAMPS = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.sampled_from(
        [
            "2027-01-15T08:00:00Z",
            "2027-01-15 08:00:00.5+02:00",
            "2027-01-15T08:00:00",
            "2027-02-30T08:00:00Z",
            "2027-01-15T24:00:00Z",
            "2027-01-15T08:00:00+00:60",
            "2027-01-15T08:00:00.1234567Z",
            "yesterday",
            "1800000000",
        ]
    ),
    st.integers(0, 2_000_000_000),
)
NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, 1, -0.0, 2**53, 2**53 + 1, 1e300, 0.5]),
)
SCALARS = st.one_of(NUMBERS, st.booleans(), st.text(max_size=5), st.none())
VALUES = st.one_of(
    SCALARS,
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)
KEYS = st.sampled_from(["a", "b", "c", "x1", "", "é"])


def prediction() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "event_id": IDS,
            "system_id": st.sampled_from(["s1", "s2"]),
            "model_version": st.sampled_from(["m1", "m2", "", "v" * 129]),
            "timestamp": STAMPS,
            "features": st.dictionaries(KEYS, st.one_of(SCALARS, VALUES), max_size=4),
            "prediction": SCALARS,
        },
        optional={
            "schema_version": st.sampled_from([1, 1, 2, None, "1", 1.0]),
            "scores": st.one_of(
                st.none(),
                st.dictionaries(
                    st.sampled_from(["0", "1", "a"]),
                    st.one_of(st.floats(0, 1), st.sampled_from([0, 1, 1.5, -0.1, None, "0.5"])),
                    max_size=3,
                ),
            ),
            "attributes": st.one_of(
                st.none(), st.dictionaries(KEYS, SCALARS, max_size=3), st.integers()
            ),
            "latency_ms": st.one_of(
                st.none(), st.floats(-1, 1e6), st.integers(-5, 5), st.text(max_size=2)
            ),
            "extra": SCALARS,
        },
    )


def outcome() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "event_id": IDS,
            "system_id": st.sampled_from(["s1", "s2"]),
            "prediction_id": IDS,
            "timestamp": STAMPS,
            "actual": SCALARS,
        },
        optional={
            "schema_version": st.sampled_from([1, 1, 2, None]),
            "extra": SCALARS,
        },
    )


def _dumps(item: dict[str, Any]) -> bytes:
    """JSON of ``item``; Python ints beyond 64 bits, which orjson refuses, as raw digits."""
    try:
        return orjson.dumps(item)
    except TypeError:
        import json

        return json.dumps(item, allow_nan=True).encode()


@st.composite
def raw(draw: st.DrawFn, item: st.SearchStrategy[dict[str, Any]]) -> bytes | None:
    record = draw(item)
    body = _dumps(record)
    twist = draw(
        st.sampled_from(
            ["none"] * 12
            + ["drop", "null", "escape", "dup", "pretty", "nan", "bytes", "empty", "array", "tail"]
        )
    )
    if twist == "drop" and record:
        key = draw(st.sampled_from(sorted(record)))
        body = _dumps({k: v for k, v in record.items() if k != key})
    elif twist == "null" and record:
        key = draw(st.sampled_from(sorted(record)))
        body = _dumps({**record, key: None})
    elif twist == "escape":
        body = body.replace(b'"attributes"', b'"\\u0061ttributes"', 1).replace(
            b'"event_id"', b'"\\u0065vent_id"', 1
        )
    elif twist == "dup":
        body = body[:-1] + b',"system_id":"s3"}' if len(body) > 2 else body
    elif twist == "pretty":
        body = (
            orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2)
            if b"NaN" not in body
            else body
        )
    elif twist == "nan":
        body = body.replace(b'"prediction":', b'"prediction":NaN,"x":', 1)
    elif twist == "bytes":
        body = body.replace(b'"m', b'"\xff', 1)
    elif twist == "empty":
        return None if draw(st.booleans()) else b""
    elif twist == "array":
        body = b"[" + body + b"]"
    elif twist == "tail":
        body = body + body
    return body


def _same_scalar(a: Any, b: Any) -> bool:
    """Equal as the evaluator reads values: 1 and 1.0 are the same number and category."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b) and category_key(a) == category_key(b)
    return type(a) is type(b) and bool(a == b)


def _numbers_equal(a: np.ndarray, b: list[float]) -> bool:
    expected = np.asarray(b, dtype=np.float64)
    return bool(np.array_equal(a, expected, equal_nan=True))


def _reference(model: type[Any], values: list[bytes | None]) -> tuple[list[Any], list[int]]:
    events, bad = [], []
    for i, value in enumerate(values):
        try:
            events.append(decode(model, value))
        except Exception:
            bad.append(i)
    return events, bad


def _number(value: Any) -> float:
    return float(value) if type(value) is int or type(value) is float else math.nan


def _check_keys(batch: PredictionBatch, name: str, values: list[Any]) -> None:
    """The category keys the evaluator counts (from codes when it has them) are those of the
    values, row by row, for the whole batch and for a part of it."""
    for rows in (None, np.arange(0, batch.size, 2)):
        chosen = values if rows is None else [values[i] for i in rows.tolist()]
        keys, missing = ColumnBatch(batch, rows).keys(name)
        want_keys, want_missing = category_keys(objects(chosen))
        assert missing.tolist() == want_missing.tolist(), (name, chosen)
        assert keys[~missing].tolist() == want_keys[~want_missing].tolist(), (name, chosen)


def _check_predictions(batch: PredictionBatch, events: list[PredictionEvent]) -> None:
    assert batch.size == len(events)
    assert batch.event_ids == [e.event_id for e in events]
    assert batch.system_ids == [e.system_id for e in events]
    assert batch.model_versions == [e.model_version for e in events]
    assert batch.ts.tolist() == [e.timestamp.timestamp() for e in events]
    for got, event in zip(batch.predictions, events, strict=True):
        assert _same_scalar(got, event.prediction), (got, event.prediction)
    _check_keys(batch, "prediction", [e.prediction for e in events])
    for got_text, event in zip(batch.prediction_texts(), events, strict=True):
        assert _same_scalar(orjson.loads(got_text), event.prediction)
    assert _numbers_equal(batch.prediction_numbers(), [_number(e.prediction) for e in events])
    names = {n for e in events for n in e.features}
    for name in names:
        want = [e.features.get(name) for e in events]
        assert _numbers_equal(batch.feature_numbers(name), [_number(v) for v in want])
        for got, value in zip(batch.feature(name), want, strict=True):
            assert _same_scalar(got, value), (name, got, value)
        _check_keys(batch, f"feature:{name}", want)
        coded = batch.feature_codes(name)
        if coded is not None:  # codes into the distinct values give the values back
            codes, distinct = coded
            assert len(set(map(repr, distinct))) == len(distinct)
            for code, value in zip(codes.tolist(), want, strict=True):
                assert _same_scalar(None if code < 0 else distinct[code], value), (name, value)
    for label in {k for e in events for k in (e.scores or {})} | {"1"}:
        want_scores = [
            math.nan if e.scores is None or label not in e.scores else e.scores[label]
            for e in events
        ]
        assert _numbers_equal(batch.scores(label), want_scores)
    for text, event in zip(batch.score_texts(), events, strict=True):
        assert (None if text is None else orjson.loads(text)) == event.scores
    for name in {k for e in events for k in e.attributes}:
        for got, event in zip(batch.attribute(name), events, strict=True):
            assert _same_scalar(got, event.attributes.get(name))
    for text, event in zip(batch.attribute_texts(), events, strict=True):
        parsed = {} if text is None else orjson.loads(text)
        assert {k: v for k, v in parsed.items() if v is not None} == {
            k: v for k, v in event.attributes.items() if v is not None
        }
    assert _numbers_equal(
        batch.latency(), [math.nan if e.latency_ms is None else e.latency_ms for e in events]
    )


def _check_outcomes(batch: OutcomeBatch, events: list[OutcomeEvent]) -> None:
    assert batch.size == len(events)
    assert batch.event_ids == [e.event_id for e in events]
    assert batch.system_ids == [e.system_id for e in events]
    assert batch.prediction_ids == [e.prediction_id for e in events]
    assert batch.ts.tolist() == [e.timestamp.timestamp() for e in events]
    for got, text, event in zip(batch.actuals, batch.actual_texts(), events, strict=True):
        assert _same_scalar(got, event.actual)
        assert _same_scalar(orjson.loads(text), event.actual)


SETTINGS = settings(
    max_examples=int(os.environ.get("WK_DECODING_EXAMPLES", "400")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@SETTINGS
@given(st.lists(raw(prediction()), min_size=1, max_size=12))
def test_predictions_decode_as_pydantic_does(values: list[bytes | None]) -> None:
    offsets = np.arange(len(values), dtype=np.int64) + 100
    batch, bad = decode_predictions(values, offsets)
    events, refused = _reference(PredictionEvent, values)
    assert [i for i, _ in bad] == refused
    kept = [i for i in range(len(values)) if i not in refused]
    assert batch.offsets.tolist() == [100 + i for i in kept]
    _check_predictions(batch, events)


@SETTINGS
@given(st.lists(raw(outcome()), min_size=1, max_size=12), st.data())
def test_a_batch_split_into_row_ranges_reads_as_its_rows(
    values: list[bytes | None], data: st.DataObject
) -> None:
    """Outcomes held back in part are applied later as ``rows(start, stop)``: every column of
    each range equals those rows of the whole batch, whichever path read them."""
    batch, _ = decode_outcomes(values, np.arange(len(values), dtype=np.int64))
    events, _ = _reference(OutcomeEvent, values)
    cuts = sorted(data.draw(st.lists(st.integers(0, batch.size), max_size=3)))
    bounds = [0, *cuts, batch.size]
    for start, stop in itertools.pairwise(bounds):
        part = batch.rows(start, stop)
        assert part.offsets.tolist() == batch.offsets[start:stop].tolist()
        _check_outcomes(part, events[start:stop])


@SETTINGS
@given(st.lists(raw(outcome()), min_size=1, max_size=12))
def test_outcomes_decode_as_pydantic_does(values: list[bytes | None]) -> None:
    offsets = np.arange(len(values), dtype=np.int64)
    batch, bad = decode_outcomes(values, offsets)
    events, refused = _reference(OutcomeEvent, values)
    assert [i for i, _ in bad] == refused
    _check_outcomes(batch, events)


@SETTINGS
@given(st.lists(prediction(), min_size=1, max_size=30))
def test_valid_shapes_take_the_fast_path_and_agree(items: list[dict[str, Any]]) -> None:
    """Records that are valid after pydantic's own encoding: every value must agree."""
    events, values = [], []
    for item in items:
        try:
            event = PredictionEvent.model_validate(item)
            value = encode(event)
        except (ValueError, TypeError):  # invalid, or an int orjson cannot write
            continue
        events.append(event)
        values.append(value)
    if not values:
        return
    batch, bad = decode_predictions(list(values), np.arange(len(values), dtype=np.int64))
    assert not bad
    _check_predictions(batch, events)


def test_the_common_shape_is_read_by_arrow() -> None:
    """What ingest forwards is decoded without one pydantic model."""
    events = [
        PredictionEvent.model_validate(
            {
                "event_id": f"e{i}",
                "system_id": "s1",
                "model_version": "m1",
                "timestamp": "2027-01-15T08:00:00.25Z",
                "features": {"x": float(i), "c": "a", "n": None},
                "prediction": i % 2,
                "scores": {"0": 0.25, "1": 0.75},
                "latency_ms": 3,
            }
        )
        for i in range(50)
    ]
    batch, bad = decode_predictions([encode(e) for e in events], np.arange(50, dtype=np.int64))
    assert not bad
    assert batch._events == []  # no row needed pydantic
    _check_predictions(batch, events)
    codes, distinct = batch.feature_codes("c") or ([], [])
    assert distinct == ["a"] and set(codes) == {0}
    codes, distinct = batch.feature_codes("n") or ([], [])
    assert distinct == [] and set(codes) == {-1}


def test_decode_records_splits_partitions_and_skips_redeliveries() -> None:
    topics = Topics(prefix="t.")
    event = PredictionEvent.model_validate(
        {
            "event_id": "e",
            "system_id": "s1",
            "model_version": "m1",
            "timestamp": "2027-01-15T08:00:00Z",
            "features": {},
            "prediction": 1,
        }
    )
    records = [
        Record(topics.predictions, p, o, None, encode(event) if o != 3 else b"{}", 0)
        for p in (0, 1)
        for o in range(5)
    ] + [Record(topics.evaluations, 0, 0, None, b"x", 0)]
    starts = {(topics.predictions, 0): 2, (topics.predictions, 1): 0}
    batches, bad = decode_records(records, topics, lambda t, p: starts.get((t, p)))
    assert sorted(batches) == [0, 1]
    assert batches[0].predictions is not None and batches[0].predictions.offsets.tolist() == [2, 4]
    assert batches[1].predictions is not None and batches[1].predictions.offsets.tolist() == [
        0,
        1,
        2,
        4,
    ]
    assert batches[0].seen == {topics.predictions: 5}
    assert [(r.partition, r.offset) for r, _ in bad] == [(0, 3), (1, 3)]


def _frame_records(
    topic: str, values: list[bytes], max_events: int
) -> tuple[list[Record], list[int]]:
    """``values`` framed as ingest frames them, and the record offset of every value."""
    records, offsets = [], []
    for offset, (value, start, stop) in enumerate(frame(values, max_events=max_events)):
        records.append(Record(topic, 0, 40 + offset, b"s1", value, 0))
        offsets += [40 + offset] * (stop - start)
    return records, offsets


@SETTINGS
@given(
    st.lists(raw(prediction()), min_size=1, max_size=30),
    st.integers(1, 8),
)
def test_framed_records_decode_as_their_events_one_by_one(
    values: list[bytes | None], max_events: int
) -> None:
    """Framed records give the events (and refuse the lines) that pydantic gives for each
    line alone; every event carries its record's offset, a refused line goes alone to the DLQ
    as a copy of its record."""
    topics = Topics(prefix="t.")
    lines = [v for v in values if v and b"\n" not in v and v[:1] == b"{" and v[-1:] == b"}"]
    if not lines:
        return
    records, record_of = _frame_records(topics.predictions, lines, max_events)
    batches, bad = decode_records(records, topics, lambda t, p: 0)
    events, refused = _reference(PredictionEvent, list(lines))
    by_offset = {r.offset: r for r in records}
    assert [(r.offset, r.value) for r, _ in bad] == [(record_of[i], lines[i]) for i in refused]
    for record, _ in bad:
        assert record.key == b"s1" and record.topic == topics.predictions
        if record.value != by_offset[record.offset].value:  # a line of a framed record
            assert record.value in by_offset[record.offset].value.split(b"\n")
    kept = [i for i in range(len(lines)) if i not in refused]
    if not kept:
        return
    batch = batches[0].predictions
    assert batch is not None
    assert batch.offsets.tolist() == [record_of[i] for i in kept]
    assert batches[0].seen == {topics.predictions: records[-1].offset + 1}
    _check_predictions(batch, events)


@SETTINGS
@given(st.lists(raw(outcome()), min_size=1, max_size=30), st.integers(1, 8))
def test_framed_outcomes_decode_as_their_events_one_by_one(
    values: list[bytes | None], max_events: int
) -> None:
    topics = Topics(prefix="t.")
    lines = [v for v in values if v and b"\n" not in v and v[:1] == b"{" and v[-1:] == b"}"]
    if not lines:
        return
    records, record_of = _frame_records(topics.outcomes, lines, max_events)
    batches, bad = decode_records(records, topics, lambda t, p: 0)
    events, refused = _reference(OutcomeEvent, list(lines))
    assert [(r.offset, r.value) for r, _ in bad] == [(record_of[i], lines[i]) for i in refused]
    kept = [i for i in range(len(lines)) if i not in refused]
    if kept:
        batch = batches[0].outcomes
        assert batch is not None
        assert batch.offsets.tolist() == [record_of[i] for i in kept]
        _check_outcomes(batch, events)


def _prediction_value(i: int, **changes: Any) -> bytes:
    item = {
        "event_id": f"e{i}",
        "system_id": "s1",
        "model_version": "m1",
        "timestamp": "2027-01-15T08:00:00.25Z",
        "features": {"x": float(i), "c": "a"},
        "prediction": i % 2,
        "scores": {"0": 0.25, "1": 0.75},
    }
    item.update(changes)
    return orjson.dumps(item)


def test_framed_and_single_records_decode_to_the_same_columns() -> None:
    topics = Topics(prefix="t.")
    values = [_prediction_value(i) for i in range(2500)]
    single = [Record(topics.predictions, 0, i, b"s1", v, 0) for i, v in enumerate(values)]
    framed, record_of = _frame_records(topics.predictions, values, 1000)
    assert len(framed) == 3
    one, bad_one = decode_records(single, topics, lambda t, p: 0)
    many, bad_many = decode_records(framed, topics, lambda t, p: 0)
    assert not bad_one and not bad_many
    a, b = one[0].predictions, many[0].predictions
    assert a is not None and b is not None
    assert b._events == [] and b.offsets.tolist() == record_of
    assert a.event_ids == b.event_ids and a.ts.tolist() == b.ts.tolist()
    assert a.prediction_texts() == b.prediction_texts() and a.score_texts() == b.score_texts()
    assert np.array_equal(a.feature_numbers("x"), b.feature_numbers("x"))
    assert a.feature("c") == b.feature("c")


def test_a_bad_line_of_a_framed_record_goes_to_the_dlq_alone() -> None:
    topics = Topics(prefix="t.")
    bad_line = _prediction_value(1, timestamp="yesterday")
    good = [_prediction_value(0), bad_line, _prediction_value(2)]
    pretty = orjson.dumps(orjson.loads(_prediction_value(3)), option=orjson.OPT_INDENT_2)
    records = [
        Record(topics.predictions, 0, 7, b"s1", b"\n".join(good), 0),
        Record(topics.predictions, 0, 8, b"s1", pretty, 0),  # one event over several lines
        Record(topics.predictions, 0, 9, b"s1", b"  " + _prediction_value(4) + b"\r\n\n", 0),
    ]
    batches, bad = decode_records(records, topics, lambda t, p: 0)
    assert [(r.offset, r.key, r.value) for r, _ in bad] == [(7, b"s1", bad_line)]
    assert "timestamp" in bad[0][1]
    batch = batches[0].predictions
    assert batch is not None
    assert batch.event_ids == ["e0", "e2", "e3", "e4"]
    assert batch.offsets.tolist() == [7, 7, 8, 9]
    assert batches[0].seen == {topics.predictions: 10}


def test_an_offset_of_sixty_minutes_or_more_goes_to_the_dlq_as_the_contract_says() -> None:
    """Arrow cannot read +00:60 and ``fromisoformat`` reads it as +01:00; pydantic refuses it."""
    value = orjson.dumps(
        {
            "event_id": "o-1",
            "system_id": "s1",
            "prediction_id": "p-1",
            "timestamp": "2027-01-15T08:00:00+00:60",
            "actual": 1,
        }
    )
    batch, bad = decode_outcomes([value, value], np.arange(2, dtype=np.int64))
    assert batch.size == 0
    assert [i for i, _ in bad] == [0, 1]
