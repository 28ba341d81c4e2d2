"""Alembic migrations per service, each chain with its own version table.

Services share one database in a real deployment, so one ``alembic_version`` table cannot say
where each of them stands. Each service owns a :class:`MigrationChain`: a directory of Alembic
revision scripts (``<dir>/versions/*.py``) recorded in ``alembic_version_<name>``. The
``outbox_message`` table, which every service writes, has its own chain (:data:`OUTBOX`) whose
first revision creates the table only if it is missing, so services that still create it with
``Database.create_tables`` and services that migrate can share it.

Upgrades run in one transaction per chain, serialised across processes (PostgreSQL: the same
advisory lock ``Database.create_tables`` takes; SQLite: ``BEGIN IMMEDIATE``), so services
starting together on one database take turns instead of racing.

How a service uses it::

    # services/<name>/migrations/versions/0001_initial.py: an ordinary Alembic revision
    # (revision = "0001", down_revision = None, upgrade() using alembic.op), no env.py needed.

    MIGRATIONS = MigrationChain("evaluator", Path(__file__).parent / "migrations",
                                tables=("evaluator_window", ...))

    # in create_app's lifespan, instead of database_lifespan(db, TABLES):
    async with migrated_database(db, [OUTBOX, MIGRATIONS]): ...

and ``watchkeeper migrate <name>`` applies the same chains from the command line. Write a new
revision by hand (copy the previous one, set ``down_revision``) and keep the SQLModel tables
and the scripts in step: the registry's tests compare the schema a fresh migration produces
with ``SQLModel.metadata.create_all``'s, a test each service can copy.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

from shared.db import _DDL_LOCK_KEY, Database

__all__ = [
    "OUTBOX",
    "MigrationChain",
    "MigrationError",
    "current_revisions",
    "migrated_database",
    "upgrade",
]

log = logging.getLogger(__name__)


class MigrationError(RuntimeError):
    """The database cannot be brought to the chain's head safely (the message says why)."""


@dataclass(frozen=True, slots=True)
class MigrationChain:
    """One service's revision scripts and the version table recording where it stands."""

    name: str
    location: Path
    """Directory holding ``versions/`` with the revision scripts."""
    tables: tuple[str, ...] = ()
    """Tables the chain creates: found without a version table = created before migrations."""

    @property
    def version_table(self) -> str:
        return f"alembic_version_{self.name}"

    def script(self) -> ScriptDirectory:
        return ScriptDirectory(str(self.location))

    def heads(self) -> tuple[str, ...]:
        return tuple(self.script().get_heads())


OUTBOX = MigrationChain("outbox", Path(__file__).parent / "outbox_migrations")
"""The shared ``outbox_message`` table (see shared.outbox)."""


@contextlib.contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """One connection inside a transaction no other migrating process runs beside."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _DDL_LOCK_KEY})
        elif conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        conn.commit()


def current_revisions(engine: Engine, chain: MigrationChain) -> tuple[str, ...]:
    """The revisions the database is at for this chain (empty when never migrated)."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": chain.version_table})
        return tuple(context.get_current_heads())


def _check_not_legacy(conn: Connection, chain: MigrationChain) -> None:
    inspector = inspect(conn)
    if inspector.has_table(chain.version_table):
        return
    found = [t for t in chain.tables if inspector.has_table(t)]
    if found:
        raise MigrationError(
            f"the database has {chain.name} tables ({', '.join(found)}) but no "
            f"{chain.version_table}: it was created before migrations existed; delete it "
            "(a demo database) or create the version table by hand at the matching revision"
        )


def upgrade(engine: Engine, chain: MigrationChain, revision: str = "heads") -> list[str]:
    """Bring the database to ``revision`` of ``chain``; returns the revisions applied."""
    script = chain.script()
    applied: list[str] = []

    def plan(current: Any, _context: MigrationContext) -> Any:
        steps = script._upgrade_revs(revision, current)
        applied.extend(step.revision.revision for step in steps)
        return steps

    config = Config()
    config.set_main_option("script_location", str(chain.location))
    with _locked(engine) as conn:
        _check_not_legacy(conn, chain)
        with EnvironmentContext(config, script, fn=plan, destination_rev=revision) as env:
            env.configure(connection=conn, version_table=chain.version_table)
            with env.begin_transaction():
                env.run_migrations()
    if applied:
        log.info("migrated %s: applied %s", chain.name, ", ".join(applied))
    return applied


@contextlib.asynccontextmanager
async def migrated_database(
    db: Database, chains: Sequence[MigrationChain]
) -> AsyncIterator[Database]:
    """The database lifespan of a migrating service: upgrade every chain, dispose at the end."""
    for chain in chains:
        await db.run(upgrade, db.engine, chain)
    try:
        yield db
    finally:
        db.dispose()
