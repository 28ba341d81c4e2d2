"""The evaluator's migration chain (the schema comparison with the models, on SQLite and
PostgreSQL, is tests/test_migrations.py)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, inspect
from sqlalchemy.dialects import sqlite
from sqlalchemy.schema import CreateTable
from sqlmodel import SQLModel

from services.evaluator.app import MIGRATIONS
from services.evaluator.models import ReferenceRow, ReferenceValuesRow
from services.evaluator.store import TABLES
from shared.migrations import OUTBOX, current_revisions, upgrade


def test_upgrade_is_idempotent_and_recorded_per_service(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'e.db'}")
    try:
        assert current_revisions(engine, MIGRATIONS) == ()
        upgrade(engine, OUTBOX)
        assert upgrade(engine, MIGRATIONS) == ["0001", "0002", "0003"]
        assert upgrade(engine, MIGRATIONS) == []
        assert current_revisions(engine, MIGRATIONS) == MIGRATIONS.heads() == ("0003",)
        assert set(MIGRATIONS.tables) <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_the_chain_covers_every_table_the_evaluator_writes() -> None:
    written = {t.__tablename__ for t in [*TABLES, ReferenceRow, ReferenceValuesRow]}  # type: ignore[attr-defined]
    written -= {"outbox_message"}
    assert written == set(MIGRATIONS.tables)


def test_the_join_tables_have_no_rowid_on_sqlite(tmp_path: Path) -> None:
    """One B-tree keyed by (system_id, id) per join table, migrated as the models declare."""
    engine = create_engine(f"sqlite:///{tmp_path / 'e.db'}")
    try:
        upgrade(engine, OUTBOX)
        upgrade(engine, MIGRATIONS)
        with engine.connect() as conn:
            ddl = dict(conn.exec_driver_sql("SELECT name, sql FROM sqlite_master").all())
    finally:
        engine.dispose()
    for table in ("evaluator_join", "evaluator_waiting"):
        assert ddl[table].rstrip().endswith("WITHOUT ROWID"), ddl[table]
        created = CreateTable(SQLModel.metadata.tables[table]).compile(dialect=sqlite.dialect())
        assert str(created).rstrip().endswith("WITHOUT ROWID")
