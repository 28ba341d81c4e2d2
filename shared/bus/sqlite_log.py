"""The in-process bus's durable log: its topics, records and committed offsets in one SQLite file.

``MemoryBroker`` serves reads from memory; this file is what makes an acknowledgement mean
something. A batch of appends (and offset commits) is one transaction, committed before any
of its sends return. SQLite runs in WAL mode with ``synchronous=NORMAL``: a committed
transaction is in the WAL file when ``COMMIT`` returns, so killing the process (``kill -9``)
never loses it; only a power cut or an OS crash can lose the last transactions before the
next WAL checkpoint (the same trade the services' own SQLite databases make, shared/db.py).

Every call runs in one worker thread at a time (the broker's writer task awaits each), so
one connection is enough.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from shared.bus.base import Record, TopicPartition, TopicSpec

__all__ = ["SqliteLog", "Stored"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS bus_topic (
        name TEXT PRIMARY KEY, partitions INTEGER NOT NULL, compacted INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS bus_record (
        topic TEXT NOT NULL, partition INTEGER NOT NULL, "offset" INTEGER NOT NULL,
        key BLOB, value BLOB, timestamp_ms INTEGER NOT NULL, headers BLOB,
        PRIMARY KEY (topic, partition, "offset")) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS bus_committed (
        group_id TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
        "offset" INTEGER NOT NULL, PRIMARY KEY (group_id, topic, partition))""",
)

# a compacted topic keeps the newest record of each key (records without a key are kept)
_COMPACT = """
DELETE FROM bus_record
WHERE topic = ? AND key IS NOT NULL AND "offset" < (
    SELECT max(n."offset") FROM bus_record AS n
    WHERE n.topic = bus_record.topic AND n.partition = bus_record.partition
    AND n.key = bus_record.key)
"""


@dataclass(slots=True)
class Stored:
    """Everything the file holds, as the broker loads it on open."""

    topics: list[TopicSpec] = field(default_factory=list)
    records: dict[TopicPartition, list[Record]] = field(default_factory=dict)
    ends: dict[TopicPartition, int] = field(default_factory=dict)
    """Next offset per partition (compaction may have removed the last records' offsets)."""
    committed: dict[str, dict[TopicPartition, int]] = field(default_factory=dict)


def _headers(raw: bytes | None) -> tuple[tuple[str, bytes], ...]:
    if not raw:
        return ()
    return tuple((name, bytes.fromhex(value)) for name, value in orjson.loads(raw))


def _encode_headers(headers: tuple[tuple[str, bytes], ...]) -> bytes | None:
    if not headers:
        return None
    return orjson.dumps([(name, value.hex()) for name, value in headers])


class SqliteLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None

    def open(self) -> Stored:
        """Create the tables if needed, compact the compacted topics and load everything."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        for statement in _SCHEMA:
            conn.execute(statement)
        self._conn = conn
        stored = Stored()
        for name, partitions, compacted in conn.execute(
            "SELECT name, partitions, compacted FROM bus_topic ORDER BY name"
        ):
            stored.topics.append(TopicSpec(name, partitions, compacted=bool(compacted)))
        for topic, partition, end in conn.execute(
            'SELECT topic, partition, max("offset") + 1 FROM bus_record GROUP BY topic, partition'
        ):
            stored.ends[TopicPartition(topic, partition)] = end
        conn.execute("BEGIN IMMEDIATE")
        for spec in stored.topics:
            if spec.compacted:
                conn.execute(_COMPACT, (spec.name,))
        conn.execute("COMMIT")
        rows = conn.execute(
            'SELECT topic, partition, "offset", key, value, timestamp_ms, headers '
            'FROM bus_record ORDER BY topic, partition, "offset"'
        )
        for topic, partition, offset, key, value, timestamp_ms, headers in rows:
            tp = TopicPartition(topic, partition)
            stored.records.setdefault(tp, []).append(
                Record(topic, partition, offset, key, value, timestamp_ms, _headers(headers))
            )
        for group_id, topic, partition, offset in conn.execute(
            'SELECT group_id, topic, partition, "offset" FROM bus_committed'
        ):
            stored.committed.setdefault(group_id, {})[TopicPartition(topic, partition)] = offset
        return stored

    def write(
        self,
        *,
        topics: Iterable[TopicSpec] = (),
        records: Sequence[Record] = (),
        commits: Iterable[tuple[str, TopicPartition, int]] = (),
    ) -> None:
        """One transaction, committed (in the WAL) when this returns."""
        conn = self._conn
        if conn is None:
            raise RuntimeError("the bus log is not open")
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT OR IGNORE INTO bus_topic (name, partitions, compacted) VALUES (?, ?, ?)",
                [(t.name, t.partitions, int(t.compacted)) for t in topics],
            )
            conn.executemany(
                'INSERT INTO bus_record (topic, partition, "offset", key, value, timestamp_ms, '
                "headers) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r.topic,
                        r.partition,
                        r.offset,
                        r.key,
                        r.value,
                        r.timestamp_ms,
                        _encode_headers(r.headers),
                    )
                    for r in records
                ],
            )
            conn.executemany(
                'INSERT INTO bus_committed (group_id, topic, partition, "offset") '
                "VALUES (?, ?, ?, ?) ON CONFLICT (group_id, topic, partition) "
                'DO UPDATE SET "offset" = excluded."offset"',
                [(group, tp.topic, tp.partition, offset) for group, tp, offset in commits],
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
