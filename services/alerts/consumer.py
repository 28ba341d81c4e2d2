"""Applying evaluations to the nonconformity records, one transaction per batch.

The hot path is SQLAlchemy Core, not the ORM. What a batch reads (processed ids, window
verdicts, alert counters, the open records of its fingerprints, and when needed inhibitions,
silences, last closed records, the occurrences a revision or a late inhibition touches) is
loaded with one IN query per table; the batch is then decided in memory, evaluation by
evaluation in order, and its writes go out at the end as one executemany statement per table
(processed ids, verdicts, counters, records, occurrences, inhibitions, log entries, outbox
rows). The caller commits; the StreamWorker commits the offsets only after that, so a batch is
applied exactly once. A redelivered evaluation (same id) or an older-or-equal revision of a
window already judged changes nothing, so replaying the whole evaluations topic changes nothing.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from psycopg.types.array import ListBinaryDumper
from sqlalchemy import (
    JSON,
    BindParameter,
    ColumnElement,
    Connection,
    Table,
    and_,
    any_,
    bindparam,
    case,
    cast,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import aliased
from sqlalchemy.types import NullType
from sqlmodel import Session

from shared.contracts import (
    EvaluationResult,
    EvaluationStatus,
    NonconformityChange,
    NonconformityChanged,
    Objective,
    Severity,
    encode,
)
from shared.outbox import OutboxMessage

from .crud import DEFAULT_DUE_DAYS, log_row
from .models import (
    AlertState,
    Inhibition,
    LogEntry,
    LogHead,
    Nonconformity,
    Occurrence,
    ProcessedEvaluation,
    ReferenceCounter,
    Silence,
    WindowVerdict,
)
from .semantics import (
    GENESIS,
    AlertCounters,
    Decision,
    RevisionEffect,
    State,
    decide,
    fingerprint,
    inhibits,
    is_performance_metric,
    revision_effect,
    silence_matches,
)

__all__ = ["ACTOR", "apply_batch", "apply_evaluation"]

ACTOR = "alerts"
"""The actor of the decisions the service takes by itself."""


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


PROCESSED = _table(ProcessedEvaluation)
VERDICT = _table(WindowVerdict)
COUNTERS = _table(AlertState)
RECORD = _table(Nonconformity)
OCCURRENCE = _table(Occurrence)
INHIBITION = _table(Inhibition)
SILENCE = _table(Silence)
REFERENCE = _table(ReferenceCounter)
HEAD = _table(LogHead)
LOG = _table(LogEntry)
OUTBOX = _table(OutboxMessage)

_RECORD_COLUMNS = (
    "id", "fingerprint", "system_id", "objective_id", "objective_version", "metric",
    "severity", "status", "open", "condition_cleared", "occurrences", "last_evaluation_id",
    "last_value", "reference", "classification", "owner", "review_evidence", "closed_at",
    "updated_at",
)  # fmt: skip
"""What the consumer reads of an open record."""
_BEFORE_ACTIONS = (State.RAISED.value, State.TRIAGED.value, State.CONTAINED.value)
"""States in which a record has no corrective action yet, so its review evidence cannot be
watching the objective: the consumer does not read (parse) the evidence of those records."""
_VERDICT_CHANGES = (
    "evaluation_id", "revision", "status", "system_id", "objective_id", "objective_version",
    "window_end", "value", "threshold",
)  # fmt: skip
_OCCURRENCE_CHANGES = ("evaluation_id", "revision", "value", "withdrawn")


class _Array(list[Any]):
    """A list psycopg sends as one binary PostgreSQL array parameter (its dumper is registered
    on the batch's connection): psycopg's text array dumper quotes every element through a
    regular expression, which cost more than the rest of a batch's writes."""


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _verdict(fp: str, result: EvaluationResult) -> dict[str, Any]:
    """A window verdict row, with what the evidence charts draw (the metric per window)."""
    return {
        "fingerprint": fp,
        "window_start": result.window_start,
        "evaluation_id": result.id,
        "revision": result.revision,
        "status": result.status.value,
        "system_id": result.system_id,
        "objective_id": result.objective_id,
        "objective_version": result.objective_version,
        "window_end": result.window_end,
        "value": result.value,
        "threshold": result.threshold,
    }


def snapshot(record: dict[str, Any]) -> dict[str, Any]:
    """What the log keeps of a record before and after a change (as crud.snapshot)."""
    return {
        "reference": record["reference"],
        "status": record["status"],
        "classification": record["classification"],
        "occurrences": record["occurrences"],
        "condition_cleared": record["condition_cleared"],
        "owner": record["owner"],
        "open": record["open"],
    }


def apply_evaluation(
    *,
    session: Session,
    result: EvaluationResult,
    objective: Objective | None,
    topic: str,
    due_days: dict[str, int] | None = None,
) -> NonconformityChanged | None:
    """Apply one evaluation and commit; the last record change it made, if any."""
    changes = apply_batch(
        session=session, items=[(result, objective)], topic=topic, due_days=due_days
    )
    session.commit()
    return changes[-1] if changes else None


def apply_batch(
    *,
    session: Session,
    items: Sequence[tuple[EvaluationResult, Objective | None]],
    topic: str,
    due_days: dict[str, int] | None = None,
) -> list[NonconformityChanged]:
    """Apply evaluations (each with its objective, None if unknown) in order, in the session's
    transaction; the caller commits. Returns the record changes (also in the outbox)."""
    session.flush()  # the caller's pending ORM writes, before reading with Core
    batch = _Batch(session.connection(), topic, due_days or DEFAULT_DUE_DAYS)
    batch.prefetch([result for result, _ in items])
    for (result, objective), fp in zip(items, batch.prints, strict=True):
        batch.apply(result, objective, fp)
    batch.write()
    return batch.changes


@functools.cache
def _record_template() -> dict[str, Any]:
    """Every column of a new record with its default (built once: constructing the SQLModel
    object costs more than the rest of a raise)."""
    return Nonconformity(
        id="",
        fingerprint="",
        system_id="",
        objective_id="",
        objective_version=0,
        metric="",
        severity="",
        first_evaluation_id="",
        last_evaluation_id="",
        threshold=0.0,
        comparator="",
    ).model_dump()


@dataclass(slots=True)
class _Writes:
    """What a batch writes at its end, one statement per list."""

    processed: list[dict[str, Any]] = field(default_factory=list)
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    verdict_updates: dict[tuple[str, datetime], dict[str, Any]] = field(default_factory=dict)
    counters: set[str] = field(default_factory=set)
    records: dict[str, None] = field(default_factory=dict)
    """Ids of the records raised in this batch (inserted whole, in order)."""
    changed: dict[str, set[str]] = field(default_factory=dict)
    """The columns this batch changed on each stored record (only those are written back)."""
    occurrences: list[dict[str, Any]] = field(default_factory=list)
    occurrence_updates: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Stored occurrences changed, by id: their new values."""
    inhibitions: list[dict[str, Any]] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)


class _Batch:
    def __init__(self, conn: Connection, topic: str, due_days: dict[str, int]) -> None:
        self.conn = conn
        self.topic = topic
        self.due_days = due_days
        self.changes: list[NonconformityChanged] = []
        self.writes = _Writes()
        self.results: list[EvaluationResult] = []
        self.prints: list[str] = []
        """The fingerprint of each result, computed once."""
        self.postgres = conn.dialect.name == "postgresql"
        if self.postgres:
            driver = conn.connection.driver_connection
            assert driver is not None
            driver.adapters.register_dumper(_Array, ListBinaryDumper)
        self.now = datetime.now(UTC)
        """When the batch is applied (the processing time of its evaluations)."""
        self.processed: set[str] = set()
        self.verdicts: dict[tuple[str, datetime], dict[str, Any]] = {}
        self.stored_verdicts: set[tuple[str, datetime]] = set()
        self.counters: dict[str, AlertCounters] = {}
        self.stored_counters: set[str] = set()
        self.records: dict[str, dict[str, Any]] = {}
        """Open records by id (and the ones this batch closed), as dicts of their columns."""
        self.open: dict[str, str | None] = {}
        """The open record id of each fingerprint this batch knows."""
        self.occurrences: dict[tuple[str, datetime], dict[str, Any]] = {}
        """Occurrences not withdrawn, by (record id, window start): the ones revisions of this
        batch may touch (prefetched) and the ones it added."""
        self.raising: dict[tuple[str, datetime], list[str]] = {}
        """Records by (system, window start) of the occurrence that raised them, for late
        inhibitions: the ones this batch raised and the stored candidates."""
        self.known_occurrences: set[int] = set()
        """Ids of the stored occurrences loaded (a later load must not undo a withdrawal)."""
        self.inhibitions: dict[tuple[str, datetime], dict[str, Any]] | None = None
        self.silences: list[dict[str, Any]] | None = None
        self.closed: dict[str, str] | None = None
        self.head: tuple[int, str] | None = None
        self.head_stored = False
        self.references: dict[int, int] = {}
        self.stored_references: set[int] = set()

    # --- reads: one query per table for the whole batch ------------------------------------

    def _in(self, column: Any, values: Iterable[Any]) -> ColumnElement[bool]:
        """``column IN values``: on PostgreSQL ``= ANY(array)``, one parameter whatever the
        number of values (the statement stays the same, so it is compiled and parsed once)."""
        if self.postgres:
            member: ColumnElement[bool] = column == any_(
                cast(self._array(values), ARRAY(column.type))
            )
            return member
        in_: ColumnElement[bool] = column.in_(list(values))
        return in_

    def prefetch(self, results: Sequence[EvaluationResult]) -> None:
        self.results = list(results)
        self.prints = [fingerprint(r.system_id, r.objective_id, r.parameters) for r in results]
        prints = set(self.prints)
        starts = {r.window_start for r in results}
        conn = self.conn
        self.processed = set(
            conn.execute(
                select(PROCESSED.c.evaluation_id).where(
                    self._in(PROCESSED.c.evaluation_id, {r.id for r in results})
                )
            ).scalars()
        )
        for row in conn.execute(
            select(VERDICT).where(
                self._in(VERDICT.c.fingerprint, prints), self._in(VERDICT.c.window_start, starts)
            )
        ).mappings():
            key = (row["fingerprint"], _utc(row["window_start"]))
            self.verdicts[key] = dict(row)
            self.stored_verdicts.add(key)
        for print_, breaches, passes in conn.execute(
            select(
                COUNTERS.c.fingerprint,
                COUNTERS.c.consecutive_breaches,
                COUNTERS.c.consecutive_passes,
            ).where(self._in(COUNTERS.c.fingerprint, prints))
        ).all():
            self.counters[print_] = AlertCounters(breaches, passes)
            self.stored_counters.add(print_)
        self.open = dict.fromkeys(prints)
        self._load_records(
            and_(self._in(RECORD.c.fingerprint, prints), RECORD.c.open == True)  # noqa: E712
        )
        self._prefetch_revised()

    def _load_records(self, where: Any) -> list[str]:
        loaded = []
        columns = [RECORD.c[name] for name in _RECORD_COLUMNS if name != "review_evidence"]
        evidence = case(  # only records that may have actions carry evidence to read
            (RECORD.c.status.in_(_BEFORE_ACTIONS), None), else_=RECORD.c.review_evidence
        ).label("review_evidence")
        for row in self.conn.execute(select(*columns, evidence).where(where)).mappings():
            if row["id"] in self.records:
                continue
            record = dict(row)
            record["review_evidence"] = dict(record["review_evidence"] or {})
            self.records[record["id"]] = record
            self.open[record["fingerprint"]] = record["id"]
            loaded.append(record["id"])
        return loaded

    def _prefetch_revised(self) -> None:
        """The open records' occurrences of the windows this batch revises."""
        if not self.stored_verdicts:
            return
        revised = [
            (r, fp)
            for r, fp in zip(self.results, self.prints, strict=True)
            if (fp, _utc(r.window_start)) in self.stored_verdicts
        ]
        records = {self.open.get(fp) for _, fp in revised} - {None}
        if records:
            self._load_occurrences(
                and_(
                    self._in(OCCURRENCE.c.nonconformity_id, records),
                    self._in(OCCURRENCE.c.window_start, {r.window_start for r, _ in revised}),
                )
            )

    def _load_occurrences(self, where: Any) -> None:
        """Stored occurrences not withdrawn (the ones already loaded keep their state here)."""
        for row in self.conn.execute(
            select(OCCURRENCE).where(where, OCCURRENCE.c.withdrawn == False)  # noqa: E712
        ).mappings():
            if row["id"] in self.known_occurrences:
                continue
            self.known_occurrences.add(row["id"])
            key = (row["nonconformity_id"], _utc(row["window_start"]))
            self.occurrences[key] = dict(row)

    def _inhibitions(self) -> dict[tuple[str, datetime], dict[str, Any]]:
        """Inhibitions of the batch's system windows (loaded when first needed), and the
        records raised by a window that this batch inhibits for the first time."""
        if self.inhibitions is not None:
            return self.inhibitions
        self.inhibitions = {}
        systems = {r.system_id for r in self.results}
        starts = {r.window_start for r in self.results}
        for row in self.conn.execute(
            select(INHIBITION).where(
                self._in(INHIBITION.c.system_id, systems),
                self._in(INHIBITION.c.window_start, starts),
            )
        ).mappings():
            self.inhibitions[(row["system_id"], _utc(row["window_start"]))] = dict(row)
        late = {
            (r.system_id, _utc(r.window_start))
            for r in self.results
            if inhibits(r.status, r.metric)
            and (r.system_id, _utc(r.window_start)) not in self.inhibitions
        }
        if late:
            self._prefetch_raising(late)
        return self.inhibitions

    def _prefetch_raising(self, windows: set[tuple[str, datetime]]) -> None:
        """Stored open records of these systems whose first occurrence is in these windows:
        the raises an inhibition arriving now would have held back."""
        earlier = aliased(OCCURRENCE)
        first = ~exists().where(
            earlier.c.nonconformity_id == OCCURRENCE.c.nonconformity_id,
            earlier.c.id < OCCURRENCE.c.id,
        )
        rows = self.conn.execute(
            select(OCCURRENCE.c.id, OCCURRENCE.c.nonconformity_id, OCCURRENCE.c.window_start)
            .join(RECORD, RECORD.c.id == OCCURRENCE.c.nonconformity_id)
            .where(
                RECORD.c.open == True,  # noqa: E712
                self._in(RECORD.c.system_id, {system for system, _ in windows}),
                self._in(OCCURRENCE.c.window_start, {start for _, start in windows}),
                first,
            )
        ).all()
        ids = {record_id for _, record_id, _ in rows}
        missing = ids - set(self.records)
        if missing:
            self._load_records(self._in(RECORD.c.id, missing))
        if rows:
            self._load_occurrences(
                self._in(OCCURRENCE.c.id, {occurrence for occurrence, _, _ in rows})
            )
        for _, record_id, start in rows:
            key = (self.records[record_id]["system_id"], _utc(start))
            if key in windows and record_id not in self.raising.get(key, []):
                self.raising.setdefault(key, []).append(record_id)

    def _silences(self) -> list[dict[str, Any]]:
        if self.silences is None:
            ends = [r.window_end for r in self.results]
            self.silences = [
                dict(row)
                for row in self.conn.execute(
                    select(SILENCE).where(
                        SILENCE.c.starts_at <= max(ends), SILENCE.c.expires_at > min(ends)
                    )
                ).mappings()
            ]
        return self.silences

    def _last_closed(self, fp: str) -> str | None:
        if self.closed is None:
            self.closed = {}
            for print_, record_id in self.conn.execute(
                select(RECORD.c.fingerprint, RECORD.c.id)
                .where(
                    self._in(RECORD.c.fingerprint, set(self.prints)),
                    RECORD.c.status == State.CLOSED.value,
                )
                .order_by(RECORD.c.closed_at)
            ).all():
                self.closed[print_] = record_id  # ordered by closing time: the last one wins
        return self.closed.get(fp)

    def _reference(self, year: int) -> str:
        if year not in self.references:
            last = self.conn.execute(
                select(REFERENCE.c.last).where(REFERENCE.c.year == year).with_for_update()
            ).scalar()
            if last is not None:
                self.stored_references.add(year)
            self.references[year] = last or 0
        self.references[year] += 1
        return f"NC-{year}-{self.references[year]:04d}"

    # --- one evaluation ---------------------------------------------------------------------

    def apply(self, result: EvaluationResult, objective: Objective | None, fp: str) -> None:
        if result.id in self.processed:
            return
        self.processed.add(result.id)
        self.writes.processed.append({"evaluation_id": result.id, "processed_at": self.now})
        _Step(self, result, objective, fp).run()

    # --- the writes, one statement per table --------------------------------------------------

    def write(self) -> None:
        conn, writes = self.conn, self.writes
        self._insert(PROCESSED, writes.processed)
        self._insert(VERDICT, writes.verdicts)
        self._update(
            VERDICT,
            ("fingerprint", "window_start"),
            [
                {"fingerprint": fp, "window_start": start, **verdict}
                for (fp, start), verdict in writes.verdict_updates.items()
            ],
        )
        self._write_counters()
        if writes.records:
            conn.execute(insert(RECORD), [self.records[i] for i in writes.records])
        by_columns: dict[tuple[str, ...], list[str]] = {}
        for record_id, changed in writes.changed.items():
            by_columns.setdefault(tuple(sorted(changed)), []).append(record_id)
        for names, ids in by_columns.items():  # one statement per set of changed columns
            self._update(
                RECORD, ("id",), [{"id": i, **{n: self.records[i][n] for n in names}} for i in ids]
            )
        self._update(  # before the inserts: a window withdrawn, then added again
            OCCURRENCE,
            ("id",),
            [
                {"id": i, **{n: values[n] for n in _OCCURRENCE_CHANGES}}
                for i, values in writes.occurrence_updates.items()
            ],
        )
        self._insert(OCCURRENCE, writes.occurrences)
        self._insert(INHIBITION, writes.inhibitions)
        self._write_references()
        if writes.log:
            assert self.head is not None
            self._insert(LOG, writes.log)
            seq, digest = self.head
            if self.head_stored:
                conn.execute(update(HEAD).where(HEAD.c.id == 1).values(seq=seq, hash=digest))
            else:
                conn.execute(insert(HEAD).values(id=1, seq=seq, hash=digest))
        self._insert(OUTBOX, writes.outbox)

    @staticmethod
    def _array(values: Iterable[Any]) -> BindParameter[Any]:
        """One binary array parameter (PostgreSQL), its elements as they are."""
        return bindparam(None, _Array(values), type_=NullType())

    def _unnest(self, table: Table, rows: list[dict[str, Any]]) -> Any:
        """``SELECT CAST(unnest(array) AS <column type>), ...``: the rows as one array parameter
        per column (JSON values serialised here, as the JSON type would)."""
        columns = []
        for name in rows[0]:
            type_ = table.c[name].type
            values = [row[name] for row in rows]
            if isinstance(type_, JSON):
                values = [orjson.dumps(value).decode() for value in values]
            array = cast(self._array(values), ARRAY(type_))  # typed even when all NULL
            columns.append(func.unnest(array, type_=type_).label(name))
        return select(*columns)

    def _insert(self, table: Table, rows: list[dict[str, Any]]) -> None:
        """One statement: on PostgreSQL ``INSERT ... SELECT unnest(...)`` (a parameter per
        column whatever the number of rows: cheaper to send and to execute than one INSERT per
        row), elsewhere an executemany."""
        if not rows:
            return
        if self.postgres:
            self.conn.execute(insert(table).from_select(list(rows[0]), self._unnest(table, rows)))
        else:
            self.conn.execute(insert(table), rows)

    def _update(self, table: Table, keys: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
        """Set each row's other columns on the row of ``table`` its ``keys`` name: on
        PostgreSQL one ``UPDATE ... FROM (SELECT unnest(...)) AS v``, elsewhere an executemany."""
        if not rows:
            return
        names = [name for name in rows[0] if name not in keys]
        if self.postgres:
            v = self._unnest(table, rows).subquery("v")
            self.conn.execute(
                update(table)
                .where(*(table.c[key] == v.c[key] for key in keys))
                .values({name: v.c[name] for name in names})
            )
            return
        self.conn.execute(
            update(table)
            .where(*(table.c[key] == bindparam(f"k_{key}") for key in keys))
            .values({name: bindparam(f"v_{name}") for name in names}),
            [
                {**{f"k_{key}": row[key] for key in keys}, **{f"v_{n}": row[n] for n in names}}
                for row in rows
            ],
        )

    def _write_counters(self) -> None:
        if self.postgres:  # one upsert for the stored and the new counters
            rows = [
                {
                    "fingerprint": fp,
                    "consecutive_breaches": self.counters[fp].consecutive_breaches,
                    "consecutive_passes": self.counters[fp].consecutive_passes,
                }
                for fp in self.writes.counters
            ]
            if rows:
                upsert = pg_insert(COUNTERS).from_select(
                    list(rows[0]), self._unnest(COUNTERS, rows)
                )
                self.conn.execute(
                    upsert.on_conflict_do_update(
                        index_elements=[COUNTERS.c.fingerprint],
                        set_={
                            "consecutive_breaches": upsert.excluded.consecutive_breaches,
                            "consecutive_passes": upsert.excluded.consecutive_passes,
                        },
                    )
                )
            return
        stored: list[dict[str, Any]] = []
        new: list[dict[str, Any]] = []
        for fp in self.writes.counters:
            counters = self.counters[fp]
            row = {
                "fingerprint": fp,
                "consecutive_breaches": counters.consecutive_breaches,
                "consecutive_passes": counters.consecutive_passes,
            }
            (stored if fp in self.stored_counters else new).append(row)
        self._update(COUNTERS, ("fingerprint",), stored)
        self._insert(COUNTERS, new)

    def _write_references(self) -> None:
        for year, last in self.references.items():
            if year in self.stored_references:
                self.conn.execute(
                    update(REFERENCE).where(REFERENCE.c.year == year).values(last=last)
                )
            else:
                self.conn.execute(insert(REFERENCE).values(year=year, last=last))

    # --- what steps write ----------------------------------------------------------------------

    def append(self, kind: str, subject: str, before: object, after: object) -> None:
        """One hash-chained log entry; the head row is locked by the first append of the
        batch (SELECT ... FOR UPDATE on PostgreSQL) until the commit."""
        if self.head is None:
            stored = self.conn.execute(
                select(HEAD.c.seq, HEAD.c.hash).where(HEAD.c.id == 1).with_for_update()
            ).first()
            self.head_stored = stored is not None
            self.head = (stored.seq, stored.hash) if stored is not None else (0, GENESIS)
        seq, previous = self.head
        row = log_row(
            seq=seq + 1,
            prev_hash=previous,
            actor=ACTOR,
            kind=kind,
            subject=subject,
            before=before,
            after=after,
        )
        self.writes.log.append(row)
        self.head = (row["seq"], row["hash"])

    def publish(
        self, record: dict[str, Any], change: NonconformityChange, evaluation_id: str
    ) -> None:
        message = NonconformityChanged(
            nonconformity_id=record["id"],
            fingerprint=record["fingerprint"],
            system_id=record["system_id"],
            objective_id=record["objective_id"],
            objective_version=record["objective_version"],
            severity=Severity(record["classification"]),
            status=record["status"],
            change=change,
            occurrences=record["occurrences"],
            evaluation_id=evaluation_id,
            occurred_at=datetime.now(UTC),
        )
        self.writes.outbox.append(
            {
                "service": "alerts",
                "topic": self.topic,
                "key": record["id"].encode(),
                "value": encode(message),
                "created_at": datetime.now(UTC),
            }
        )
        self.changes.append(message)

    def touch(self, record: dict[str, Any], *columns: str) -> None:
        """Mark columns of a record changed (written back at the end of the batch)."""
        if record["id"] not in self.writes.records:
            self.writes.changed.setdefault(record["id"], set()).update(columns)

    def add_occurrence(self, record: dict[str, Any], result: EvaluationResult) -> None:
        occurrence = {
            "nonconformity_id": record["id"],
            "evaluation_id": result.id,
            "objective_version": result.objective_version,
            "window_start": result.window_start,
            "window_end": result.window_end,
            "revision": result.revision,
            "value": result.value,
            "withdrawn": False,
            "recorded_at": datetime.now(UTC),
        }
        self.writes.occurrences.append(occurrence)
        self.occurrences[(record["id"], _utc(result.window_start))] = occurrence

    def change_occurrence(self, occurrence: dict[str, Any], **changes: Any) -> None:
        """Change an occurrence: a stored one is updated by id at the end, a new one is
        inserted as it is then."""
        occurrence.update(changes)
        if occurrence.get("id") is not None:
            self.writes.occurrence_updates[occurrence["id"]] = occurrence
        if occurrence["withdrawn"]:
            del self.occurrences[(occurrence["nonconformity_id"], _utc(occurrence["window_start"]))]


class _Step:
    """One evaluation against the batch's state."""

    def __init__(
        self, batch: _Batch, result: EvaluationResult, objective: Objective | None, fp: str
    ) -> None:
        self.batch = batch
        self.result = result
        self.objective = objective
        self.print = fp
        self.window = _utc(result.window_start)
        self.key = (self.print, self.window)
        self.system_window = (result.system_id, self.window)

    def _open(self) -> dict[str, Any] | None:
        record_id = self.batch.open.get(self.print)
        return self.batch.records[record_id] if record_id is not None else None

    def run(self) -> None:
        result, batch = self.result, self.batch
        inhibition = None
        if inhibits(result.status, result.metric):
            inhibitions = batch._inhibitions()
            if self.system_window not in inhibitions:
                inhibition = {
                    "system_id": result.system_id,
                    "window_start": result.window_start,
                    "evaluation_id": result.id,
                    "reason": f"{result.metric} {result.status.value}",
                }
                inhibitions[self.system_window] = inhibition
                batch.writes.inhibitions.append(inhibition)
        self._judge()
        if inhibition is not None:  # after the verdict: a revision withdraws as a revision
            self._withdraw_inhibited_raises(inhibition)

    def _judge(self) -> None:
        result, batch = self.result, self.batch
        verdict = batch.verdicts.get(self.key)
        if verdict is None:
            verdict = _verdict(self.print, result)
            batch.verdicts[self.key] = verdict
            batch.writes.verdicts.append(verdict)
            self._new_window()
            self._effectiveness_evidence()
            return
        effect = revision_effect(
            applied_revision=verdict["revision"],
            applied_status=EvaluationStatus(verdict["status"]),
            revision=result.revision,
            status=result.status,
        )
        if effect is RevisionEffect.IGNORE:
            return
        newer = _verdict(self.print, result)
        verdict.update(newer)
        if self.key in batch.stored_verdicts:
            batch.writes.verdict_updates[self.key] = {
                name: newer[name] for name in _VERDICT_CHANGES
            }
        self._revision(effect)

    # --- a window seen for the first time ---------------------------------------------------

    def _new_window(self) -> None:
        result, batch, objective = self.result, self.batch, self.objective
        counters = batch.counters.get(self.print)
        if counters is None:
            counters = batch.counters[self.print] = AlertCounters()
        record = self._open()
        decision = decide(
            counters,
            result.status,
            open_nonconformity=record is not None,
            condition_cleared=record["condition_cleared"] if record is not None else False,
            pending_windows=objective.pending_windows if objective else 1,
            clearing_windows=objective.clearing_windows if objective else 1,
        )
        batch.writes.counters.add(self.print)
        if decision is Decision.RAISE:
            self._raise(by_revision=False)
        elif decision is Decision.OCCURRENCE and record is not None:
            self._occurrence(record, by_revision=False)
        elif decision is Decision.CLEAR and record is not None:
            before = snapshot(record)
            record.update(
                condition_cleared=True,
                last_evaluation_id=result.id,
                updated_at=datetime.now(UTC),
            )
            batch.touch(record, "condition_cleared", "last_evaluation_id", "updated_at")
            self._log("cleared", record, before, {"passing_windows": counters.consecutive_passes})
            batch.publish(record, NonconformityChange.CLEARED, result.id)

    def _effectiveness_evidence(self) -> None:
        """Attach this window to the review evidence of a record whose actions are all
        implemented: met for ``needed`` consecutive windows, or breached again."""
        result = self.result
        if result.status not in (EvaluationStatus.PASS, EvaluationStatus.BREACH):
            return
        record = self._open()
        if record is None or record["review_evidence"].get("status") != "watching":
            return
        evidence = dict(record["review_evidence"])
        if self.window < datetime.fromisoformat(str(evidence["since"])):
            return
        before = dict(evidence)
        window = {
            "evaluation_id": result.id,
            "window_start": self.window.isoformat(),
            "status": result.status.value,
            "value": result.value,
        }
        evidence["windows"] = [*evidence["windows"], window]
        if result.status is EvaluationStatus.BREACH:
            evidence.update(status="breached", breached=True)
        else:
            evidence["consecutive_met"] = int(evidence["consecutive_met"]) + 1
            if evidence["consecutive_met"] >= int(evidence["needed"]):
                evidence["status"] = "met"
        record["review_evidence"] = evidence
        self.batch.touch(record, "review_evidence")
        if evidence["status"] != "watching":
            self.batch.append(
                "effectiveness_evidence", record["id"], {"status": before["status"]}, evidence
            )

    # --- revisions and late inhibitions -------------------------------------------------------

    def _revision(self, effect: RevisionEffect) -> None:
        result, batch = self.result, self.batch
        record = self._open()
        occurrence = (
            batch.occurrences.get((record["id"], self.window)) if record is not None else None
        )
        if effect is RevisionEffect.SAME:
            if occurrence is not None:  # newer evidence for the same verdict
                batch.change_occurrence(
                    occurrence,
                    evaluation_id=result.id,
                    revision=result.revision,
                    value=result.value,
                )
            return
        if effect is RevisionEffect.NOW_BREACH:
            if record is not None:
                self._occurrence(record, by_revision=True)
            elif self._pending_met():
                self._raise(by_revision=True)
            return
        # NO_LONGER_BREACH: withdraw that window's occurrence
        if record is None or occurrence is None:
            return
        self._withdraw(
            record,
            occurrence,
            {
                "window_start": self.window.isoformat(),
                "evaluation_id": result.id,
                "revision": result.revision,
            },
            why="its only breach was revised",
            evidence=True,
        )

    def _withdraw_inhibited_raises(self, inhibition: dict[str, Any]) -> None:
        """An inhibition arriving after a performance raise of the same system window: had it
        come first the raise would have been held back, so the occurrence that raised the
        record is withdrawn, and the record with it when that was its only breach and nobody
        has triaged it (results do not depend on the order evaluations arrive in)."""
        batch = self.batch
        for record_id in batch.raising.pop(self.system_window, []):
            record = batch.records[record_id]
            occurrence = batch.occurrences.get((record_id, self.window))
            if not record["open"] or occurrence is None:
                continue
            if not is_performance_metric(record["metric"]):
                continue
            self._withdraw(
                record,
                occurrence,
                {
                    "window_start": self.window.isoformat(),
                    "by_evaluation": inhibition["evaluation_id"],
                    "because": inhibition["reason"],
                },
                why="the window that raised it was inhibited by a later evaluation",
                evidence=False,
            )

    def _withdraw(
        self,
        record: dict[str, Any],
        occurrence: dict[str, Any],
        detail: dict[str, object],
        *,
        why: str,
        evidence: bool,
    ) -> None:
        batch = self.batch
        before = snapshot(record)
        batch.change_occurrence(occurrence, withdrawn=True)
        record["occurrences"] = max(record["occurrences"] - 1, 0)
        record["updated_at"] = datetime.now(UTC)
        if record["occurrences"] == 0 and record["status"] == State.RAISED.value:
            record.update(status=State.WITHDRAWN.value, open=False, closed_at=record["updated_at"])
            if batch.open.get(record["fingerprint"]) == record["id"]:
                batch.open[record["fingerprint"]] = None
            batch.touch(record, "status", "open", "closed_at")
            kind, change = "withdrawn", NonconformityChange.STATUS_CHANGED
            detail = {**detail, "why": why}
        else:
            kind, change = "occurrence_withdrawn", NonconformityChange.OCCURRENCE
        batch.touch(record, "occurrences", "updated_at")
        self._log(kind, record, before, detail, evidence=evidence)
        batch.publish(record, change, self.result.id)

    def _pending_met(self) -> bool:
        """A window revised into a breach raises when it ends a run of pending breaches (the
        earlier verdicts: one query, overlaid with the ones this batch judged)."""
        pending = self.objective.pending_windows if self.objective else 1
        if pending <= 1:
            return True
        earlier = {
            _utc(start): status
            for start, status in self.batch.conn.execute(
                select(VERDICT.c.window_start, VERDICT.c.status)
                .where(VERDICT.c.fingerprint == self.print, VERDICT.c.window_start < self.window)
                .order_by(VERDICT.c.window_start.desc())
                .limit(pending - 1)
            ).all()
        }
        for (fp, start), verdict in self.batch.verdicts.items():
            if fp == self.print and start < self.window:
                earlier[start] = verdict["status"]
        last = [earlier[start] for start in sorted(earlier, reverse=True)[: pending - 1]]
        return len(last) == pending - 1 and all(s == "breach" for s in last)

    # --- effects ------------------------------------------------------------------------------

    def _suppressed(self, severity: str) -> tuple[str, dict[str, object]] | None:
        """Why a raise is held back: an inhibition of the system's window, or a silence."""
        result = self.result
        if is_performance_metric(result.metric):
            inhibition = self.batch._inhibitions().get(self.system_window)
            if inhibition is not None:
                return "raise_inhibited", {
                    "by_evaluation": inhibition["evaluation_id"],
                    "because": inhibition["reason"],
                }
        labels = {
            "system_id": result.system_id,
            "objective_id": result.objective_id,
            "metric": result.metric,
            "severity": severity,
        }
        at = _utc(result.window_end)
        for silence in self.batch._silences():
            if _utc(silence["starts_at"]) <= at < _utc(silence["expires_at"]) and silence_matches(
                silence["matchers"], labels
            ):
                return "raise_silenced", {"silence_id": silence["id"], "reason": silence["reason"]}
        return None

    def _raise(self, *, by_revision: bool) -> None:
        result, batch, objective = self.result, self.batch, self.objective
        severity = (objective.severity if objective else Severity.MINOR).value
        suppressed = self._suppressed(severity)
        if suppressed is not None:
            kind, why = suppressed
            batch.append(kind, f"fingerprint:{self.print}", None, {**self._evidence(), **why})
            return
        now = datetime.now(UTC)
        record = {
            **_record_template(),
            "id": uuid.uuid4().hex,
            "fingerprint": self.print,
            "system_id": result.system_id,
            "objective_id": result.objective_id,
            "objective_version": result.objective_version,
            "metric": result.metric,
            "severity": severity,
            "classification": severity,
            "first_evaluation_id": result.id,
            "last_evaluation_id": result.id,
            "last_value": result.value,
            "threshold": result.threshold,
            "comparator": result.comparator.value,
            "reference": batch._reference(now.year),
            "title": f"{result.system_id}: {result.objective_id} ({result.metric}) breached",
            "owner": objective.owner if objective else None,
            "due_at": now + timedelta(days=self.batch.due_days[severity]),
            "recurrence_of": batch._last_closed(self.print),
            "contributing_causes": [],
            "review_evidence": {},
            "raised_at": now,
            "updated_at": now,
        }
        batch.records[record["id"]] = record
        batch.writes.records[record["id"]] = None
        batch.open[self.print] = record["id"]
        batch.add_occurrence(record, result)
        batch.raising.setdefault(self.system_window, []).append(record["id"])
        self._log(
            "raised",
            record,
            None,
            {"by_revision": by_revision, "recurrence_of": record["recurrence_of"]},
        )
        batch.publish(record, NonconformityChange.RAISED, result.id)

    def _occurrence(self, record: dict[str, Any], *, by_revision: bool) -> None:
        result, batch = self.result, self.batch
        before = snapshot(record)
        record.update(
            occurrences=record["occurrences"] + 1,
            condition_cleared=False,
            last_evaluation_id=result.id,
            last_value=result.value,
            updated_at=datetime.now(UTC),
        )
        batch.touch(
            record,
            "occurrences",
            "condition_cleared",
            "last_evaluation_id",
            "last_value",
            "updated_at",
        )
        batch.add_occurrence(record, result)
        self._log("occurrence", record, before, {"by_revision": by_revision})
        batch.publish(record, NonconformityChange.OCCURRENCE, result.id)

    def _evidence(self) -> dict[str, object]:
        result = self.result
        return {
            "evaluation_id": result.id,
            "system_id": result.system_id,
            "objective_id": result.objective_id,
            "objective_version": result.objective_version,
            "window_start": self.window.isoformat(),
            "window_end": _utc(result.window_end).isoformat(),
            "revision": result.revision,
            "value": result.value,
        }

    def _log(
        self,
        kind: str,
        record: dict[str, Any],
        before: dict[str, object] | None,
        extra: dict[str, object],
        *,
        evidence: bool = True,
    ) -> None:
        after = {**snapshot(record), **(self._evidence() if evidence else {}), **extra}
        self.batch.append(kind, record["id"], before, after)
