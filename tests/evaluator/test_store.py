"""The join store on SQLite and PostgreSQL: rows come back exactly as they went in.

SQLite receives inserted rows as one JSON array per statement and PostgreSQL by COPY; event
times are floats that must survive either trip bit for bit (windows are cut on them).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from services.evaluator.app import MIGRATIONS
from services.evaluator.store import EvaluatorStore, JoinInfo, Waiting, _sqlite_sizes
from shared.db import Database
from shared.migrations import OUTBOX, upgrade
from tests.deployments import fresh_database


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> EvaluatorStore:
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'evaluator.db'}")
    else:
        db = Database(fresh_database(request.getfixturevalue("database_url")))
    upgrade(db.engine, OUTBOX)
    upgrade(db.engine, MIGRATIONS)
    made = EvaluatorStore(db, stream="p")
    request.addfinalizer(db.dispose)
    request.addfinalizer(made.close)
    return made


def _times(rng: np.random.Generator, n: int) -> list[float]:
    """Epoch seconds with microseconds, as events carry them, and a few awkward floats."""
    micros = rng.integers(1_700_000_000_000_000, 1_900_000_000_000_000, n)
    times = [int(us) / 1e6 for us in micros]
    times[:4] = [1_800_000_000.0, 0.1 + 0.2, 1e-7, 1_800_000_000.000001]
    return times


def test_prediction_rows_come_back_exactly(store: EvaluatorStore) -> None:
    rng = np.random.default_rng(3)
    n = 12_000  # more than one chunk
    ts = _times(rng, n)
    arrival = [None if i % 7 == 0 else t + float(rng.exponential(3.0)) for i, t in enumerate(ts)]
    rows = [
        (
            "sys",
            f"e{i}",
            ts[i],
            arrival[i],
            str(i % 3) if i % 5 else 'text "quoted" \\ é',
            None if i % 4 == 0 else '{"0":0.25,"1":0.75}',
            None if i % 3 else '{"group":"a"}',
            2,
            1_000 + i // 100,
            i % 11 == 0,
        )
        for i in range(n)
    ]
    assert store.insert_predictions(rows) == n
    store.commit()
    # the same ids again, and one new: only the new one is written
    again = [*rows[:50], ("sys", "new", 1.5, None, "1", None, None, 2, 9, False)]
    assert store.insert_predictions(again) == 1
    found = store.lookup("sys", [row[1] for row in rows])
    assert len(found) == n
    for event_id, t, wm, prediction, scores, attributes, partition, offset, labelled in (
        (r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9]) for r in rows
    ):
        info = found[event_id]
        assert info == JoinInfo(
            event_id, labelled, t, wm, partition, offset, prediction, scores, attributes
        )
        assert type(info.ts) is float


def test_waiting_rows_come_back_exactly(store: EvaluatorStore) -> None:
    rng = np.random.default_rng(4)
    n = 6_000
    ts, label_time = _times(rng, n), _times(rng, n)
    rows = [("sys", f"p{i}", ts[i], str(i % 2), label_time[i], 1, 50 + i) for i in range(n)]
    assert store.insert_waiting(rows) == n
    assert store.insert_waiting(rows[:10]) == 0
    found = store.waiting("sys", [f"p{i}" for i in range(n)])
    assert found == {row[1]: Waiting(*row[1:]) for row in rows}


@pytest.mark.parametrize("n", [0, 1, 5, 3276, 3277, 12_345])
def test_sqlite_statement_sizes_cover_every_row_with_few_distinct_statements(n: int) -> None:
    sizes = list(_sqlite_sizes(n, 3276))
    assert sum(sizes) == n and all(size > 0 for size in sizes)
    assert set(sizes) <= {3276} | {1 << k for k in range(12)}


def test_sqlite_before_3_32_with_its_999_variables_works_alike(tmp_path: Path) -> None:
    """SQLite before 3.32 allows 999 ``?`` per statement (Debian's 3.40 allows 32,766): the
    store sizes its statements by the connection's limit."""
    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(db.engine, OUTBOX)
    upgrade(db.engine, MIGRATIONS)
    store = EvaluatorStore(db, stream="p")
    try:
        raw = store.conn.connection.dbapi_connection
        raw.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)  # type: ignore[union-attr]
        n = 3_000
        rows = [("s", f"e{i}", 1.5 + i, None, "1", None, None, 0, i, False) for i in range(n)]
        assert store.insert_predictions(rows) == n
        ids = [f"e{i}" for i in range(n)]
        store.label("s", ids)
        found = store.lookup("s", ids, not_from=(0, 10_000))
        assert len(found) == n and all(info.labelled for info in found.values())
        waiting = [("s", f"p{i}", 2.5, "0", 3.5, 1, i) for i in range(n)]
        assert store.insert_waiting(waiting) == n
        assert len(store.waiting("s", [f"p{i}" for i in range(n)])) == n
        store.take_waiting("s", [f"p{i}" for i in range(n)])
        assert store.waiting_ids("s") == []
    finally:
        store.close()
        db.dispose()


def _prediction(event_id: str, ts: float, offset: int) -> tuple[object, ...]:
    return ("sys", event_id, ts, None, "1", '{"0":0.4,"1":0.6}', None, 0, offset, False)


def test_a_duplicate_in_a_batch_keeps_the_rows_written_before_it(store: EvaluatorStore) -> None:
    """PostgreSQL copies a batch straight into the table and, when a key is taken, goes back
    to a savepoint and inserts through the stage table: the batch's new rows are written, and
    so are those of earlier batches of the same (uncommitted) transaction."""
    first = [_prediction(f"a{i}", 10.0 + i, i) for i in range(100)]
    assert store.insert_predictions(first) == 100
    second = [_prediction(f"b{i}", 200.0 + i, 100 + i) for i in range(100)]
    second[37] = _prediction("a5", 999.0, 137)  # taken by the first batch
    assert store.insert_predictions(second) == 99
    store.commit()
    found = store.lookup("sys", [row[1] for row in first + second])  # type: ignore[misc]
    assert len(found) == 199
    assert found["a5"].ts == 15.0 and found["a5"].pred_offset == 5  # the first one stays
    assert found["b99"].ts == 299.0


def test_join_outcomes_marks_only_what_an_outcome_labels(store: EvaluatorStore) -> None:
    """Each found prediction comes back as it was before the call; it is marked labelled
    unless it already was or the outcome's label time is beyond the horizon (expired)."""
    rows = [_prediction(f"e{i}", 100.0 + i, i) for i in range(6)]
    store.insert_predictions(rows)
    store.label("sys", ["e1"])
    ids = ["e0", "e1", "e2", "missing", "e3"]
    times = [150.0, 150.0, 102.0 + 50.0 + 1e-9, 150.0, 103.0 + 50.0]
    found = store.join_outcomes("sys", ids, times, 50.0)
    assert set(found) == {"e0", "e1", "e2", "e3"}
    assert [found[i].labelled for i in ("e0", "e1", "e2", "e3")] == [False, True, False, False]
    assert found["e3"] == JoinInfo("e3", False, 103.0, None, 0, 3, "1", '{"0":0.4,"1":0.6}', None)
    after = store.lookup("sys", [f"e{i}" for i in range(6)])
    # e0 and e3 (at exactly the horizon) labelled now, e1 before; e2 expired, e4, e5 not asked
    assert {i for i, info in after.items() if info.labelled} == {"e0", "e1", "e3"}
    assert store.join_outcomes("sys", ["e0"], [150.0], 50.0)["e0"].labelled
    assert store.join_outcomes("sys", [], [], 50.0) == {}


def test_postgresql_storage_of_the_hot_tables(database_url: str) -> None:
    """Migration 0003: join rows leave room for their labelled update in their page, window
    states are compressed with lz4."""
    db = Database(fresh_database(database_url))
    try:
        upgrade(db.engine, OUTBOX)
        upgrade(db.engine, MIGRATIONS)
        with db.engine.connect() as conn:
            options = conn.exec_driver_sql(
                "SELECT reloptions FROM pg_class WHERE relname = 'evaluator_join'"
            ).scalar()
            compression = conn.exec_driver_sql(
                "SELECT attcompression FROM pg_attribute WHERE attname = 'state' "
                "AND attrelid IN ('evaluator_window'::regclass, 'evaluator_label_window'::regclass)"
            ).all()
        assert options == ["fillfactor=50"]
        assert [row[0] for row in compression] == ["l", "l"]
    finally:
        db.dispose()


def test_postgresql_knows_how_many_outcomes_wait_after_a_large_filing(database_url: str) -> None:
    """The waiting table usually starts empty; after a large filing its statistics are
    renewed in the open transaction, so lookups by id use its index instead of matching every
    id against every waiting row (a quadratic plan chosen for a table believed empty)."""
    db = Database(fresh_database(database_url))
    store = EvaluatorStore(db, stream="p")
    try:
        upgrade(db.engine, OUTBOX)
        upgrade(db.engine, MIGRATIONS)
        rows = [("sys", f"p{i}", 1.5, "1", 2.5, 0, i) for i in range(5_000)]
        assert store.insert_waiting(rows) == 5_000
        cursor = store._cursor()
        cursor.execute("SELECT reltuples FROM pg_class WHERE relname = 'evaluator_waiting'")
        assert cursor.fetchone()[0] == 5_000
        cursor.execute(
            "EXPLAIN SELECT prediction_id FROM evaluator_waiting WHERE system_id = 'sys' "
            "AND prediction_id IN (SELECT unnest(%s::text[]))",
            ([f"p{i}" for i in range(0, 5_000, 7)],),
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
        assert "Seq Scan on evaluator_waiting" not in plan or "Hash" in plan, plan
        assert len(store.waiting("sys", [f"p{i}" for i in range(0, 5_000, 7)])) == 715
    finally:
        store.close()
        db.dispose()
