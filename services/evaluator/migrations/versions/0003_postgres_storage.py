"""evaluator: PostgreSQL storage of the hot tables (no schema change; SQLite untouched).

- ``evaluator_join`` pages filled to half (``fillfactor``): marking a prediction labelled
  then rewrites its row in the same page (a HOT update) instead of adding an entry to each of
  its two indexes.
- the checkpointed window states (megabytes of JSON each, rewritten every checkpoint) are
  compressed with lz4 instead of pglz, several times cheaper for the server.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JOIN_FILLFACTOR = 50
_STATES = ("evaluator_window", "evaluator_label_window")


def _lz4_available() -> bool:
    """PostgreSQL built with lz4 (``default_toast_compression`` accepts it)."""
    bind = op.get_bind()
    try:
        with bind.begin_nested():
            bind.exec_driver_sql("SET LOCAL default_toast_compression = 'lz4'")
    except Exception:
        return False
    return True


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER TABLE evaluator_join SET (fillfactor = {JOIN_FILLFACTOR})")
    if _lz4_available():
        for table in _STATES:
            op.execute(f"ALTER TABLE {table} ALTER COLUMN state SET COMPRESSION lz4")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE evaluator_join RESET (fillfactor)")
    for table in _STATES:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN state SET COMPRESSION default")
