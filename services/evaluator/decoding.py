"""Decoding polled predictions and outcomes into columns: exact, and cheap in the common case.

Ingest validated every event, but the evaluator does not trust the bus: a record the pydantic
contract refuses goes to the DLQ with pydantic's reason. Most records are decoded by Arrow's
JSON reader straight into columns (C++, outside the GIL) and checked with vectorised tests that
pass only rows the contract certainly accepts, with the values it would give. Every row those
tests are not sure about (an explicit null where a key may be missing, an escaped key, a
non-finite or huge number, a column Arrow could not type ...) goes through
``shared.contracts.decode`` (orjson + pydantic), which accepts it or names the error.
``tests/evaluator/test_decoding.py`` checks on generated records that both paths agree.

Values the evaluator cannot tell apart are not told apart: a missing key and an explicit null
inside ``features``, ``attributes`` or ``scores`` both read as None, and 1 and 1.0 in one column
may both read as 1.0 (category keys treat them as one category anyway).
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Generic, Self, TypeVar, overload

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from shared.bus import Record, Topics
from shared.bus.framing import unframe
from shared.contracts import (
    IDENTIFIER_MAX_LENGTH,
    IDENTIFIER_PATTERN,
    MODEL_VERSION_MAX_LENGTH,
    TIMESTAMP_PATTERN,
    OutcomeEvent,
    PredictionEvent,
    decode,
)

__all__ = [
    "OutcomeBatch",
    "PartitionBatch",
    "PredictionBatch",
    "decode_outcomes",
    "decode_predictions",
    "decode_records",
    "numeric_values",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
M = TypeVar("M", PredictionEvent, OutcomeEvent)

_IDENTIFIER = f"^{IDENTIFIER_PATTERN}$"
_TIMESTAMP = f"^{TIMESTAMP_PATTERN}$"
_EXACT = 2.0**53
"""Doubles at least this large may stand for a JSON integer a double cannot hold exactly."""
_SCALAR_TYPES = (pa.int64(), pa.float64(), pa.string(), pa.bool_())
_NUMBER_TYPES = (pa.int64(), pa.float64())
_BLOCK_SIZE = 1 << 20
"""Arrow parses blocks of this size in parallel threads."""


def numeric_values(values: Sequence[Any]) -> FloatArray:
    """Numbers as floats; None and anything that is not a number (bools too) as NaN."""
    return np.fromiter(
        (float(v) if type(v) is int or type(v) is float else math.nan for v in values),
        dtype=np.float64,
        count=len(values),
    )


def _texts(values: Sequence[Any]) -> list[str]:
    return [orjson.dumps(v).decode() for v in values]


# --- vectorised checks ---------------------------------------------------------------------


def _np(array: pa.Array) -> npt.NDArray[Any]:
    values: npt.NDArray[Any] = array.to_numpy(zero_copy_only=False)
    return values


def _valid(array: pa.Array) -> npt.NDArray[np.bool_]:
    if array.null_count == 0:
        return np.ones(len(array), dtype=np.bool_)
    return _np(array.is_valid())


_IDENTIFIERS = re.compile(rf"(?:{IDENTIFIER_PATTERN}\x00)*")
"""Identifiers, each followed by NUL: a whole column checked by one match."""


def _identifier(array: pa.Array) -> npt.NDArray[np.bool_]:
    if array.type != pa.string():
        return np.zeros(len(array), dtype=np.bool_)
    if array.null_count == 0:
        ids: list[str] = array.to_pylist()
        if _IDENTIFIERS.fullmatch("\x00".join(ids) + "\x00") is not None:
            return np.ones(len(array), dtype=np.bool_)
    ok = pc.and_(
        pc.match_substring_regex(array, pattern=_IDENTIFIER),
        pc.less_equal(pc.utf8_length(array), IDENTIFIER_MAX_LENGTH),
    )
    return _np(pc.fill_null(ok, False))


def _scalar_ok(array: pa.Array, *, required: bool) -> npt.NDArray[np.bool_]:
    """Rows whose value is a JSON scalar the contract takes as is (or null, if allowed)."""
    valid = _valid(array)
    if array.type == pa.null():
        return ~valid if not required else np.zeros(len(array), dtype=np.bool_)
    if array.type not in _SCALAR_TYPES:
        return np.zeros(len(array), dtype=np.bool_) if required else ~valid
    ok = valid if required else np.ones(len(array), dtype=np.bool_)
    if array.type == pa.float64():
        values = _np(array)
        exact = np.isfinite(values) & (np.abs(values) < _EXACT)
        ok = ok & (exact | ~valid)
    return ok


def _timestamps(array: pa.Array) -> tuple[npt.NDArray[np.bool_], FloatArray]:
    """Rows in the ISO-8601 subset both Arrow and pydantic read alike, and their epoch s."""
    n = len(array)
    ts = np.full(n, math.nan)
    if array.type != pa.string():
        return np.zeros(n, dtype=np.bool_), ts
    ok = _np(pc.fill_null(pc.match_substring_regex(array, pattern=_TIMESTAMP), False))
    if not ok.any():
        return ok, ts
    chosen = pc.if_else(pa.array(ok), array, "1970-01-01T00:00:00Z")
    try:
        micros = _np(pc.cast(chosen, pa.timestamp("us", tz="UTC")).cast(pa.int64()))
        # a microsecond count below 2^53 is exact as a double, and one division then rounds
        # as Python's datetime.timestamp() does; beyond (years after 2255), ask pydantic
        ok &= np.abs(micros) < _EXACT
        ts = micros.astype(np.float64) / 1e6
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # one impossible date: row by row
        texts = chosen.to_pylist()
        for i in np.flatnonzero(ok).tolist():
            try:
                ts[i] = datetime.fromisoformat(texts[i]).timestamp()
            except ValueError:
                ok[i] = False
    return ok, ts


def _present(table: pa.Table, name: str) -> pa.Array | None:
    if name not in table.column_names:
        return None
    return table.column(name).combine_chunks()


def _children(array: pa.Array) -> dict[str, pa.Array]:
    """A struct's fields, null where the struct itself is null."""
    return {array.type.field(i).name: child for i, child in enumerate(array.flatten())}


def _mentions(
    values: Sequence[bytes], rows: npt.NDArray[np.bool_], key: str
) -> npt.NDArray[np.bool_]:
    """Rows (among ``rows``) whose text may hold ``key`` as a key: it appears, or is escaped."""
    needle = orjson.dumps(key)
    out = np.zeros(len(values), dtype=np.bool_)
    for i in np.flatnonzero(rows).tolist():
        value = values[i]
        out[i] = needle in value or b"\\" in value
    return out


def _optional_absent(
    values: Sequence[bytes], array: pa.Array | None, key: str
) -> npt.NDArray[np.bool_]:
    """Rows where a key that must not be null is either absent or was never written null.

    Arrow reads a missing key and an explicit null alike; only the text can tell them apart.
    """
    n = len(values)
    if array is None:
        return np.ones(n, dtype=np.bool_)
    null = ~_valid(array)
    return ~_mentions(values, null, key)


def _common_checks(
    table: pa.Table, values: Sequence[bytes], fields: frozenset[str], ids: Sequence[str]
) -> tuple[npt.NDArray[np.bool_], FloatArray]:
    n = table.num_rows
    ok = np.ones(n, dtype=np.bool_)
    for name in table.column_names:
        if name not in fields:  # extra keys are refused; a null one may still be there
            extra = table.column(name).combine_chunks()
            ok &= ~_valid(extra) & ~_mentions(values, ~_valid(extra), name)
    for name in ids:
        array = _present(table, name)
        ok &= np.zeros(n, dtype=np.bool_) if array is None else _identifier(array)
    version = _present(table, "schema_version")
    ok &= _optional_absent(values, version, "schema_version")
    if version is not None and version.type != pa.null():
        is_one = (
            _np(pc.fill_null(pc.equal(version, 1), False))
            if version.type == pa.int64()
            else np.zeros(n, dtype=np.bool_)
        )
        ok &= is_one | ~_valid(version)
    stamp = _present(table, "timestamp")
    if stamp is None:
        return np.zeros(n, dtype=np.bool_), np.full(n, math.nan)
    stamped, ts = _timestamps(stamp)
    return ok & stamped, ts


def _prediction_checks(
    table: pa.Table, values: Sequence[bytes]
) -> tuple[npt.NDArray[np.bool_], FloatArray]:
    ok, ts = _common_checks(table, values, _PREDICTION_FIELDS, ("event_id", "system_id"))
    n = table.num_rows
    version = _present(table, "model_version")
    if version is None or version.type != pa.string():
        return np.zeros(n, dtype=np.bool_), ts
    length = pc.utf8_length(version)
    sized = pc.and_(pc.greater_equal(length, 1), pc.less_equal(length, MODEL_VERSION_MAX_LENGTH))
    ok &= _np(pc.fill_null(sized, False))
    prediction = _present(table, "prediction")
    ok &= (
        np.zeros(n, dtype=np.bool_) if prediction is None else _scalar_ok(prediction, required=True)
    )
    features = _present(table, "features")
    if features is None or not pa.types.is_struct(features.type):
        return np.zeros(n, dtype=np.bool_), ts
    ok &= _valid(features)
    for child in _children(features).values():
        ok &= _scalar_ok(child, required=False)
    attributes = _present(table, "attributes")
    ok &= _optional_absent(values, attributes, "attributes")
    if attributes is not None and attributes.type != pa.null():
        if not pa.types.is_struct(attributes.type):
            ok &= ~_valid(attributes)
        else:
            for child in _children(attributes).values():
                ok &= _scalar_ok(child, required=False)
    scores = _present(table, "scores")
    if scores is not None and scores.type != pa.null():
        if not pa.types.is_struct(scores.type):
            ok &= ~_valid(scores)
        else:
            given = _valid(scores)
            for child in _children(scores).values():
                if child.type not in _NUMBER_TYPES:
                    ok &= ~given
                    continue
                p = _np(child.cast(pa.float64(), safe=False))
                # a missing score and a null one read alike, and null is refused: ask pydantic
                ok &= ~given | (_valid(child) & (p >= 0.0) & (p <= 1.0))
    latency = _present(table, "latency_ms")
    if latency is not None and latency.type != pa.null():
        given = _valid(latency)
        if latency.type not in _NUMBER_TYPES:
            ok &= ~given
        else:
            ms = _np(latency.cast(pa.float64(), safe=False))
            ok &= ~given | (np.isfinite(ms) & (ms >= 0.0))
    return ok, ts


def _outcome_checks(
    table: pa.Table, values: Sequence[bytes]
) -> tuple[npt.NDArray[np.bool_], FloatArray]:
    ok, ts = _common_checks(
        table, values, _OUTCOME_FIELDS, ("event_id", "system_id", "prediction_id")
    )
    actual = _present(table, "actual")
    if actual is None:
        return np.zeros(table.num_rows, dtype=np.bool_), ts
    return ok & _scalar_ok(actual, required=True), ts


_PREDICTION_FIELDS = frozenset(PredictionEvent.model_fields)
_OUTCOME_FIELDS = frozenset(OutcomeEvent.model_fields)


# --- batches -------------------------------------------------------------------------------


class _Decoded(Generic[M]):
    """Rows of one batch: some read by Arrow (``table``), the others by pydantic (``events``),
    merged back into partition order column by column, each column built once."""

    def __init__(
        self,
        *,
        offsets: IntArray,
        ts: FloatArray,
        table: pa.Table | None,
        fast: npt.NDArray[np.intp],
        events: list[M],
        slow: npt.NDArray[np.intp],
    ) -> None:
        self.offsets = offsets
        self.ts = ts
        self.size = int(offsets.size)
        self._table = table
        self._fast = fast
        self._events: list[M] = events
        self._slow = slow
        self._cache: dict[tuple[str, ...], Any] = {}

    def rows(self, start: int, stop: int) -> Self:
        """Rows ``start`` to ``stop`` (partition order) as a batch of their own."""
        if start <= 0 and stop >= self.size:
            return self
        fast_from, fast_to = np.searchsorted(self._fast, [start, stop]).tolist()
        slow_from, slow_to = np.searchsorted(self._slow, [start, stop]).tolist()
        table = None
        if self._table is not None and fast_to > fast_from:
            table = self._table.slice(fast_from, fast_to - fast_from)
        return type(self)(
            offsets=self.offsets[start:stop],
            ts=self.ts[start:stop],
            table=table,
            fast=self._fast[fast_from:fast_to] - start,
            events=self._events[slow_from:slow_to],
            slow=self._slow[slow_from:slow_to] - start,
        )

    def _cached(self, key: tuple[str, ...], build: Callable[[], Any]) -> Any:
        found = self._cache.get(key, self)
        if found is self:
            found = self._cache[key] = build()
        return found

    def _column(self, name: str) -> pa.Array | None:
        def build() -> pa.Array | None:
            if self._table is None or name not in self._table.column_names:
                return None
            return self._table.column(name).combine_chunks()

        return self._cached(("arrow", name), build)

    def _children(self, name: str) -> dict[str, pa.Array]:
        def build() -> dict[str, pa.Array]:
            column = self._column(name)
            if column is None or not pa.types.is_struct(column.type):
                return {}
            return _children(column)

        return self._cached(("arrow children", name), build)  # type: ignore[no-any-return]

    def _merge(self, fast: list[Any], slow: list[Any]) -> list[Any]:
        if not self._events:
            return fast
        if self._table is None:
            return slow
        out: list[Any] = [None] * self.size
        for i, value in zip(self._fast.tolist(), fast, strict=True):
            out[i] = value
        for i, value in zip(self._slow.tolist(), slow, strict=True):
            out[i] = value
        return out

    def _values(self, name: str, fallback: Callable[[M], Any]) -> list[Any]:
        """A top-level field as Python values, in partition order."""

        def build() -> list[Any]:
            column = self._column(name)
            fast = [None] * int(self._fast.size) if column is None else column.to_pylist()
            return self._merge(fast, [fallback(e) for e in self._events])

        return self._cached(("values", name), build)  # type: ignore[no-any-return]

    def _child(self, parent: str, name: str) -> pa.Array | None:
        return self._children(parent).get(name)

    def _child_values(self, parent: str, name: str, fallback: Callable[[M], Any]) -> list[Any]:
        def build() -> list[Any]:
            child = self._child(parent, name)
            fast = [None] * int(self._fast.size) if child is None else child.to_pylist()
            return self._merge(fast, [fallback(e) for e in self._events])

        return self._cached(("child", parent, name), build)  # type: ignore[no-any-return]

    def _child_numbers(self, parent: str, name: str, fallback: Callable[[M], Any]) -> FloatArray:
        """A struct field as floats: NaN where missing, null or not a number."""

        def build() -> FloatArray:
            if not self._events:
                child = self._child(parent, name)
                if child is None or child.type not in _NUMBER_TYPES:
                    return np.full(self.size, math.nan)
                return _np(child.cast(pa.float64(), safe=False)).astype(np.float64, copy=False)
            return numeric_values(self._child_values(parent, name, fallback))

        return self._cached(("numbers", parent, name), build)  # type: ignore[no-any-return]

    def strings(self, name: str) -> list[str]:
        return self._values(name, lambda e: getattr(e, name))

    @property
    def system_ids(self) -> list[str]:
        return self.strings("system_id")

    @property
    def event_ids(self) -> list[str]:
        return self.strings("event_id")


B = TypeVar("B", bound="_Decoded[Any]")


class PredictionBatch(_Decoded[PredictionEvent]):
    """One stream partition's predictions of a polled batch, in partition order."""

    @property
    def model_versions(self) -> list[str]:
        return self.strings("model_version")

    @property
    def predictions(self) -> list[Any]:
        return self._values("prediction", lambda e: e.prediction)

    def prediction_numbers(self) -> FloatArray:
        def build() -> FloatArray:
            column = self._column("prediction")
            if not self._events:
                if column is None or column.type not in _NUMBER_TYPES:
                    return np.full(self.size, math.nan)
                return _np(column.cast(pa.float64(), safe=False)).astype(np.float64, copy=False)
            return numeric_values(self.predictions)

        return self._cached(("prediction_numbers",), build)  # type: ignore[no-any-return]

    def prediction_texts(self) -> list[str]:
        def build() -> list[str]:
            column = self._column("prediction")
            if not self._events and column is not None and column.type == pa.int64():
                return column.cast(pa.string()).to_pylist()  # type: ignore[no-any-return]
            return _texts(self.predictions)

        return self._cached(("prediction_texts",), build)  # type: ignore[no-any-return]

    def feature(self, name: str) -> list[Any]:
        return self._child_values("features", name, lambda e: e.features.get(name))

    def feature_numbers(self, name: str) -> FloatArray:
        return self._child_numbers("features", name, lambda e: e.features.get(name))

    def feature_codes(self, name: str) -> tuple[IntArray, list[Any]] | None:
        """The feature as codes into its distinct values (-1 where null or absent) and those
        values, when Arrow read every row (None otherwise): categories counted per distinct
        value, not per row."""
        return self._codes(("features", name), lambda: self._child("features", name))

    def prediction_codes(self) -> tuple[IntArray, list[Any]] | None:
        """The predictions as ``feature_codes`` gives a feature."""
        return self._codes(("prediction",), lambda: self._column("prediction"))

    def _codes(
        self, key: tuple[str, ...], column: Callable[[], pa.Array | None]
    ) -> tuple[IntArray, list[Any]] | None:
        if self._events:
            return None

        def build() -> tuple[IntArray, list[Any]] | None:
            array = column()
            if array is None or array.null_count == len(array):
                return np.full(self.size, -1, dtype=np.int64), []
            if array.type not in _SCALAR_TYPES:
                return None
            encoded = pc.dictionary_encode(array)
            codes = _np(encoded.indices.fill_null(-1)).astype(np.int64, copy=False)
            return codes, encoded.dictionary.to_pylist()

        return self._cached(("codes", *key), build)  # type: ignore[no-any-return]

    def attribute(self, name: str) -> list[Any]:
        return self._child_values("attributes", name, lambda e: e.attributes.get(name))

    def scores(self, label: str) -> FloatArray:
        return self._child_numbers(
            "scores", label, lambda e: None if e.scores is None else e.scores.get(label)
        )

    def latency(self) -> FloatArray:
        def build() -> FloatArray:
            column = self._column("latency_ms")
            if not self._events:
                if column is None or column.type not in _NUMBER_TYPES:
                    return np.full(self.size, math.nan)
                return _np(column.cast(pa.float64(), safe=False)).astype(np.float64, copy=False)
            return numeric_values(self._values("latency_ms", lambda e: e.latency_ms))

        return self._cached(("latency",), build)  # type: ignore[no-any-return]

    def _dicts(self, name: str, fallback: Callable[[PredictionEvent], Any]) -> list[Any]:
        """A struct field as dicts without null entries (None where absent)."""

        def build() -> list[Any]:
            column = self._column(name)
            fast: list[Any]
            if column is None or not pa.types.is_struct(column.type):
                fast = [None] * int(self._fast.size)
            else:
                fast = [
                    None if d is None else {k: v for k, v in d.items() if v is not None}
                    for d in column.to_pylist()
                ]
            return self._merge(fast, [fallback(e) for e in self._events])

        return self._cached(("dicts", name), build)  # type: ignore[no-any-return]

    def score_texts(self) -> list[str | None]:
        """The scores as JSON, built column-wise when every row was read by Arrow."""

        def build() -> list[str | None]:
            column = self._column("scores")
            if not self._events:
                if column is None or not pa.types.is_struct(column.type):
                    return [None] * self.size
                children = self._children("scores")
                if not children:
                    return [None if not v else "{}" for v in _valid(column).tolist()]
                parts: list[Any] = []
                for j, (key, child) in enumerate(children.items()):
                    parts.append(("{" if j == 0 else ",") + orjson.dumps(key).decode() + ":")
                    parts.append(pc.cast(child, pa.string()))
                parts.append("}")
                texts = pc.binary_join_element_wise(*parts, "")
                return texts.to_pylist()  # type: ignore[no-any-return]
            return [
                None if d is None else orjson.dumps(d).decode()
                for d in self._dicts("scores", lambda e: e.scores)
            ]

        return self._cached(("score_texts",), build)  # type: ignore[no-any-return]

    def attribute_texts(self) -> list[str | None]:
        column = self._column("attributes")
        if not self._events and (column is None or column.type.num_fields == 0):
            return [None] * self.size
        return [
            orjson.dumps(d).decode() if d else None
            for d in self._dicts("attributes", lambda e: e.attributes)
        ]


class OutcomeBatch(_Decoded[OutcomeEvent]):
    """One stream partition's outcomes of a polled batch, in partition order."""

    @property
    def prediction_ids(self) -> list[str]:
        return self.strings("prediction_id")

    @property
    def actuals(self) -> list[Any]:
        return self._values("actual", lambda e: e.actual)

    def actual_texts(self) -> list[str]:
        def build() -> list[str]:
            column = self._column("actual")
            if not self._events and column is not None and column.type == pa.int64():
                return column.cast(pa.string()).to_pylist()  # type: ignore[no-any-return]
            return _texts(self.actuals)

        return self._cached(("actual_texts",), build)  # type: ignore[no-any-return]


# --- decoding ------------------------------------------------------------------------------


def _utf8(value: bytes) -> bool:
    if value.isascii():
        return True
    try:
        value.decode()
    except UnicodeDecodeError:
        return False
    return True


def _candidate(value: bytes | None) -> bool:
    """One JSON object on one line of valid UTF-8 (what Arrow's line reader takes as is)."""
    return (
        value is not None
        and value[:1] == b"{"
        and value[-1:] == b"}"
        and b"\n" not in value
        and b"\r" not in value
        and _utf8(value)
    )


def _newlines(body: bytes) -> IntArray | None:
    """Where the newlines of ``body`` are, when every line is one candidate object ("{" to
    "}", no carriage return, valid UTF-8), else None: every newline then sits between "}"
    and "{"."""
    if not (body[:1] == b"{" and body[-1:] == b"}" and b"\r" not in body and _utf8(body)):
        return None
    data = np.frombuffer(body, dtype=np.uint8)
    at: IntArray = np.flatnonzero(data == 10)
    if at.size and not ((data[at - 1] == 125).all() and (data[at + 1] == 123).all()):
        return None
    return at


def _candidates(values: Sequence[bytes | None]) -> tuple[list[int], bytes]:
    """Indexes of the values Arrow may read, and those values as one line-delimited body.

    Checked on the joined body first; only when that fails is each value checked.
    """
    n = len(values)
    if None not in values:
        body = b"\n".join(values)  # type: ignore[arg-type]
        newlines = _newlines(body)
        if newlines is not None and newlines.size == n - 1:
            return list(range(n)), body
    chosen = [i for i, v in enumerate(values) if _candidate(v)]
    return chosen, b"\n".join(values[i] for i in chosen)  # type: ignore[misc]


class _Lines(Sequence[bytes]):
    """The lines of a body, each cut out only when asked for (most never are)."""

    def __init__(self, body: bytes, newlines: IntArray) -> None:
        self._body = body
        self._starts = np.concatenate(([0], newlines + 1))
        self._ends = np.concatenate((newlines, [len(body)]))

    def __len__(self) -> int:
        return int(self._starts.size)

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...

    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self._body[int(self._starts[index]) : int(self._ends[index])]


@dataclass(frozen=True, slots=True)
class _Events:
    """The events of a run of records: one per record, or the lines of framed ones."""

    values: Sequence[bytes | None]
    counts: list[int] | None
    """Events per record; None when every record is one event."""
    body: bytes | None
    """``values`` joined by newlines when Arrow may read every one of them, else None."""


def _events(records: Sequence[bytes | None]) -> _Events:
    """Split framed records (``shared.bus.framing``) into their events.

    The common cases are decided on the joined records without looking at each event: records
    of one compact object each, and records framed by ``frame`` (every line one object).
    """
    if None not in records:
        body = b"\n".join(records)  # type: ignore[arg-type]
        newlines = _newlines(body)
        if newlines is not None and newlines.size == len(records) - 1:
            return _Events(list(records), None, body)
        if newlines is not None:  # every newline separates two objects: the records' lines
            lengths = np.fromiter(map(len, records), dtype=np.int64, count=len(records))  # type: ignore[arg-type]
            starts = np.cumsum(lengths + 1) - (lengths + 1)
            first_line = np.searchsorted(newlines, starts)
            counts = np.diff(np.append(first_line, newlines.size + 1)).tolist()
            return _Events(_Lines(body, newlines), counts, body)
    values: list[bytes | None] = []
    counts = []
    for value in records:
        framed = unframe(value) if value is not None and b"\n" in value else None
        if framed is None:
            values.append(value)
            counts.append(1)
        else:
            values.extend(framed)
            counts.append(len(framed))
    return _Events(values, None if len(values) == len(records) else counts, None)


_PARSE_OPTIONS = pj.ParseOptions(
    explicit_schema=pa.schema([("timestamp", pa.string())]), unexpected_field_behavior="infer"
)


def _read(body: bytes, n: int) -> pa.Table | None:
    try:
        table = pj.read_json(
            io.BytesIO(body),
            read_options=pj.ReadOptions(use_threads=True, block_size=_BLOCK_SIZE),
            # a column of whole-second times would be inferred as timestamp[s]; the checks
            # read the text (the contract's form), so the column stays text
            parse_options=_PARSE_OPTIONS,
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, UnicodeError):
        return None
    return table if table.num_rows == n else None


def _decode(
    model: type[M],
    values: Sequence[bytes | None],
    offsets: IntArray,
    checks: Callable[[pa.Table, Sequence[bytes]], tuple[npt.NDArray[np.bool_], FloatArray]],
    body: bytes | None = None,
) -> tuple[
    IntArray,
    FloatArray,
    pa.Table | None,
    npt.NDArray[np.intp],
    list[M],
    list[int],
    list[tuple[int, str]],
]:
    n = len(values)
    if body is None:
        candidates, body = _candidates(values)
        chosen: list[bytes] = [values[i] for i in candidates]  # type: ignore[misc]
    else:
        candidates, chosen = list(range(n)), values  # type: ignore[assignment]
    table = _read(body, len(chosen)) if chosen else None
    fast_in = np.zeros(n, dtype=np.bool_)
    ts_all = np.full(n, math.nan)
    if table is not None:
        ok, ts = checks(table, chosen)
        index = np.asarray(candidates, dtype=np.intp)
        fast_in[index[ok]] = True
        ts_all[index[ok]] = ts[ok]
        table = table.filter(pa.array(ok)) if not ok.all() else table
        if table.num_rows == 0:
            table = None
    events: list[M] = []
    slow_in: list[int] = []
    bad: list[tuple[int, str]] = []
    for i in np.flatnonzero(~fast_in).tolist():
        try:
            event = decode(model, values[i])
        except Exception as exc:  # any decoding failure is the message's fault
            bad.append((i, f"{type(exc).__name__}: {exc}"))
            continue
        events.append(event)
        slow_in.append(i)
        ts_all[i] = event.timestamp.timestamp()
    good = np.flatnonzero(fast_in | np.isin(np.arange(n), slow_in))
    position = np.full(n, -1, dtype=np.intp)
    position[good] = np.arange(good.size)
    fast = position[np.flatnonzero(fast_in)]
    return (
        offsets[good],
        ts_all[good],
        table,
        fast,
        events,
        position[np.asarray(slow_in, dtype=np.intp)].tolist(),
        bad,
    )


def _decode_batch(
    batch_type: type[B],
    model: Any,
    checks: Any,
    values: Sequence[bytes | None],
    offsets: IntArray,
    body: bytes | None,
) -> tuple[B, list[tuple[int, str]]]:
    good, ts, table, fast, events, slow, bad = _decode(model, values, offsets, checks, body)
    batch = batch_type(
        offsets=good,
        ts=ts,
        table=table,
        fast=fast,
        events=events,
        slow=np.asarray(slow, dtype=np.intp),
    )
    return batch, bad


def decode_predictions(
    values: Sequence[bytes | None], offsets: IntArray, *, body: bytes | None = None
) -> tuple[PredictionBatch, list[tuple[int, str]]]:
    """The valid predictions (one event per value) as a batch, and (index, reason) of every
    invalid one. ``body``: the values joined by newlines, when each is one compact object."""
    return _decode_batch(
        PredictionBatch, PredictionEvent, _prediction_checks, values, offsets, body
    )


def decode_outcomes(
    values: Sequence[bytes | None], offsets: IntArray, *, body: bytes | None = None
) -> tuple[OutcomeBatch, list[tuple[int, str]]]:
    """The valid outcomes as a batch, and (index, reason) of every invalid one."""
    return _decode_batch(OutcomeBatch, OutcomeEvent, _outcome_checks, values, offsets, body)


@dataclass(slots=True)
class PartitionBatch:
    """One stream partition's new records of a polled batch."""

    predictions: PredictionBatch | None = None
    outcomes: OutcomeBatch | None = None
    seen: dict[str, int] = field(default_factory=dict)
    """Next offset per topic after every record of the batch (dead-lettered ones included)."""


def decode_records(
    records: Sequence[Record],
    topics: Topics,
    start: Callable[[str, int], int | None],
) -> tuple[dict[int, PartitionBatch], list[tuple[Record, str]]]:
    """Split a polled batch by stream partition and decode it.

    ``start(topic, partition)`` is the first offset not yet applied (None: skip the partition);
    records below it were covered by a checkpoint and are redeliveries. A record may hold
    several events (``shared.bus.framing``): each carries the record's offset. Returns the
    batches and the undecodable events with the reason, each as a record: the original, or
    for an event of a framed record a copy whose value is that event's line.
    """
    runs: dict[tuple[str, int], list[Record]] = {}
    for record in records:
        runs.setdefault((record.topic, record.partition), []).append(record)
    batches: dict[int, PartitionBatch] = {}
    bad: list[tuple[Record, str]] = []
    for (topic, partition), run in runs.items():
        if topic not in (topics.predictions, topics.outcomes):
            continue
        first = start(topic, partition)
        if first is None:
            continue
        if run[0].offset < first:
            run = [r for r in run if r.offset >= first]
        if not run:
            continue
        batch = batches.setdefault(partition, PartitionBatch())
        batch.seen[topic] = max(batch.seen.get(topic, 0), max(r.offset for r in run) + 1)
        found = _events([r.value for r in run])
        offsets = np.fromiter((r.offset for r in run), dtype=np.int64, count=len(run))
        if found.counts is not None:
            offsets = np.repeat(offsets, found.counts)
        if topic == topics.predictions:
            batch.predictions, failed = decode_predictions(found.values, offsets, body=found.body)
        else:
            batch.outcomes, failed = decode_outcomes(found.values, offsets, body=found.body)
        if found.counts is None:
            bad.extend((run[i], reason) for i, reason in failed)
        elif failed:
            ends: IntArray = np.cumsum(np.asarray(found.counts, dtype=np.int64))
            for i, reason in failed:
                record = run[int(np.searchsorted(ends, i, side="right"))]
                line = found.values[i]
                if line is not record.value:
                    record = replace(record, value=line)
                bad.append((record, reason))
    return batches, bad
