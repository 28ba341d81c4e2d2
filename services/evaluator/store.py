"""The evaluator's durable state in its database: join rows, checkpoints, evaluations.

One connection holds one open transaction from the first batch after a checkpoint to the next
checkpoint: join rows, evaluations and their outbox records written by the batches in between
become durable together with the window state and the consumed offsets, or not at all.
The hot statements (join inserts, lookups, labels) go straight to the driver with
``executemany``; the rest use SQLAlchemy Core.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, Table, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

from shared.contracts import EvaluationResult, encode
from shared.db import Database
from shared.outbox import OutboxMessage

from .models import (
    EvaluationRow,
    JoinRow,
    LabelWindowCheckpoint,
    PartitionCheckpoint,
    WindowCheckpoint,
)

__all__ = ["TABLES", "Claim", "EvaluatorStore", "Fenced", "JoinInfo"]

TABLES = [
    JoinRow,
    PartitionCheckpoint,
    WindowCheckpoint,
    LabelWindowCheckpoint,
    EvaluationRow,
    OutboxMessage,
]

CHUNK = 5_000

_INSERT_PREDICTION = (
    "INSERT INTO evaluator_join (system_id, event_id, ts, has_prediction, arrival_wm, "
    "model_version, prediction, scores, attributes, pred_partition, pred_offset) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (system_id, event_id) DO NOTHING"
)
_FILL_PREDICTION = (
    "UPDATE evaluator_join SET ts = ?, has_prediction = ?, arrival_wm = ?, model_version = ?, "
    "prediction = ?, scores = ?, attributes = ?, pred_partition = ?, pred_offset = ? "
    "WHERE system_id = ? AND event_id = ?"
)
_CLEAR_LABEL = (
    "UPDATE evaluator_join SET actual = NULL, label_time = NULL "
    "WHERE system_id = ? AND event_id = ?"
)
_INSERT_OUTCOME = (
    "INSERT INTO evaluator_join (system_id, event_id, ts, has_prediction, actual, outcome_id, "
    "outcome_ts, label_time, out_partition, out_offset) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (system_id, event_id) DO NOTHING"
)
_LABEL = (
    "UPDATE evaluator_join SET actual = ?, outcome_id = ?, outcome_ts = ?, label_time = ?, "
    "out_partition = ?, out_offset = ? WHERE system_id = ? AND event_id = ?"
)
_LOOKUP = (
    "SELECT event_id, has_prediction, actual, ts, arrival_wm, pred_partition, pred_offset, "
    "label_time, prediction, scores, attributes, outcome_ts, out_partition, out_offset "
    "FROM evaluator_join WHERE system_id = ? AND event_id IN ({})"
)
_COUNT_WAITING = (
    "SELECT count(*) FROM evaluator_join WHERE system_id = ? AND ts < ? AND NOT has_prediction"
)
_PURGE = "DELETE FROM evaluator_join WHERE system_id = ? AND ts < ?"


class Fenced(RuntimeError):
    """Another instance took the partition over since this one loaded it."""

    def __init__(self, partition: int, epoch: int) -> None:
        super().__init__(f"partition {partition} was taken over (epoch {epoch} is stale)")
        self.partition = partition


class JoinInfo(NamedTuple):
    """One join row, as ``lookup`` reads it."""

    event_id: str
    has_prediction: bool
    actual: str | None
    """The outcome's label (JSON), None until it arrived."""
    ts: float
    arrival_wm: float | None
    pred_partition: int | None
    pred_offset: int | None
    label_time: float | None
    prediction: str | None
    scores: str | None
    attributes: str | None
    outcome_ts: float | None
    out_partition: int | None
    out_offset: int | None

    @property
    def labelled(self) -> bool:
        return self.actual is not None


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

    # --- the open transaction ------------------------------------------------------------

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            self._conn = self._db.engine.connect()
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

    def close(self) -> None:
        self.rollback()

    # --- partitions ----------------------------------------------------------------------

    def claim(self, partition: int) -> Claim:
        """Take the partition over: bump its epoch (fencing the previous owner), load it."""
        table = _table("evaluator_partition")
        key = (table.c.stream == self.stream) & (table.c.partition == partition)
        with self._db.engine.connect() as conn:
            for _ in range(3):
                bumped = conn.execute(
                    update(table).where(key).values(epoch=table.c.epoch + 1)
                ).rowcount
                if bumped:
                    break
                try:
                    conn.execute(
                        insert(table).values(
                            stream=self.stream,
                            partition=partition,
                            epoch=1,
                            offsets={},
                            state={},
                            updated_at=datetime.now(UTC),
                        )
                    )
                    break
                except IntegrityError:
                    conn.rollback()
            row = conn.execute(
                select(table.c.epoch, table.c.offsets, table.c.state).where(key)
            ).one()
            wt = _table("evaluator_window")
            windows = conn.execute(
                select(wt.c.system_id, wt.c.size, wt.c.start, wt.c.state).where(
                    (wt.c.stream == self.stream) & (wt.c.partition == partition)
                )
            ).all()
            conn.commit()
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
        wt = _table("evaluator_window")
        gone = list(closed) + [(s, size, start) for s, size, start, _ in windows]
        for system_id, size, start in gone:
            self.conn.execute(
                delete(wt).where(
                    (wt.c.stream == self.stream)
                    & (wt.c.partition == partition)
                    & (wt.c.system_id == system_id)
                    & (wt.c.size == size)
                    & (wt.c.start == start)
                )
            )
        if windows:
            self.conn.execute(
                insert(wt),
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

    def insert_predictions(self, rows: Sequence[tuple[Any, ...]]) -> int:
        """Insert prediction rows; returns how many were new (the rest conflicted)."""
        inserted = 0
        for chunk in _chunks(rows):
            result = self.conn.exec_driver_sql(self._sql(_INSERT_PREDICTION), list(chunk))
            inserted += max(result.rowcount, 0)
        return inserted

    def lookup(self, system_id: str, event_ids: Sequence[str]) -> dict[str, JoinInfo]:
        found: dict[str, JoinInfo] = {}
        for chunk in _chunks(event_ids):
            sql = _LOOKUP.format(", ".join("?" * len(chunk)))
            for row in self.conn.exec_driver_sql(self._sql(sql), (system_id, *chunk)):
                found[row[0]] = JoinInfo._make(row)
        return found

    def fill_predictions(self, rows: Sequence[tuple[Any, ...]]) -> None:
        if rows:
            self.conn.exec_driver_sql(self._sql(_FILL_PREDICTION), list(rows))

    def clear_labels(self, rows: Sequence[tuple[str, str]]) -> None:
        if rows:
            self.conn.exec_driver_sql(self._sql(_CLEAR_LABEL), list(rows))

    def insert_outcomes(self, rows: Sequence[tuple[Any, ...]]) -> None:
        if rows:
            self.conn.exec_driver_sql(self._sql(_INSERT_OUTCOME), list(rows))

    def label(self, rows: Sequence[tuple[Any, ...]]) -> None:
        if rows:
            self.conn.exec_driver_sql(self._sql(_LABEL), list(rows))

    def purge(self, system_id: str, before: float) -> int:
        """Forget join rows older than ``before``; returns outcomes whose prediction never came."""
        waiting = self.conn.exec_driver_sql(self._sql(_COUNT_WAITING), (system_id, before)).scalar()
        self.conn.exec_driver_sql(self._sql(_PURGE), (system_id, before))
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
        t = _table("evaluator_label_window")
        for system_id, size, start in [*gone, *((s, z, a) for s, z, a, _ in windows)]:
            self.conn.execute(
                delete(t).where(
                    (t.c.stream == self.stream)
                    & (t.c.partition == partition)
                    & (t.c.system_id == system_id)
                    & (t.c.size == size)
                    & (t.c.start == start)
                )
            )
        if windows:
            self.conn.execute(
                insert(t),
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
