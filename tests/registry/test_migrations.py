"""The registry's Alembic migrations build exactly the schema its SQLModel tables declare."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, MetaData, create_engine, inspect
from sqlmodel import SQLModel

from services.registry.app import MIGRATIONS
from shared.migrations import OUTBOX, current_revisions, upgrade
from shared.outbox import OutboxMessage
from tests.registry.conftest import fresh_database

TABLES = [*MIGRATIONS.tables, OutboxMessage.__tablename__]


def schema(engine: Engine, tables: list[str]) -> dict[str, Any]:
    """Everything SQLAlchemy's inspector reports about the tables, comparable with ==."""
    inspector = inspect(engine)
    dialect = engine.dialect
    found: dict[str, Any] = {}
    for table in tables:
        found[table] = {
            "columns": [
                (c["name"], str(c["type"].compile(dialect=dialect)), c["nullable"])
                for c in inspector.get_columns(table)
            ],
            "primary_key": inspector.get_pk_constraint(table)["constrained_columns"],
            "foreign_keys": sorted(
                (
                    tuple(fk["constrained_columns"]),
                    fk["referred_table"],
                    tuple(fk["referred_columns"]),
                )
                for fk in inspector.get_foreign_keys(table)
            ),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in inspector.get_indexes(table)
            ),
            "unique": sorted(
                (u["name"], tuple(u["column_names"]))
                for u in inspector.get_unique_constraints(table)
            ),
        }
    return found


@pytest.fixture(params=["sqlite", "postgresql"])
def two_databases(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Engine, Engine]]:
    if request.param == "sqlite":
        urls = (f"sqlite:///{tmp_path / 'migrated.db'}", f"sqlite:///{tmp_path / 'created.db'}")
    else:
        database_url: str = request.getfixturevalue("database_url")
        urls = (fresh_database(database_url), fresh_database(database_url))
    engines = (create_engine(urls[0]), create_engine(urls[1]))
    try:
        yield engines
    finally:
        for engine in engines:
            engine.dispose()


def test_migrated_and_created_schemas_are_the_same(two_databases: tuple[Engine, Engine]) -> None:
    migrated, created = two_databases
    assert upgrade(migrated, OUTBOX) == ["0001"]
    assert upgrade(migrated, MIGRATIONS) == ["0001"]
    SQLModel.metadata.create_all(
        created, tables=[SQLModel.metadata.tables[name] for name in TABLES]
    )
    assert schema(migrated, TABLES) == schema(created, TABLES)
    assert set(inspect(migrated).get_table_names()) == {
        *TABLES,
        "alembic_version_registry",
        "alembic_version_outbox",
    }

    # and Alembic's own comparison of the migrated database with the models finds nothing
    target = MetaData()
    for name in TABLES:
        SQLModel.metadata.tables[name].to_metadata(target)
    with migrated.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "include_name": lambda name, kind, _parent: kind != "table" or name in TABLES,
            },
        )
        assert compare_metadata(context, target) == []


def test_upgrade_is_idempotent_and_recorded_per_service(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'r.db'}")
    try:
        assert current_revisions(engine, MIGRATIONS) == ()
        upgrade(engine, OUTBOX)
        upgrade(engine, MIGRATIONS)
        assert upgrade(engine, MIGRATIONS) == []
        assert current_revisions(engine, MIGRATIONS) == MIGRATIONS.heads() == ("0001",)
        assert current_revisions(engine, OUTBOX) == ("0001",)
    finally:
        engine.dispose()
