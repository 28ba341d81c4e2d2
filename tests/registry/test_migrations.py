"""The registry's migration chain is recorded per service (the schema comparison of every
service's chain is in tests/test_migrations.py)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine

from services.registry.app import MIGRATIONS
from shared.migrations import OUTBOX, current_revisions, upgrade
from shared.outbox import OutboxMessage

TABLES = [*MIGRATIONS.tables, OutboxMessage.__tablename__]


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
