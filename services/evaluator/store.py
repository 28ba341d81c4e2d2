"""The evaluator's durable state in its database: join rows, checkpoints, evaluations.

The join state is two tables: ``evaluator_join`` (one row per prediction, with a labelled flag)
and ``evaluator_waiting`` (outcomes whose prediction has not come yet, usually few). One
connection holds one open transaction from the first batch after a checkpoint to the next
checkpoint: join rows, evaluations and their outbox records written by the batches in between
become durable together with the window state and the consumed offsets, or not at all.
The hot statements (join inserts, lookups, labels) go straight to the driver, one statement
per chunk of rows (on SQLite a multi-row ``INSERT ... VALUES``; on PostgreSQL they are
copied); the rest use SQLAlchemy Core.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain
from typing import Any, NamedTuple

import psycopg
from sqlalchemy import Connection, Table, bindparam, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import SQLModel

from shared.contracts import EvaluationResult, encode
from shared.db import Database
from shared.outbox import OutboxMessage

from .errors import Fenced
from .models import (
    EvaluationRow,
    JoinRow,
    LabelWindowCheckpoint,
    PartitionCheckpoint,
    WaitingOutcome,
    WindowCheckpoint,
)

__all__ = ["TABLES", "Claim", "EvaluatorStore", "Fenced", "JoinInfo", "Waiting"]

TABLES = [
    JoinRow,
    WaitingOutcome,
    PartitionCheckpoint,
    WindowCheckpoint,
    LabelWindowCheckpoint,
    EvaluationRow,
    OutboxMessage,
]

CHUNK = 5_000
SQLITE_CACHE_KIB = 128 * 1024

_LABEL_IN = "UPDATE evaluator_join SET labelled = 1 WHERE system_id = ? AND event_id IN ({})"
_LABEL_ALL = "UPDATE evaluator_join SET labelled = TRUE WHERE system_id = %s AND event_id = ANY(%s)"
_JOIN_COLUMNS = (
    "system_id",
    "event_id",
    "ts",
    "arrival_wm",
    "prediction",
    "scores",
    "attributes",
    "pred_partition",
    "pred_offset",
    "labelled",
)
_WAITING_COLUMNS = (
    "system_id",
    "prediction_id",
    "ts",
    "actual",
    "label_time",
    "out_partition",
    "out_offset",
)
_COPY_TYPES = {
    "evaluator_join": [
        "varchar",
        "varchar",
        "float8",
        "float8",
        "text",
        "text",
        "text",
        "int4",
        "int8",
        "bool",
    ],
    "evaluator_waiting": ["varchar", "varchar", "float8", "text", "float8", "int4", "int8"],
}
"""PostgreSQL types of the join tables' columns, in ``_JOIN_COLUMNS`` / ``_WAITING_COLUMNS``
order (a binary COPY sends them as they are)."""
_LOOKUP = (
    "SELECT event_id, labelled, ts, arrival_wm, pred_partition, pred_offset, prediction, "
    "scores, attributes FROM evaluator_join WHERE system_id = ? AND event_id IN ({})"
)
_LABEL_RETURNING = (
    "UPDATE evaluator_join j SET labelled = TRUE "
    "FROM unnest(%s::text[], %s::float8[]) AS u(id, label_time) "
    "WHERE j.system_id = %s AND j.event_id = u.id AND NOT j.labelled "
    "AND u.label_time <= j.ts + %s "
    "RETURNING j.event_id, FALSE, j.ts, j.arrival_wm, j.pred_partition, j.pred_offset, "
    "j.prediction, j.scores, j.attributes"
)
_NOT_FROM = " AND NOT (pred_partition = ? AND pred_offset >= ?)"
_WAITING = (
    "SELECT prediction_id, ts, actual, label_time, out_partition, out_offset "
    "FROM evaluator_waiting WHERE system_id = ? AND prediction_id IN ({})"
)
_WAITING_IDS = "SELECT prediction_id FROM evaluator_waiting WHERE system_id = ?"
_TAKE_WAITING_IN = "DELETE FROM evaluator_waiting WHERE system_id = ? AND prediction_id IN ({})"
_TAKE_ALL_WAITING = "DELETE FROM evaluator_waiting WHERE system_id = %s AND prediction_id = ANY(%s)"
_COUNT_WAITING = "SELECT count(*) FROM evaluator_waiting WHERE system_id = ? AND ts < ?"
_PURGE_WAITING = "DELETE FROM evaluator_waiting WHERE system_id = ? AND ts < ?"
_PURGE = "DELETE FROM evaluator_join WHERE system_id = ? AND ts < ?"


ANALYZE_WAITING_ROWS = 1_000
"""Waiting outcomes filed at once from which PostgreSQL's statistics of the table are renewed."""

SQLITE_MAX_ROWS = 4_096
"""Most rows one SQLite insert statement carries (fewer if the variable limit says so)."""


def _sqlite_sizes(n: int, most: int) -> Iterator[int]:
    """Statement sizes for ``n`` rows: ``most`` while enough are left, then powers of two, so
    that few distinct statements are compiled and the driver's statement cache reuses them."""
    while n >= most:
        yield most
        n -= most
    size = 1 << max(n.bit_length() - 1, 0)
    while n:
        if size <= n:
            yield size
            n -= size
        size >>= 1


class JoinInfo(NamedTuple):
    """A prediction's join row, as ``lookup`` reads it."""

    event_id: str
    labelled: bool
    ts: float
    arrival_wm: float | None
    pred_partition: int
    pred_offset: int
    prediction: str
    scores: str | None
    attributes: str | None


class Waiting(NamedTuple):
    """An outcome that came before its prediction."""

    prediction_id: str
    ts: float
    actual: str
    label_time: float
    out_partition: int
    out_offset: int


@dataclass(frozen=True, slots=True)
class Claim:
    epoch: int
    offsets: dict[str, int]
    state: dict[str, Any]
    windows: list[tuple[str, int, int, str]]
    """(system_id, size, start, state JSON) of every open window."""


def _table(name: str) -> Table:
    return SQLModel.metadata.tables[name]


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class EvaluatorStore:
    def __init__(self, db: Database, *, stream: str) -> None:
        self._db = db
        self.stream = stream
        self._conn: Connection | None = None
        self._postgres = db.engine.dialect.name == "postgresql"
        self._variables: int | None = None
        self._staged: set[str] = set()
        """Stage tables created on the current connection (PostgreSQL temp tables)."""

    # --- the open transaction ------------------------------------------------------------

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            self._conn = self._db.engine.connect()
            if not self._postgres:  # the join state's recent pages stay in memory
                self._conn.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        return self._conn

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self._postgres else sql

    def commit(self) -> None:
        if self._conn is not None:
            self._conn.commit()

    def rollback(self) -> None:
        if self._conn is not None:
            try:
                self._conn.rollback()
            finally:
                self._conn.close()
                self._conn = None
                self._staged.clear()

    def close(self) -> None:
        self.rollback()

    # --- partitions ----------------------------------------------------------------------

    def claim(self, partition: int) -> Claim:
        """Take the partition over: bump its epoch (fencing the previous owner), load it.

        Normally in a transaction of its own, committed at once. On SQLite while this store's
        transaction is open (a partition loaded between two checkpoints) a second connection
        would wait for this one's write lock: the claim then joins the open transaction and is
        committed with the next checkpoint (SQLite has one writer, so no other instance writes
        before that either)."""
        if not self._postgres and self._conn is not None and self._conn.in_transaction():
            return self._claim(self._conn, partition)
        with self._db.engine.connect() as conn:
            claim = self._claim(conn, partition)
            conn.commit()
        return claim

    def _claim(self, conn: Connection, partition: int) -> Claim:
        table = _table("evaluator_partition")
        key = (table.c.stream == self.stream) & (table.c.partition == partition)
        fresh = (postgresql_insert if self._postgres else sqlite_insert)(table).values(
            stream=self.stream,
            partition=partition,
            epoch=1,
            offsets={},
            state={},
            updated_at=datetime.now(UTC),
        )
        bumped = conn.execute(update(table).where(key).values(epoch=table.c.epoch + 1)).rowcount
        if not bumped and not conn.execute(fresh.on_conflict_do_nothing()).rowcount:
            # another instance created the row meanwhile: take it over from that one
            conn.execute(update(table).where(key).values(epoch=table.c.epoch + 1))
        row = conn.execute(select(table.c.epoch, table.c.offsets, table.c.state).where(key)).one()
        wt = _table("evaluator_window")
        windows = conn.execute(
            select(wt.c.system_id, wt.c.size, wt.c.start, wt.c.state).where(
                (wt.c.stream == self.stream) & (wt.c.partition == partition)
            )
        ).all()
        return Claim(
            epoch=int(row.epoch),
            offsets={str(k): int(v) for k, v in (row.offsets or {}).items()},
            state=dict(row.state or {}),
            windows=[(w.system_id, int(w.size), int(w.start), w.state) for w in windows],
        )

    def save_partition(
        self,
        partition: int,
        *,
        epoch: int,
        offsets: dict[str, int],
        state: dict[str, Any],
        windows: Sequence[tuple[str, int, int, str]],
        closed: Sequence[tuple[str, int, int]],
    ) -> None:
        """Checkpoint (inside the open transaction); raises Fenced if the epoch moved on."""
        table = _table("evaluator_partition")
        saved = self.conn.execute(
            update(table)
            .where(
                (table.c.stream == self.stream)
                & (table.c.partition == partition)
                & (table.c.epoch == epoch)
            )
            .values(offsets=offsets, state=state, updated_at=datetime.now(UTC))
        ).rowcount
        if saved != 1:
            raise Fenced(partition, epoch)
        self._replace_windows(_table("evaluator_window"), partition, windows, closed)

    def _replace_windows(
        self,
        table: Table,
        partition: int,
        windows: Sequence[tuple[str, int, int, str]],
        gone: Sequence[tuple[str, int, int]],
    ) -> None:
        """Delete the ``gone`` windows and the old rows of ``windows``, then insert ``windows``
        (system, size, start, state), one statement each."""
        keys = [*gone, *((s, size, start) for s, size, start, _ in windows)]
        if keys:
            self.conn.execute(
                delete(table).where(
                    (table.c.stream == self.stream)
                    & (table.c.partition == partition)
                    & (table.c.system_id == bindparam("k_system_id"))
                    & (table.c.size == bindparam("k_size"))
                    & (table.c.start == bindparam("k_start"))
                ),
                [{"k_system_id": s, "k_size": size, "k_start": start} for s, size, start in keys],
            )
        if windows:
            self.conn.execute(
                insert(table),
                [
                    {
                        "stream": self.stream,
                        "partition": partition,
                        "system_id": s,
                        "size": size,
                        "start": start,
                        "state": text,
                    }
                    for s, size, start, text in windows
                ],
            )

    # --- the join ------------------------------------------------------------------------

    def _cursor(self) -> Any:
        """A driver cursor inside the open transaction (plain tuples, no SQLAlchemy rows)."""
        conn = self.conn
        if not conn.in_transaction():
            conn.begin()
        return conn.connection.cursor()

    def _insert(self, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> int:
        """Insert rows, skipping those whose key is taken; returns how many were new.

        SQLite: thousands of rows per ``INSERT ... VALUES`` statement, stepped once with the
        GIL released (``executemany`` takes the GIL back for every row). PostgreSQL: COPY."""
        if not rows:
            return 0
        if self._postgres:
            return self._copy_insert(table, columns, rows)
        cursor = self._cursor()
        most = max(1, min(SQLITE_MAX_ROWS, self._variable_limit() // len(columns)))
        one = "(" + ", ".join("?" * len(columns)) + ")"
        head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
        tail = " ON CONFLICT DO NOTHING"
        changed = start = 0
        for size in _sqlite_sizes(len(rows), most):
            chunk = rows[start : start + size]
            start += size
            cursor.execute(head + ", ".join([one] * size) + tail, list(chain.from_iterable(chunk)))
            changed += max(cursor.rowcount, 0)
        return changed

    def _ids_per_statement(self, other_parameters: int) -> int:
        """Ids per ``IN (...)`` statement on SQLite, within its variable limit."""
        return max(1, min(CHUNK, self._variable_limit() - other_parameters))

    def _variable_limit(self) -> int:
        """SQLite's most ``?`` per statement on this connection (999 before SQLite 3.32)."""
        if self._variables is None:
            raw = self.conn.connection.dbapi_connection
            self._variables = int(raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))  # type: ignore[union-attr]
        return self._variables

    def _copy_insert(
        self, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
    ) -> int:
        """PostgreSQL: COPY the rows straight into the table (binary) inside a savepoint, the
        common case where no key is taken; if one is (a duplicate), back to the savepoint and
        the stage path. Returns how many were new."""
        cursor = self._cursor()
        names = ", ".join(columns)
        types = _COPY_TYPES[table]
        savepoint = self.conn.connection.dbapi_connection.transaction  # type: ignore[union-attr]
        statement = f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)"
        try:
            with savepoint(), cursor.copy(statement) as copy:
                copy.set_types(types)
                for row in rows:
                    copy.write_row(row)
        except psycopg.errors.UniqueViolation:
            return self._stage_insert(table, columns, rows)
        return len(rows)

    def _stage_insert(
        self, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
    ) -> int:
        """PostgreSQL: COPY the rows into a session stage table, then one set-based
        ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``; returns how many were new."""
        stage = f"wk_stage_{table}"
        cursor = self._cursor()
        if stage not in self._staged:
            cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table})")
            self._staged.add(stage)
        cursor.execute(f"TRUNCATE {stage}")
        names = ", ".join(columns)
        with cursor.copy(f"COPY {stage} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute(
            f"INSERT INTO {table} ({names}) SELECT {names} FROM {stage} ON CONFLICT DO NOTHING"
        )
        return max(int(cursor.rowcount), 0)

    def _where_in(self, postgres: str, sqlite: str, system_id: str, ids: Sequence[str]) -> None:
        """One statement per chunk of ids: an array parameter on PostgreSQL, ``IN (...)`` on
        SQLite (one statement over the whole chunk is cheaper than ``executemany``)."""
        if not ids:
            return
        cursor = self._cursor()
        if self._postgres:
            cursor.execute(postgres, (system_id, list(ids)))
            return
        for chunk in _chunks(ids, self._ids_per_statement(1)):
            cursor.execute(sqlite.format(", ".join("?" * len(chunk))), (system_id, *chunk))

    def insert_predictions(self, rows: Sequence[tuple[Any, ...]]) -> int:
        """Insert prediction rows; returns how many were new (the rest conflicted)."""
        return self._insert("evaluator_join", _JOIN_COLUMNS, rows)

    def _select(
        self, sql: str, system_id: str, ids: Sequence[str], extra: tuple[Any, ...] = ()
    ) -> list[tuple[Any, ...]]:
        cursor = self._cursor()
        rows: list[tuple[Any, ...]] = []
        if self._postgres:  # one array parameter instead of thousands
            cursor.execute(
                self._sql(sql.format("SELECT unnest(?::text[])")), (system_id, list(ids), *extra)
            )
            return list(cursor.fetchall())
        for chunk in _chunks(ids, self._ids_per_statement(1 + len(extra))):
            cursor.execute(
                self._sql(sql.format(", ".join("?" * len(chunk)))), (system_id, *chunk, *extra)
            )
            rows.extend(cursor.fetchall())
        return rows

    def lookup(
        self, system_id: str, event_ids: Sequence[str], *, not_from: tuple[int, int] | None = None
    ) -> dict[str, JoinInfo]:
        """The predictions of these ids; with ``not_from=(partition, offset)``, only those not
        written by predictions of that partition from that offset on (a batch's conflicts)."""
        if not_from is None:
            rows = self._select(_LOOKUP, system_id, event_ids)
        else:
            rows = self._select(_LOOKUP + _NOT_FROM, system_id, event_ids, not_from)
        return {row[0]: JoinInfo._make(row) for row in rows}

    def join_outcomes(
        self, system_id: str, event_ids: Sequence[str], label_times: Sequence[float], horizon: float
    ) -> dict[str, JoinInfo]:
        """The predictions of these ids, as they were (``labelled`` before this call); marks
        labelled those not labelled yet whose outcome's label time is within ``horizon`` of
        them. On PostgreSQL one ``UPDATE ... RETURNING`` finds and marks the usual case and a
        lookup reads the rest (already labelled, expired, not there); elsewhere a lookup,
        then the update."""
        if not event_ids:
            return {}
        if not self._postgres:
            found = self.lookup(system_id, event_ids)
            self.label(
                system_id,
                [
                    i
                    for i, at in zip(event_ids, label_times, strict=True)
                    if (info := found.get(i)) is not None
                    and not info.labelled
                    and at <= info.ts + horizon
                ],
            )
            return found
        cursor = self._cursor()
        cursor.execute(_LABEL_RETURNING, (list(event_ids), list(label_times), system_id, horizon))
        found = {row[0]: JoinInfo._make(row) for row in cursor.fetchall()}
        if len(found) < len(event_ids):
            found.update(self.lookup(system_id, [i for i in event_ids if i not in found]))
        return found

    def label(self, system_id: str, event_ids: Sequence[str]) -> None:
        """Mark the system's predictions ``event_ids`` as labelled."""
        self._where_in(_LABEL_ALL, _LABEL_IN, system_id, event_ids)

    def waiting(self, system_id: str, prediction_ids: Sequence[str]) -> dict[str, Waiting]:
        """Outcomes already waiting for these predictions."""
        rows = self._select(_WAITING, system_id, prediction_ids)
        return {row[0]: Waiting._make(row) for row in rows}

    def waiting_ids(self, system_id: str) -> list[str]:
        """The prediction ids the system's waiting outcomes wait for."""
        cursor = self._cursor()
        cursor.execute(self._sql(_WAITING_IDS), (system_id,))
        return [row[0] for row in cursor.fetchall()]

    def insert_waiting(self, rows: Sequence[tuple[Any, ...]]) -> int:
        """File outcomes whose prediction has not come; returns how many were new.

        On PostgreSQL a large filing is followed by ``ANALYZE``: the table often starts
        empty, and a planner that thinks so matches each id against every waiting row (a
        nested loop over a sequential scan, quadratic: 3.3 s of 4.2 in a replay)."""
        new = self._insert("evaluator_waiting", _WAITING_COLUMNS, rows)
        if self._postgres and new >= ANALYZE_WAITING_ROWS:
            self._cursor().execute("ANALYZE evaluator_waiting")
        return new

    def take_waiting(self, system_id: str, prediction_ids: Sequence[str]) -> None:
        """Forget the system's waiting outcomes once their predictions came."""
        self._where_in(_TAKE_ALL_WAITING, _TAKE_WAITING_IN, system_id, prediction_ids)

    def purge(self, system_id: str, before: float) -> int:
        """Forget join rows older than ``before``; returns outcomes whose prediction never came."""
        cursor = self._cursor()
        cursor.execute(self._sql(_COUNT_WAITING), (system_id, before))
        waiting = cursor.fetchone()[0]
        cursor.execute(self._sql(_PURGE_WAITING), (system_id, before))
        cursor.execute(self._sql(_PURGE), (system_id, before))
        return int(waiting or 0)

    # --- label windows -------------------------------------------------------------------

    def load_labels(self, partition: int, system_id: str, size: int, start: int) -> str | None:
        t = _table("evaluator_label_window")
        found: str | None = self.conn.execute(
            select(t.c.state).where(
                (t.c.stream == self.stream)
                & (t.c.partition == partition)
                & (t.c.system_id == system_id)
                & (t.c.size == size)
                & (t.c.start == start)
            )
        ).scalar()
        return found

    def save_labels(
        self,
        partition: int,
        *,
        windows: Sequence[tuple[str, int, int, str]],
        gone: Sequence[tuple[str, int, int]],
    ) -> None:
        """Write label windows (system, size, start, state) and delete others (in the open
        transaction, with the checkpoint)."""
        self._replace_windows(_table("evaluator_label_window"), partition, windows, gone)

    def purge_labels(self, partition: int, system_id: str, before: float) -> None:
        """Delete label windows that ended before ``before`` (no label can reach them)."""
        t = _table("evaluator_label_window")
        self.conn.execute(
            delete(t).where(
                (t.c.stream == self.stream)
                & (t.c.partition == partition)
                & (t.c.system_id == system_id)
                & (t.c.start + t.c.size <= before)
            )
        )

    # --- evaluations ---------------------------------------------------------------------

    def add_results(
        self, results: Sequence[tuple[EvaluationResult, int, int | None]], *, topic: str
    ) -> None:
        """Store evaluations and their outbox records ((result, size, label cut-off) each)."""
        if not results:
            return
        now = datetime.now(UTC)
        self.conn.execute(
            insert(_table("evaluator_evaluation")),
            [
                {
                    "id": r.id,
                    "system_id": r.system_id,
                    "objective_id": r.objective_id,
                    "objective_version": r.objective_version,
                    "window_start": r.window_start,
                    "window_end": r.window_end,
                    "window_s": int(r.window_start.timestamp()),
                    "size": size,
                    "revision": r.revision,
                    "label_cutoff": cutoff,
                    "status": r.status.value,
                    "value": r.value,
                    "payload": r.model_dump(mode="json"),
                }
                for r, size, cutoff in results
            ],
        )
        self.conn.execute(
            insert(_table("outbox_message")),
            [
                {
                    "service": "evaluator",
                    "topic": topic,
                    "key": r.system_id.encode(),
                    "value": encode(r),
                    "created_at": now,
                }
                for r, _, _ in results
            ],
        )
