"""The registry's migration chain is recorded per service (the schema comparison of every
service's chain is in tests/test_migrations.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

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
        assert current_revisions(engine, MIGRATIONS) == MIGRATIONS.heads() == ("0002",)
        assert current_revisions(engine, OUTBOX) == ("0001",)
    finally:
        engine.dispose()


def test_0002_keeps_objectives_and_scopes_their_ids_by_system(tmp_path: Path) -> None:
    """A database made before 0002 keeps its objective versions; afterwards the same
    objective id may exist under another system, but not twice in one system."""
    engine = create_engine(f"sqlite:///{tmp_path / 'r.db'}")
    system = (
        "INSERT INTO registry_system (id, name, owner, intended_purpose, risk_level, task,"
        " features, prediction, attributes, label_horizon_seconds, status, created_at,"
        " updated_at, updated_by) VALUES (:id, 'n', 'o', 'p', 'low', 'binary_classification',"
        " '[]', '{}', '[]', 60, 'active', '2026-01-01', '2026-01-01', 'x')"
    )
    version = (
        "INSERT INTO registry_objective_version (objective_id, version, system_id, metric,"
        " parameters, comparator, threshold, window_seconds, min_samples, severity,"
        ' pending_windows, clearing_windows, owner, rationale, "references", status,'
        " changed_by, change_reason, changed_at) VALUES ('acc', 1, :system, 'accuracy', '{}',"
        " 'ge', 0.8, 60, 1, 'minor', 1, 1, 'o', '', '[]', 'active', 'x', 'r', '2026-01-01')"
    )
    try:
        upgrade(engine, OUTBOX)
        assert upgrade(engine, MIGRATIONS, "0001") == ["0001"]
        with engine.begin() as conn:
            for sid in ("a", "b"):
                conn.execute(text(system), {"id": sid})
            conn.execute(text(version), {"system": "a"})
            with pytest.raises(IntegrityError), conn.begin_nested():  # before 0002: ids global
                conn.execute(text(version), {"system": "b"})
        assert upgrade(engine, MIGRATIONS) == ["0002"]
        with engine.begin() as conn:
            conn.execute(text(version), {"system": "b"})
            with pytest.raises(IntegrityError), conn.begin_nested():
                conn.execute(text(version), {"system": "b"})
            rows = conn.execute(
                text("SELECT system_id, objective_id FROM registry_objective_version")
            ).all()
        assert sorted(tuple(r) for r in rows) == [("a", "acc"), ("b", "acc")]
    finally:
        engine.dispose()
