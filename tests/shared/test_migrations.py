"""shared.migrations: one version table per service, shared outbox table, serialised upgrades."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, inspect

from shared.db import Database
from shared.migrations import OUTBOX, MigrationChain, MigrationError, current_revisions, upgrade
from shared.outbox import OutboxMessage
from tests.deployments import fresh_database

REVISION = """
import sqlalchemy as sa
from alembic import op

revision = "{rev}"
down_revision = {down}


def upgrade() -> None:
    {body}


def downgrade() -> None:
    pass
"""


def chain(tmp_path: Path, name: str, steps: list[str]) -> MigrationChain:
    """A chain of revisions ``0001..`` whose upgrade() bodies are ``steps``."""
    versions = tmp_path / name / "versions"
    versions.mkdir(parents=True)
    for i, body in enumerate(steps, start=1):
        down = repr(f"{i - 1:04d}") if i > 1 else "None"
        text = REVISION.format(rev=f"{i:04d}", down=down, body=body)
        (versions / f"{i:04d}_step.py").write_text(text)
    return MigrationChain(name, tmp_path / name, tables=(f"{name}_thing",))


def create_table(name: str) -> str:
    return f'op.create_table("{name}", sa.Column("id", sa.Integer(), primary_key=True))'


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'm.db'}")  # WAL + busy timeout, as services use
    else:
        db = Database(fresh_database(request.getfixturevalue("database_url")))
    request.addfinalizer(db.dispose)
    return db.engine


def test_chains_keep_separate_version_tables(engine: Engine, tmp_path: Path) -> None:
    first = chain(tmp_path, "alpha", [create_table("alpha_thing")])
    second = chain(tmp_path, "beta", [create_table("beta_thing"), create_table("beta_other")])
    assert upgrade(engine, first) == ["0001"]
    assert upgrade(engine, second) == ["0001", "0002"]
    assert current_revisions(engine, first) == ("0001",)
    assert current_revisions(engine, second) == ("0002",)
    tables = set(inspect(engine).get_table_names())
    assert {"alembic_version_alpha", "alembic_version_beta", "beta_other"} <= tables


def test_a_later_revision_is_applied_alone(engine: Engine, tmp_path: Path) -> None:
    one = chain(tmp_path / "v1", "gamma", [create_table("gamma_thing")])
    assert upgrade(engine, one) == ["0001"]
    two = chain(tmp_path / "v2", "gamma", [create_table("gamma_thing"), create_table("gamma_new")])
    assert upgrade(engine, two) == ["0002"]
    assert "gamma_new" in inspect(engine).get_table_names()


def test_a_failing_revision_leaves_nothing_behind(engine: Engine, tmp_path: Path) -> None:
    broken = chain(
        tmp_path, "delta", [create_table("delta_thing"), 'raise RuntimeError("bad revision")']
    )
    with pytest.raises(RuntimeError, match="bad revision"):
        upgrade(engine, broken)
    assert current_revisions(engine, broken) == ()
    assert "delta_thing" not in inspect(engine).get_table_names()


def test_tables_made_before_migrations_are_reported(engine: Engine, tmp_path: Path) -> None:
    legacy = chain(tmp_path, "eps", [create_table("eps_thing")])
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE eps_thing (id INTEGER PRIMARY KEY)")
    with pytest.raises(MigrationError, match="created before migrations"):
        upgrade(engine, legacy)


def test_outbox_table_may_exist_already(engine: Engine) -> None:
    """Services that still use create_all make the same table: the outbox chain adopts it."""
    OutboxMessage.metadata.create_all(engine, tables=[OutboxMessage.__table__])  # type: ignore[attr-defined]
    assert upgrade(engine, OUTBOX) == ["0001"]
    assert current_revisions(engine, OUTBOX) == ("0001",)


def test_concurrent_upgrades_take_turns(engine: Engine, tmp_path: Path) -> None:
    """Services starting together on one database: every upgrade succeeds, one applies."""
    shared = chain(tmp_path, "zeta", [create_table("zeta_thing"), create_table("zeta_more")])
    applied: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            applied.append(upgrade(engine, shared))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(applied) == [[], [], [], ["0001", "0002"]]


def test_create_engine_urls_work_too(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'plain.db'}")
    try:
        assert upgrade(engine, OUTBOX) == ["0001"]
    finally:
        engine.dispose()
