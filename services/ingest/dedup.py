"""Duplicate detection: each event_id is accepted once within its system's label horizon.

The state is in the database (PostgreSQL when deployed, SQLite embedded), so it holds across
restarts and across any number of ingest instances. Per request:

1. **claim**: insert one ``SeenEvent`` row per event with this instance's id (``owner``) and
   the request's sequence number (``seq``); every request waiting at that moment goes into
   the same statement (group commit), so the cost is one bulk insert per round trip. An
   existing row means: *duplicate* if its request is settled; *in flight* if its instance is
   alive and still waiting for Kafka (the caller answers 503; the client retries); and it is
   taken over if it expired or its instance died before settling.
2. the caller produces the new events to Kafka.
3. **settle**: rows of events Kafka definitely did not write are deleted, then the request's
   ``seq`` counts as settled. A heartbeat publishes ``resolved_seq`` (every seq up to it is
   settled) and ``alive_until``, so confirming delivery costs one row update per heartbeat
   rather than one per event.

An event is therefore never reported as a duplicate unless Kafka acknowledged it (no loss).
The one window for a duplicate on the topic: an instance that dies between handing events to
Kafka and settling them; after its lease a retry takes the rows over and produces again
(at-least-once, which the evaluator's own event_id dedup absorbs).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, overload

import psycopg
from sqlalchemy import Connection, and_, case, delete, insert, make_url, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from shared.db import Database
from shared.migrations import upgrade

from .errors import DedupUnavailable
from .models import MIGRATIONS, IngestInstance, SeenEvent

__all__ = ["Claim", "Claims", "DedupStore", "DedupUnavailable", "Verdict"]

log = logging.getLogger(__name__)

_SEEN = SeenEvent.__table__  # type: ignore[attr-defined]
_INSTANCE = IngestInstance.__table__  # type: ignore[attr-defined]
_CHUNK = 1000

Key = tuple[str, str, str]


class Verdict(enum.Enum):
    NEW = "new"  # claimed by this request: produce it
    DUPLICATE = "duplicate"  # already delivered within the horizon
    IN_FLIGHT = "in_flight"  # another request is still waiting for Kafka to acknowledge it


class Claim(NamedTuple):
    system_id: str
    kind: str
    event_id: str
    horizon_s: float

    @property
    def key(self) -> Key:
        return (self.system_id, self.kind, self.event_id)


class Claims(Sequence[Claim]):
    """One request's claims in columns (one kind, horizons per system): no object per event
    on the common path, and the claim statement's columns are built a request at a time."""

    __slots__ = ("event_ids", "horizons", "kind", "system_ids")

    def __init__(
        self, kind: str, system_ids: list[str], event_ids: list[str], horizons: dict[str, float]
    ) -> None:
        self.kind = kind
        self.system_ids = system_ids
        self.event_ids = event_ids
        self.horizons = horizons

    def __len__(self) -> int:
        return len(self.event_ids)

    @overload
    def __getitem__(self, index: int) -> Claim: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Claim]: ...

    def __getitem__(self, index: int | slice) -> Claim | Sequence[Claim]:
        if isinstance(index, slice):
            return list(self)[index]
        system_id = self.system_ids[index]
        return Claim(system_id, self.kind, self.event_ids[index], self.horizons[system_id])

    def __iter__(self) -> Iterator[Claim]:
        kind, horizons = self.kind, self.horizons
        for system_id, event_id in zip(self.system_ids, self.event_ids, strict=True):
            yield Claim(system_id, kind, event_id, horizons[system_id])


def _repeat(text: str, times: int) -> str:
    """``text`` ``times`` times, space-separated."""
    return (text + " ") * (times - 1) + text


@dataclass(slots=True)
class _Waiting:
    seq: int
    claims: Sequence[Claim]
    future: asyncio.Future[list[Verdict]]


_PG_CLAIM = (
    "WITH input AS (SELECT * FROM unnest(string_to_array(%(s)s, ' '), "
    "string_to_array(%(k)s, ' '), string_to_array(%(e)s, ' '), "
    "CAST(string_to_array(%(x)s, ' ') AS float8[]), CAST(string_to_array(%(q)s, ' ') AS int8[])) "
    "AS t(system_id, kind, event_id, expires_at, seq)), "
    "ins AS (INSERT INTO ingest_seen_event (system_id, kind, event_id, expires_at, owner, seq) "
    "SELECT system_id, kind, event_id, expires_at, %(o)s, seq FROM input "
    "ON CONFLICT DO NOTHING RETURNING system_id, kind, event_id, seq) "
    "SELECT i.system_id, i.kind, i.event_id, i.seq, ins.seq FROM input i "
    "LEFT JOIN ins USING (system_id, kind, event_id) WHERE ins.seq IS DISTINCT FROM i.seq"
)
"""Insert every claim without a row; answer only the claims their request did not get
(normally none, so the answer is empty): (key, seq, seq of the request that got it or NULL).

Columns travel as space-separated strings (ids cannot contain spaces: see Identifier, and
kinds are fixed words): adapting Python lists to arrays costs ~2 µs per element. It runs on
the event loop over psycopg's async connection (no worker thread, no GIL hand-offs)."""


_PG_CLAIM_ALL_NEW = (
    _PG_CLAIM.split(", ins AS (")[0]
    + " INSERT INTO ingest_seen_event (system_id, kind, event_id, expires_at, owner, seq) "
    "SELECT system_id, kind, event_id, expires_at, %(o)s, seq FROM input"
)
"""The common case first: a plain insert of every claim, with no per-row conflict handling
(``ON CONFLICT`` costs PostgreSQL ~2 of its ~5 µs per claim). When any key already has a row
the whole statement fails with a unique violation, inserting nothing, and ``_PG_CLAIM`` runs
(a retry or a replay: rare)."""


class DedupStore:
    """Claims and settles event_ids for one ingest instance; see the module docstring."""

    def __init__(
        self,
        db: Database,
        *,
        lease_s: float = 15.0,
        heartbeat_s: float = 0.5,
        purge_interval_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.owner = secrets.randbits(62)
        self.lease_s = lease_s
        self.heartbeat_s = heartbeat_s
        self.purge_interval_s = purge_interval_s
        self.clock = clock
        self._next_seq = 1
        self._unresolved: set[int] = set()
        self._queue: list[_Waiting] = []
        self._flusher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = False
        self._stopping = asyncio.Event()
        self._claim_connection: Connection | None = None
        self._async_connection: psycopg.AsyncConnection[Any] | None = None
        url = make_url(db.url)
        self._conninfo: str | None = (
            url.set(drivername="postgresql").render_as_string(hide_password=False)
            if url.get_backend_name() == "postgresql"
            else None
        )

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        await self.db.run(upgrade, self.db.engine, MIGRATIONS)
        now = self.clock()
        await self.db.run(self._register, now)
        self._started = True
        self._spawn(self._heartbeat_loop())
        self._spawn(self._purge_loop())

    async def stop(self) -> None:
        """Let the background loops finish their current database call, then publish how far
        everything is settled (a database call is never cancelled half-way: its thread would
        go on and could overwrite the final heartbeat)."""
        self._stopping.set()
        pending = [*self._tasks, *([self._flusher] if self._flusher else [])]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        self._tasks.clear()
        if self._started:
            # nothing unsettled: every claim of ours is final, so we may stop living
            alive_until = self.clock() if not self._unresolved else self.clock() + self.lease_s
            try:
                await self.db.run(self._beat, self.resolved_seq, alive_until)
            except Exception as exc:
                log.warning("ingest: duplicate store: last heartbeat failed: %s", exc)
        self._started = False
        with contextlib.suppress(Exception):
            await self.db.run(self._close_claim_connection)
        if self._async_connection is not None:
            with contextlib.suppress(Exception):
                await self._async_connection.close()
            self._async_connection = None
        self.db.dispose()

    async def _pause(self, seconds: float) -> bool:
        """Sleep unless stopping; False once the store is stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return not self._stopping.is_set()

    async def ready(self) -> bool:
        return self._started

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def resolved_seq(self) -> int:
        return min(self._unresolved) - 1 if self._unresolved else self._next_seq - 1

    @property
    def unsettled(self) -> int:
        return len(self._unresolved)

    # -- claim and settle -------------------------------------------------------------------

    async def claim(self, claims: Sequence[Claim]) -> tuple[int, list[Verdict]]:
        """Claim the events of one request (distinct keys); returns its seq and a verdict each.

        The caller must ``settle(seq, ...)`` afterwards, whatever happens.
        """
        seq = self._next_seq
        self._next_seq += 1
        self._unresolved.add(seq)
        future: asyncio.Future[list[Verdict]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Waiting(seq, claims, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        try:
            return seq, await asyncio.shield(future)
        except DedupUnavailable:
            self.settle(seq, claims)  # the insert may have committed before the error
            raise

    def settle(self, seq: int, undelivered: Sequence[Claim] = ()) -> None:
        """The request ``seq`` is over; ``undelivered`` events were definitely not written."""
        if not undelivered:
            self._unresolved.discard(seq)
            return
        self._spawn(self._release(seq, list(undelivered)))

    async def _release(self, seq: int, claims: list[Claim]) -> None:
        """Delete the claims (retrying until the database answers), then settle ``seq``.

        Until then they look "in flight": a retry gets 503, never a false duplicate.
        """
        backoff = 0.2
        while True:
            try:
                await self.db.run(self._delete_claims, seq, [c.key for c in claims])
            except Exception as exc:
                log.warning("ingest: cannot release %d claims yet: %s", len(claims), exc)
                if not await self._pause(backoff):
                    return  # stays in flight for others until this instance's lease ends
                backoff = min(backoff * 2, 5.0)
                continue
            self._unresolved.discard(seq)
            return

    async def _flush(self) -> None:
        while self._queue:
            waiting, self._queue = self._queue, []
            unresolved = frozenset(self._unresolved)
            now = self.clock()
            try:
                if self._conninfo is not None:
                    losers = await self._insert_postgresql(self._conninfo, waiting, now)
                    verdicts = (
                        await self.db.run(self._resolve_sync, waiting, losers, unresolved, now)
                        if losers
                        else {item.seq: [Verdict.NEW] * len(item.claims) for item in waiting}
                    )
                else:
                    verdicts = await self.db.run(self._claim_sync, waiting, unresolved, now)
            except Exception as exc:
                log.warning("ingest: duplicate store unavailable: %s", exc)
                for item in waiting:
                    if not item.future.done():
                        item.future.set_exception(
                            DedupUnavailable(f"duplicate store unavailable: {exc}")
                        )
                continue
            for item in waiting:
                if not item.future.done():
                    item.future.set_result(verdicts[item.seq])

    # -- database work (worker thread) ------------------------------------------------------

    def _register(self, now: float) -> None:
        with self.db.engine.begin() as conn:
            conn.execute(
                insert(_INSTANCE).values(
                    owner=self.owner, resolved_seq=0, alive_until=now + self.lease_s, started_at=now
                )
            )

    def _beat(self, resolved_seq: int, alive_until: float) -> None:
        column = _INSTANCE.c.resolved_seq
        with self.db.engine.begin() as conn:
            conn.execute(
                update(_INSTANCE)
                .where(_INSTANCE.c.owner == self.owner)
                .values(
                    resolved_seq=case((column > resolved_seq, column), else_=resolved_seq),
                    alive_until=alive_until,
                )
            )

    def _columns(
        self, waiting: list[_Waiting], now: float
    ) -> tuple[list[str], list[str], list[str], list[float], list[int]]:
        systems: list[str] = []
        kinds: list[str] = []
        events: list[str] = []
        expiries: list[float] = []
        seqs: list[int] = []
        for item in waiting:
            for system_id, kind, event_id, horizon_s in item.claims:
                systems.append(system_id)
                kinds.append(kind)
                events.append(event_id)
                expiries.append(now + horizon_s)
            seqs += [item.seq] * len(item.claims)
        return systems, kinds, events, expiries, seqs

    def _pg_parameters(self, waiting: list[_Waiting], now: float) -> dict[str, Any]:
        """The claim statement's columns as space-separated strings; a request of one system
        (the common case) repeats its system, kind, expiry and seq instead of joining them."""
        systems: list[str] = []
        kinds: list[str] = []
        events: list[str] = []
        expiries: list[str] = []
        seqs: list[str] = []
        for item in waiting:
            claims = item.claims
            count = len(claims)
            if not count:
                continue
            seqs.append(_repeat(str(item.seq), count))
            if type(claims) is Claims and len(claims.horizons) == 1:
                ((system_id, horizon_s),) = claims.horizons.items()
                systems.append(_repeat(system_id, count))
                kinds.append(_repeat(claims.kind, count))
                events.append(" ".join(claims.event_ids))
                expiries.append(_repeat(repr(now + horizon_s), count))
                continue
            for system_id, kind, event_id, horizon_s in claims:
                systems.append(system_id)
                kinds.append(kind)
                events.append(event_id)
                expiries.append(repr(now + horizon_s))
        return {
            "s": " ".join(systems),
            "k": " ".join(kinds),
            "e": " ".join(events),
            "x": " ".join(expiries),
            "q": " ".join(seqs),
            "o": self.owner,
        }

    async def _insert_postgresql(
        self, conninfo: str, waiting: list[_Waiting], now: float
    ) -> list[Any]:
        """The claim statement on a kept async connection (autocommit: one statement)."""
        parameters = self._pg_parameters(waiting, now)
        conn = self._async_connection
        if conn is None or conn.closed:
            conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
            self._async_connection = conn
        try:
            try:
                await conn.execute(_PG_CLAIM_ALL_NEW, parameters)
                return []  # every claim inserted: all new
            except psycopg.errors.UniqueViolation:
                pass  # some key has a row already (nothing was inserted): the full statement
            cursor = await conn.execute(_PG_CLAIM, parameters)
            return list(await cursor.fetchall())
        except Exception:
            self._async_connection = None
            with contextlib.suppress(Exception):
                await conn.close()
            raise

    def _insert(self, conn: Connection, waiting: list[_Waiting], now: float) -> list[Any]:
        """Insert every claim that has no row yet (SQLite); returns the claims that did not
        get theirs as (system_id, kind, event_id, seq, seq of the claim that got it or None)."""
        systems, kinds, events, expiries, seqs = self._columns(waiting, now)
        holders: dict[Key, int] = {}
        for start in range(0, len(seqs), _CHUNK):
            end = start + _CHUNK
            rows = [
                {
                    "system_id": s,
                    "kind": k,
                    "event_id": e,
                    "expires_at": x,
                    "owner": self.owner,
                    "seq": q,
                }
                for s, k, e, x, q in zip(
                    systems[start:end],
                    kinds[start:end],
                    events[start:end],
                    expiries[start:end],
                    seqs[start:end],
                    strict=True,
                )
            ]
            statement = (
                sqlite.insert(_SEEN)
                .values(rows)
                .on_conflict_do_nothing()
                .returning(_SEEN.c.system_id, _SEEN.c.kind, _SEEN.c.event_id, _SEEN.c.seq)
            )
            for system_id, kind, event_id, seq in conn.execute(statement):
                holders[(system_id, kind, event_id)] = seq
        return [
            (s, k, e, q, holders.get((s, k, e)))
            for s, k, e, q in zip(systems, kinds, events, seqs, strict=True)
            if holders.get((s, k, e)) != q
        ]

    def _resolve_sync(
        self,
        waiting: list[_Waiting],
        losers: list[Any],
        unresolved: frozenset[int],
        now: float,
    ) -> dict[int, list[Verdict]]:
        with self.db.engine.begin() as conn:
            return self._resolve(conn, waiting, losers, unresolved, now)

    def _claim_sync(
        self, waiting: list[_Waiting], unresolved: frozenset[int], now: float
    ) -> dict[int, list[Verdict]]:
        """One claim round trip on a connection kept for claims (claims run one at a time):
        no pool checkout and pre-ping per request. A failed connection is dropped."""
        conn = self._claim_connection
        if conn is None or conn.closed or conn.invalidated:
            conn = self._claim_connection = self.db.engine.connect()
        try:
            with conn.begin():
                return self._claim_in(conn, waiting, unresolved, now)
        except Exception:
            self._claim_connection = None
            with contextlib.suppress(Exception):
                conn.close()
            raise

    def _close_claim_connection(self) -> None:
        conn, self._claim_connection = self._claim_connection, None
        if conn is not None:
            conn.close()

    def _claim_in(
        self, conn: Connection, waiting: list[_Waiting], unresolved: frozenset[int], now: float
    ) -> dict[int, list[Verdict]]:
        return self._resolve(conn, waiting, self._insert(conn, waiting, now), unresolved, now)

    def _resolve(
        self,
        conn: Connection,
        waiting: list[_Waiting],
        losers: list[Any],
        unresolved: frozenset[int],
        now: float,
    ) -> dict[int, list[Verdict]]:
        """Verdicts from the claims that did not get their row (see ``_insert``)."""
        if not losers:  # the common case: every event is new
            return {item.seq: [Verdict.NEW] * len(item.claims) for item in waiting}
        lost = {(s, k, e, q) for s, k, e, q, _holder in losers}
        inserted: dict[Key, int] = {(s, k, e): h for s, k, e, _q, h in losers if h is not None}
        for item in waiting:
            for c in item.claims:
                if (*c.key, item.seq) not in lost:
                    inserted[c.key] = item.seq
        missing = {(s, k, e) for s, k, e, _q, h in losers if h is None}
        duplicates = (
            self._settle_conflicts(conn, waiting, missing, inserted, unresolved, now)
            if missing
            else set()
        )
        verdicts: dict[int, list[Verdict]] = {}
        for item in waiting:
            out: list[Verdict] = []
            for c in item.claims:
                holder = inserted.get(c.key)
                if holder == item.seq:
                    out.append(Verdict.NEW)
                elif holder is not None:
                    out.append(Verdict.IN_FLIGHT)  # a concurrent request of ours has it
                elif c.key in duplicates:
                    out.append(Verdict.DUPLICATE)
                else:
                    out.append(Verdict.IN_FLIGHT)
            verdicts[item.seq] = out
        return verdicts

    def _settle_conflicts(
        self,
        conn: Connection,
        waiting: list[_Waiting],
        missing: set[Key],
        inserted: dict[Key, int],
        unresolved: frozenset[int],
        now: float,
    ) -> set[Key]:
        """Classify keys that already had a row: duplicate, in flight, or ours to take over.

        Keys taken over are added to ``inserted``; the duplicates are returned.
        """
        duplicates: set[Key] = set()
        keys = sorted(missing)
        existing: dict[Key, tuple[float, int, int, int | None, float | None]] = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            statement = (
                select(
                    _SEEN.c.system_id,
                    _SEEN.c.kind,
                    _SEEN.c.event_id,
                    _SEEN.c.expires_at,
                    _SEEN.c.owner,
                    _SEEN.c.seq,
                    _INSTANCE.c.resolved_seq,
                    _INSTANCE.c.alive_until,
                )
                .select_from(_SEEN.outerjoin(_INSTANCE, _INSTANCE.c.owner == _SEEN.c.owner))
                .where(tuple_(_SEEN.c.system_id, _SEEN.c.kind, _SEEN.c.event_id).in_(chunk))
            )
            for row in conn.execute(statement):
                existing[(row[0], row[1], row[2])] = (row[3], row[4], row[5], row[6], row[7])
        first_claimant: dict[Key, tuple[int, float]] = {}
        for item in waiting:
            for c in item.claims:
                if c.key in missing and c.key not in first_claimant:
                    first_claimant[c.key] = (item.seq, now + c.horizon_s)
        for key, (seq, expires_at) in first_claimant.items():
            found = existing.get(key)
            if found is None:  # deleted since the insert (a release): claim it now
                if self._take_over(conn, key, None, seq, expires_at):
                    inserted[key] = seq
                continue
            row_expires, owner, row_seq, resolved, alive_until = found
            if row_expires < now:
                take = True
            elif owner == self.owner:
                take = False
                if row_seq not in unresolved:
                    duplicates.add(key)
            elif resolved is None:  # its instance is gone: fate unknown, deliver again
                take = True
            elif row_seq <= resolved:
                take = False
                duplicates.add(key)
            else:
                take = alive_until is None or alive_until < now
            if take and self._take_over(conn, key, (owner, row_seq), seq, expires_at):
                inserted[key] = seq
        return duplicates

    def _take_over(
        self,
        conn: Connection,
        key: Key,
        previous: tuple[int, int] | None,
        seq: int,
        expires_at: float,
    ) -> bool:
        values = {"expires_at": expires_at, "owner": self.owner, "seq": seq}
        if previous is None:
            dialect_insert = (
                postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
            )
            result = conn.execute(
                dialect_insert(_SEEN)
                .values(system_id=key[0], kind=key[1], event_id=key[2], **values)
                .on_conflict_do_nothing()
            )
        else:
            result = conn.execute(
                update(_SEEN)
                .where(
                    _SEEN.c.system_id == key[0],
                    _SEEN.c.kind == key[1],
                    _SEEN.c.event_id == key[2],
                    _SEEN.c.owner == previous[0],
                    _SEEN.c.seq == previous[1],
                )
                .values(**values)
            )
        return bool(result.rowcount == 1)

    def _delete_claims(self, seq: int, keys: list[Key]) -> None:
        with self.db.engine.begin() as conn:
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start : start + _CHUNK]
                conn.execute(
                    delete(_SEEN).where(
                        _SEEN.c.owner == self.owner,
                        _SEEN.c.seq == seq,
                        tuple_(_SEEN.c.system_id, _SEEN.c.kind, _SEEN.c.event_id).in_(chunk),
                    )
                )

    def _purge(self, now: float) -> int:
        with self.db.engine.begin() as conn:
            purged = conn.execute(delete(_SEEN).where(_SEEN.c.expires_at < now)).rowcount
            # instances long gone whose claims have all expired or been taken over
            conn.execute(
                delete(_INSTANCE).where(
                    and_(
                        _INSTANCE.c.alive_until < now - self.purge_interval_s,
                        ~select(_SEEN.c.owner)
                        .where(_SEEN.c.owner == _INSTANCE.c.owner)
                        .limit(1)
                        .exists(),
                    )
                )
            )
        return int(purged or 0)

    # -- background ---------------------------------------------------------------------------

    async def publish(self) -> None:
        """Tell other instances now how far this one's claims are settled, and that it lives."""
        resolved = self.resolved_seq
        await self.db.run(self._beat, resolved, self.clock() + self.lease_s)

    async def _heartbeat_loop(self) -> None:
        while True:
            try:
                await self.publish()
            except Exception as exc:
                log.warning("ingest: duplicate store heartbeat failed: %s", exc)
            if not await self._pause(self.heartbeat_s):
                return

    async def _purge_loop(self) -> None:
        while await self._pause(self.purge_interval_s):
            try:
                purged = await self.db.run(self._purge, self.clock())
            except Exception as exc:
                log.warning("ingest: duplicate store purge failed: %s", exc)
                continue
            if purged:
                log.info("ingest: purged %d event ids past their label horizon", purged)
