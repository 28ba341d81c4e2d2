"""Reference datasets: validate an uploaded CSV or Parquet file and profile it, in bounded memory.

The upload is already on disk. :func:`validate_to_parquet` streams it batch by batch (pyarrow's
streaming CSV reader, single-threaded so a malformed line has a line number; or
``ParquetFile.iter_batches``), checks every column against the system's schema and writes the
columns the profile needs, normalised (numbers as float64, categories as their string keys,
booleans as bool), to a Parquet copy that is kept as the stored reference data. Problems are
collected per column (first bad row, its value, the reason, how many rows are bad) and refused
together. :func:`profile_parquet` then builds the :class:`ReferenceProfile` from that copy with
:mod:`.profiling`, which reads it again for exact quantiles.

Rows are numbered from 1 = the first data row (a CSV's header is not a row).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from shared.contracts import FeatureSpec, FeatureType, Task
from shared.stats._common import FloatArray, category_keys
from shared.stats.estimation import (
    MAX_FIT_ROWS,
    PerformanceReference,
    build_performance_reference,
)
from shared.stats.reference import DEFAULT_BINS, DEFAULT_SAMPLE_SIZE, ReferenceProfile

from .errors import ColumnProblem, ProfileProblem, ReferenceInvalid
from .profiling import (
    COLLECT_BUDGET,
    CategoricalSummary,
    NumericSummary,
    column_distribution,
    numeric_references,
    with_distribution,
)

__all__ = [
    "ColumnProblem",
    "ColumnRule",
    "ReferenceFormat",
    "ReferenceInvalid",
    "ValidatedReference",
    "plan_columns",
    "profile_parquet",
    "validate_to_parquet",
]

ReferenceFormat = Literal["csv", "parquet"]
Kind = Literal["numeric", "categorical", "boolean"]

CSV_BLOCK_BYTES = 1 << 20
PARQUET_BATCH_ROWS = 65_536
RELEASE_EVERY = 8
MAX_COUNTED = 1_000_000_000
_NUMBER = (
    r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
    r"|^[+-]?([Ii][Nn][Ff]([Ii][Nn][Ii][Tt][Yy])?|[Nn][Aa][Nn])$"
)
_TRUE = ["true", "t", "yes", "y", "1"]
_FALSE = ["false", "f", "no", "n", "0"]
_ARROW_TYPES: dict[Kind, pa.DataType] = {
    "numeric": pa.float64(),
    "categorical": pa.string(),
    "boolean": pa.bool_(),
}


@dataclass(frozen=True, slots=True)
class ColumnRule:
    """What one column of a reference file must hold."""

    name: str
    kind: Kind
    role: Literal["feature", "prediction", "score", "target"]
    required: bool = True
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] | None = None
    label: str | None = None
    """The class label of a score column."""


@dataclass(frozen=True, slots=True)
class ValidatedReference:
    path: Path
    n_rows: int
    columns: tuple[ColumnRule, ...]
    """The rules of the columns present (and stored)."""


def plan_columns(
    *,
    features: Sequence[FeatureSpec],
    task: Task,
    classes: Sequence[str] | None,
    score_classes: Sequence[str],
    prediction_column: str,
    target_column: str | None = None,
) -> list[ColumnRule]:
    """Every feature is required; the prediction, ``score_<class>`` and target (the outcomes)
    columns are optional."""
    kinds: dict[FeatureType, Kind] = {
        FeatureType.NUMERIC: "numeric",
        FeatureType.CATEGORICAL: "categorical",
        FeatureType.BOOLEAN: "boolean",
    }
    rules = [
        ColumnRule(
            name=f.name,
            kind=kinds[f.type],
            role="feature",
            nullable=f.nullable,
            min=f.min,
            max=f.max,
            categories=tuple(f.categories) if f.categories is not None else None,
        )
        for f in features
    ]
    if task is Task.REGRESSION:
        rules.append(
            ColumnRule(name=prediction_column, kind="numeric", role="prediction", required=False)
        )
    else:
        rules.append(
            ColumnRule(
                name=prediction_column,
                kind="categorical",
                role="prediction",
                required=False,
                categories=tuple(classes) if classes else None,
            )
        )
    rules.extend(
        ColumnRule(
            name=f"score_{label}",
            kind="numeric",
            role="score",
            required=False,
            min=0.0,
            max=1.0,
            label=label,
        )
        for label in score_classes
    )
    if target_column is not None:
        regression = task is Task.REGRESSION
        rules.append(
            ColumnRule(
                name=target_column,
                kind="numeric" if regression else "categorical",
                role="target",
                required=False,
                nullable=True,
                categories=tuple(classes) if classes and not regression else None,
            )
        )
    return rules


class _Checker:
    """One column's running problem report across batches."""

    def __init__(self, rule: ColumnRule) -> None:
        self.rule = rule
        self.problem: ColumnProblem | None = None

    def flag(self, offset: int, bad: npt.NDArray[np.bool_], reason: str, raw: pa.Array) -> None:
        """Record rows where ``bad`` holds (rows ``offset + 1 ...``) for ``reason``."""
        n_bad = int(np.count_nonzero(bad))
        if n_bad == 0:
            return
        index = int(np.argmax(bad))
        row = offset + index + 1
        if self.problem is None:
            value = raw[index].as_py()
            self.problem = ColumnProblem(
                self.rule.name, reason, row, None if value is None else str(value)[:200]
            )
        elif self.problem.first_bad_row is not None and row < self.problem.first_bad_row:
            value = raw[index].as_py()
            self.problem.first_bad_row, self.problem.reason = row, reason
            self.problem.value = None if value is None else str(value)[:200]
        self.problem.bad_rows = min(self.problem.bad_rows + n_bad, MAX_COUNTED)

    def column_error(self, reason: str) -> None:
        self.problem = ColumnProblem(self.rule.name, reason)


# Conversions between Arrow and numpy at the buffer level: pyarrow's own (``pa.array``,
# ``to_numpy``) import pandas on first use, 36 MB the registry process does not otherwise need.


def _valid(array: pa.Array) -> npt.NDArray[np.bool_]:
    """True where the array holds a value (not null)."""
    bitmap = array.buffers()[0]
    if bitmap is None or array.null_count == 0:
        return np.ones(len(array), dtype=np.bool_)
    bits = np.unpackbits(
        np.frombuffer(bitmap, dtype=np.uint8), bitorder="little", count=array.offset + len(array)
    )
    return bits[array.offset :].astype(np.bool_)


def _mask(array: pa.Array) -> npt.NDArray[np.bool_]:
    """A boolean array as numpy, nulls as False."""
    bits = np.unpackbits(
        np.frombuffer(array.buffers()[1], dtype=np.uint8),
        bitorder="little",
        count=array.offset + len(array),
    )
    values = bits[array.offset :].astype(np.bool_)
    return values & _valid(array) if array.null_count else values


def _floats(array: pa.Array) -> FloatArray:
    """Numbers as float64, NaN for nulls."""
    if not pa.types.is_float64(array.type):
        array = pc.cast(array, pa.float64())
    data = np.frombuffer(array.buffers()[1], dtype=np.float64, count=array.offset + len(array))[
        array.offset :
    ]
    return np.where(_valid(array), data, np.nan) if array.null_count else data


def _validity(missing: npt.NDArray[np.bool_] | None) -> pa.Buffer | None:
    if missing is None or not missing.any():
        return None
    return pa.py_buffer(np.packbits(~missing, bitorder="little"))


def _arrow_floats(values: FloatArray, missing: npt.NDArray[np.bool_] | None) -> pa.Array:
    data = np.ascontiguousarray(values, dtype=np.float64)
    return pa.Array.from_buffers(pa.float64(), data.size, [_validity(missing), pa.py_buffer(data)])


def _arrow_bools(values: npt.NDArray[np.bool_], missing: npt.NDArray[np.bool_]) -> pa.Array:
    data = pa.py_buffer(np.packbits(values, bitorder="little"))
    return pa.Array.from_buffers(pa.bool_(), values.size, [_validity(missing), data])


def _strings(items: Sequence[str | None]) -> pa.Array:
    encoded = [b"" if item is None else item.encode() for item in items]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    missing = np.fromiter((item is None for item in items), dtype=np.bool_, count=len(items))
    buffers = [_validity(missing), pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    return pa.Array.from_buffers(pa.string(), len(items), buffers)


def _parse_numbers(raw: pa.Array) -> tuple[pa.Array, npt.NDArray[np.bool_]]:
    """Strings to float64; returns the numbers (null where unparsable) and the unparsable mask."""
    try:
        return pc.cast(raw, pa.float64()), np.zeros(len(raw), dtype=np.bool_)
    except pa.ArrowInvalid:
        pass
    looks = pc.match_substring_regex(raw, _NUMBER)  # null where raw is null
    bad = ~_mask(looks) & _valid(raw)
    try:
        numbers = pc.cast(pc.if_else(looks, raw, pa.nulls(len(raw), pa.string())), pa.float64())
    except pa.ArrowInvalid:  # the pattern let through something arrow refuses: go one by one
        values = np.full(len(raw), np.nan)
        for i in range(len(raw)):
            try:
                values[i] = _floats(pc.cast(raw.slice(i, 1), pa.float64()))[0]
            except pa.ArrowInvalid:
                bad[i] = True
        numbers = _arrow_floats(values, np.isnan(values))
    return numbers, bad


def _numeric(check: _Checker, raw: pa.Array, offset: int) -> pa.Array:
    rule = check.rule
    kind = raw.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        numbers, unparsable = _parse_numbers(raw.cast(pa.string()))
        check.flag(offset, unparsable, "not a number", raw)
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        numbers, unparsable = pc.cast(raw, pa.float64()), np.zeros(len(raw), dtype=np.bool_)
    elif pa.types.is_null(kind):
        numbers, unparsable = pa.nulls(len(raw), pa.float64()), np.zeros(len(raw), dtype=np.bool_)
    else:
        check.column_error(f"has type {kind}; a numeric column needs numbers")
        return pa.nulls(len(raw), pa.float64())
    x = _floats(numbers)
    missing = np.isnan(x) & ~unparsable
    if not rule.nullable:
        check.flag(offset, missing, "missing value in a column that is not nullable", raw)
    check.flag(offset, np.isinf(x), "not a finite number", raw)
    with np.errstate(invalid="ignore"):
        if rule.min is not None:
            check.flag(offset, x < rule.min, f"below the allowed minimum {rule.min:g}", raw)
        if rule.max is not None:
            check.flag(offset, x > rule.max, f"above the allowed maximum {rule.max:g}", raw)
    x = np.where(np.isfinite(x), x, np.nan)
    return _arrow_floats(x, np.isnan(x))


def _category_strings(check: _Checker, raw: pa.Array) -> pa.Array | None:
    kind = raw.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return raw.cast(pa.string())
    if pa.types.is_integer(kind):
        return pc.cast(raw, pa.string())
    if pa.types.is_boolean(kind):
        return pc.take(_strings(["False", "True"]), pc.cast(raw, pa.int8()))
    if pa.types.is_floating(kind):
        keys, missing = category_keys(_floats(raw))
        return _strings([None if m else k for k, m in zip(keys.tolist(), missing, strict=True)])
    if pa.types.is_null(kind):
        return pa.nulls(len(raw), pa.string())
    check.column_error(f"has type {kind}; a categorical column needs text, integers or booleans")
    return None


def _categorical(check: _Checker, raw: pa.Array, offset: int) -> pa.Array:
    rule = check.rule
    if pa.types.is_dictionary(raw.type):
        raw = raw.dictionary_decode()
    keys = _category_strings(check, raw)
    if keys is None:
        return pa.nulls(len(raw), pa.string())
    missing = ~_valid(keys)
    if not rule.nullable:
        check.flag(offset, missing, "missing value in a column that is not nullable", raw)
    if rule.categories is not None:
        known = _mask(pc.is_in(keys, value_set=_strings(rule.categories))) | missing
        allowed = ", ".join(rule.categories[:20])
        check.flag(offset, ~known, f"not one of the declared categories ({allowed})", raw)
    return keys


def _boolean(check: _Checker, raw: pa.Array, offset: int) -> pa.Array:
    rule = check.rule
    kind = raw.type
    if pa.types.is_boolean(kind):
        values = raw
        bad = np.zeros(len(raw), dtype=np.bool_)
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind):
        text = pc.utf8_lower(pc.utf8_trim_whitespace(pc.cast(raw, pa.string())))
        is_true = _mask(pc.is_in(text, value_set=_strings(_TRUE)))
        is_false = _mask(pc.is_in(text, value_set=_strings(_FALSE)))
        null = ~_valid(raw)
        bad = ~(is_true | is_false) & ~null
        values = _arrow_bools(is_true, null | bad)
        check.flag(offset, bad, "not a boolean (true/false, yes/no, 1/0)", raw)
    elif pa.types.is_null(kind):
        values, bad = pa.nulls(len(raw), pa.bool_()), np.zeros(len(raw), dtype=np.bool_)
    else:
        check.column_error(f"has type {kind}; a boolean column needs true/false values")
        return pa.nulls(len(raw), pa.bool_())
    if not rule.nullable:
        missing = ~_valid(values) & ~bad
        check.flag(offset, missing, "missing value in a column that is not nullable", raw)
    return values


_CONVERT = {"numeric": _numeric, "categorical": _categorical, "boolean": _boolean}


def _column_names(source: Path, fmt: ReferenceFormat) -> list[str]:
    if fmt == "parquet":
        return list(pq.ParquetFile(source).schema_arrow.names)
    reader = pacsv.open_csv(
        source,
        read_options=pacsv.ReadOptions(block_size=1 << 16, use_threads=False),
        parse_options=pacsv.ParseOptions(invalid_row_handler=lambda _row: "skip"),
        convert_options=pacsv.ConvertOptions(auto_dict_encode=False),
    )
    try:
        return list(reader.schema.names)
    finally:
        reader.close()


@dataclass
class _MalformedRows:
    count: int = 0
    first_line: int | None = None
    detail: str = ""

    def __call__(self, row: Any) -> str:
        self.count += 1
        if self.count == 1:
            self.first_line = row.number
            self.detail = f"expected {row.expected_columns} fields, found {row.actual_columns}"
        return "skip"


def _releasing(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Hand freed Arrow memory back to the system every few batches.

    Arrow's allocator keeps freed pages for reuse; over a 1 GB stream that retention, not the
    data in flight, would dominate the process's resident memory.
    """
    pool = pa.default_memory_pool()
    for number, batch in enumerate(batches, start=1):
        yield batch
        if number % RELEASE_EVERY == 0:
            pool.release_unused()
    pool.release_unused()


def _batches(
    source: Path, fmt: ReferenceFormat, names: list[str], malformed: _MalformedRows
) -> Iterator[pa.RecordBatch]:
    if fmt == "parquet":
        yield from pq.ParquetFile(source, pre_buffer=False, buffer_size=1 << 20).iter_batches(
            batch_size=PARQUET_BATCH_ROWS, columns=names, use_threads=False
        )
        return
    reader = pacsv.open_csv(
        source,
        read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES, use_threads=False),
        parse_options=pacsv.ParseOptions(invalid_row_handler=malformed),
        convert_options=pacsv.ConvertOptions(
            include_columns=names,
            column_types=dict.fromkeys(names, pa.string()),
            strings_can_be_null=True,
        ),
    )
    try:
        yield from reader
    finally:
        reader.close()


def validate_to_parquet(
    source: Path, fmt: ReferenceFormat, rules: Sequence[ColumnRule], out: Path
) -> ValidatedReference:
    """Check ``source`` against ``rules``; write the normalised columns to ``out``.

    Raises :class:`ReferenceInvalid` naming every bad column (then ``out`` is not kept).
    """
    try:
        names = _column_names(source, fmt)
    except (pa.ArrowException, OSError) as exc:
        problem = ColumnProblem("(file)", f"not a readable {fmt} file: {exc}")
        raise ReferenceInvalid([problem]) from exc
    present = [r for r in rules if r.name in names]
    problems = [
        ColumnProblem(r.name, "column is missing from the file")
        for r in rules
        if r.required and r.name not in names
    ]
    duplicates = sorted({n for n in names if names.count(n) > 1 and n in {r.name for r in rules}})
    problems.extend(ColumnProblem(n, "column appears more than once") for n in duplicates)
    if duplicates:
        raise ReferenceInvalid(problems)
    checks = [_Checker(r) for r in present]
    schema = pa.schema([(r.name, _ARROW_TYPES[r.kind]) for r in present])
    malformed = _MalformedRows()
    rows = 0
    try:
        with pq.ParquetWriter(out, schema, compression="zstd") as writer:
            batches = _batches(source, fmt, [r.name for r in present], malformed)
            for batch in _releasing(batches):
                arrays = [_CONVERT[c.rule.kind](c, batch.column(c.rule.name), rows) for c in checks]
                rows += batch.num_rows
                if not problems and all(c.problem is None for c in checks):
                    writer.write_batch(pa.record_batch(arrays, schema=schema))
    except pa.ArrowException as exc:  # unparsable input, or a type arrow cannot convert
        out.unlink(missing_ok=True)
        raise ReferenceInvalid(
            [ColumnProblem("(file)", f"not a readable {fmt} file near row {rows + 1}: {exc}")]
        ) from exc
    problems.extend(c.problem for c in checks if c.problem is not None)
    if malformed.count:
        where = f"line {malformed.first_line}: " if malformed.first_line is not None else ""
        problems.append(
            ColumnProblem(
                "(file)",
                f"{where}{malformed.detail} ({malformed.count} malformed lines)",
                bad_rows=malformed.count,
            )
        )
    if rows == 0:
        problems.append(ColumnProblem("(file)", "the file has no data rows"))
    if problems:
        out.unlink(missing_ok=True)
        raise ReferenceInvalid(problems)
    return ValidatedReference(path=out, n_rows=rows, columns=tuple(present))


def profile_parquet(
    reference: ValidatedReference,
    *,
    n_bins: int = DEFAULT_BINS,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    collect_budget: int = COLLECT_BUDGET,
) -> tuple[ReferenceProfile, int]:
    """The reference profile of a validated file, and how many passes over it that took."""
    profiled = [r for r in reference.columns if r.role != "target"]
    numeric = {
        r.name: NumericSummary(sample_size=sample_size) for r in profiled if r.kind == "numeric"
    }
    categorical = {r.name: CategoricalSummary(r.name) for r in profiled if r.kind != "numeric"}
    by_role = {r.name: r for r in reference.columns}
    file = pq.ParquetFile(reference.path, pre_buffer=False, buffer_size=1 << 20)
    for batch in _releasing(file.iter_batches(batch_size=PARQUET_BATCH_ROWS, use_threads=False)):
        for name, summary in numeric.items():
            summary.update(_floats(batch.column(name)))
        for name, cat in categorical.items():
            column = batch.column(name)
            counts = pc.value_counts(column.drop_null())
            keys = [str(k) for k in counts.field("values").to_pylist()]
            cat.update(keys, counts.field("counts").to_pylist(), column.null_count)

    def read(names: list[str]) -> Iterator[Mapping[str, FloatArray]]:
        batches = file.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=names, use_threads=False)
        for batch in _releasing(batches):
            yield {name: _floats(batch.column(name)) for name in names}

    try:
        numbers, passes = numeric_references(
            numeric, read, n_bins=n_bins, collect_budget=collect_budget
        )
        for name, summary in numeric.items():  # drift reads every value of these
            if by_role[name].role != "score" and summary.count > sample_size:
                values = (batch[name] for batch in read([name]))
                numbers[name] = with_distribution(
                    numbers[name], column_distribution(summary, values)
                )
                passes += 1
        columns = numbers | {name: cat.reference() for name, cat in categorical.items()}
    except ProfileProblem as exc:
        raise ReferenceInvalid([ColumnProblem(exc.column, exc.reason)]) from exc
    profile = ReferenceProfile(
        n_rows=reference.n_rows,
        n_bins=n_bins,
        sample_size=sample_size,
        seed=0,
        features={n: c for n, c in columns.items() if by_role[n].role == "feature"},
        prediction=next((c for n, c in columns.items() if by_role[n].role == "prediction"), None),
        scores={by_role[n].label or n: c for n, c in numbers.items() if by_role[n].role == "score"},
        performance=_performance(reference, file),
    )
    return profile, passes + 1 + (profile.performance is not None)


def _performance(
    reference: ValidatedReference, file: pq.ParquetFile
) -> PerformanceReference | None:
    """Score calibration or the loss model, from a uniform sample of at most ``MAX_FIT_ROWS``
    rows (one more pass), when the file has the target column."""
    rules = {r.role: r for r in reference.columns if r.role in ("target", "prediction")}
    target = rules.get("target")
    if target is None:
        return None
    n = reference.n_rows
    chosen = (
        np.sort(np.random.default_rng(0).choice(n, size=MAX_FIT_ROWS, replace=False))
        if n > MAX_FIT_ROWS
        else None
    )
    parts: dict[str, list[npt.NDArray[Any]]] = {r.name: [] for r in reference.columns}
    start = 0
    batches = file.iter_batches(
        batch_size=PARQUET_BATCH_ROWS, columns=list(parts), use_threads=False
    )
    for batch in _releasing(batches):
        take = None
        if chosen is not None:
            low, high = np.searchsorted(chosen, [start, start + batch.num_rows])
            take = pa.array(chosen[low:high] - start)
        start += batch.num_rows
        for rule in reference.columns:
            column = batch.column(rule.name)
            if take is not None:
                column = column.take(take)
            if rule.kind == "numeric":
                parts[rule.name].append(_floats(column))
            else:  # values as the events carry them, None for nulls
                parts[rule.name].append(_objects(column.to_pylist()))
    values = {name: np.concatenate(chunks) for name, chunks in parts.items()}
    prediction = rules.get("prediction")
    return build_performance_reference(
        target_name=target.name,
        target=values[target.name],
        regression=target.kind == "numeric",
        features={r.name: values[r.name] for r in reference.columns if r.role == "feature"},
        numeric={r.name: r.kind == "numeric" for r in reference.columns if r.role == "feature"},
        prediction=None if prediction is None else values[prediction.name],
        scores={r.label or r.name: values[r.name] for r in reference.columns if r.role == "score"},
    )


def _objects(items: list[Any]) -> npt.NDArray[Any]:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out
