"""Database engine and sessions: SQLite by default, PostgreSQL by URL.

SQLModel sessions are synchronous; HTTP routes that use them are plain ``def`` (FastAPI runs
them in its thread pool) and async code calls ``Database.run`` so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from typing import Annotated, Any, TypeVar

import anyio.to_thread
from fastapi import Depends, Request
from sqlalchemy import Engine, Table, event, make_url, text
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, SQLModel, create_engine

__all__ = ["Database", "SessionDep", "get_session"]

T = TypeVar("T")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


_DDL_LOCK_KEY = 0x574B_4444_4C  # "WKDDL": serialises table creation across services


def _in_memory(url: str) -> bool:
    parsed = make_url(url)
    return parsed.database in (None, "", ":memory:") or parsed.query.get("mode") == "memory"


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine
        if url.startswith("sqlite"):
            # an in-memory database lives in one connection: share it with the worker threads
            # of ``run`` instead of giving each thread its own empty database
            pool: dict[str, Any] = {"poolclass": StaticPool} if _in_memory(url) else {}
            self.engine = create_engine(url, connect_args={"check_same_thread": False}, **pool)
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)

    def create_tables(self, tables: Sequence[Any]) -> None:
        """Create the given SQLModel tables if missing (the service's own, nothing else).

        Services sharing one PostgreSQL database start together and own tables of the same
        name (``outbox_message``); "create if missing" is check-then-create, so they take
        turns under an advisory lock instead of failing with DuplicateTable.
        """
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _DDL_LOCK_KEY})
            SQLModel.metadata.create_all(
                conn, tables=[t.__table__ if not isinstance(t, Table) else t for t in tables]
            )

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking database work in a worker thread.

        A cancelled caller waits for the thread to finish before it sees the cancellation, so
        no database work outlives its caller (a component stopped at shutdown would otherwise
        still hold a connection while the lifespan disposes the engine, leaking it).
        """
        work = asyncio.ensure_future(anyio.to_thread.run_sync(fn, *args))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            await asyncio.wait([work])
            raise

    async def ready(self) -> bool:
        def ping() -> bool:
            try:
                with self.engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
                return True
            except Exception:
                return False

        return await self.run(ping)

    def dispose(self) -> None:
        self.engine.dispose()


def get_session(request: Request) -> Iterator[Session]:
    db: Database = request.app.state.db
    with db.session() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
