"""Every service's Alembic migrations build exactly the schema its SQLModel tables declare,
on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, MetaData, create_engine, inspect
from sqlmodel import SQLModel

from shared.migrations import OUTBOX, MigrationChain, upgrade
from shared.outbox import OutboxMessage
from tests.deployments import fresh_database


def chains() -> list[MigrationChain]:
    """The chains services declare as ``services.<name>.app.MIGRATIONS``."""
    found = []
    for service in ("registry", "ingest", "evaluator", "alerts"):
        chain = getattr(importlib.import_module(f"services.{service}.app"), "MIGRATIONS", None)
        if isinstance(chain, MigrationChain):
            found.append(chain)
    return found


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


def test_registry_and_alerts_migrate() -> None:
    assert {"registry", "alerts"} <= {chain.name for chain in chains()}


@pytest.mark.parametrize("chain", chains(), ids=lambda chain: chain.name)
def test_migrated_and_created_schemas_are_the_same(
    chain: MigrationChain, two_databases: tuple[Engine, Engine]
) -> None:
    migrated, created = two_databases
    tables = [*chain.tables, OutboxMessage.__tablename__]
    assert upgrade(migrated, OUTBOX) == ["0001"]
    assert upgrade(migrated, chain)[-1:] == list(chain.heads())  # the whole chain, up to its head
    SQLModel.metadata.create_all(
        created, tables=[SQLModel.metadata.tables[name] for name in tables]
    )
    assert schema(migrated, tables) == schema(created, tables)
    assert set(inspect(migrated).get_table_names()) == {
        *tables,
        chain.version_table,
        "alembic_version_outbox",
    }

    # and Alembic's own comparison of the migrated database with the models finds nothing
    target = MetaData()
    for name in tables:
        SQLModel.metadata.tables[name].to_metadata(target)
    with migrated.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "include_name": lambda name, kind, _parent: kind != "table" or name in tables,
            },
        )
        assert compare_metadata(context, target) == []
