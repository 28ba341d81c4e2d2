"""registry: objective ids scoped by system (unique per system, objective and version).

An objective lives under /systems/{id}/objectives/{oid}; the same id (one YAML template)
may now exist under several systems.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLE = "registry_objective_version"
NEW = "uq_registry_objective_version"
OLD_COLUMNS = ["objective_id", "version"]
# the name SQLite's reflection gives 0001's unnamed constraint inside the batch below
CONVENTION = {"uq": "uq_%(table_name)s_%(column_0_N_name)s"}
OLD_CONVENTIONAL = f"uq_{TABLE}_objective_id_version"


def _old_name() -> str | None:
    for unique in sa.inspect(op.get_bind()).get_unique_constraints(TABLE):
        if list(unique["column_names"]) == OLD_COLUMNS:
            name = unique["name"]
            return name if name else OLD_CONVENTIONAL
    return None


def upgrade() -> None:
    old = _old_name()
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table(TABLE, naming_convention=CONVENTION) as batch:
            if old is not None:
                batch.drop_constraint(old, type_="unique")
            batch.create_unique_constraint(NEW, ["system_id", "objective_id", "version"])
    else:
        if old is not None:
            op.drop_constraint(old, TABLE, type_="unique")
        op.create_unique_constraint(NEW, TABLE, ["system_id", "objective_id", "version"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table(TABLE) as batch:
            batch.drop_constraint(NEW, type_="unique")
            batch.create_unique_constraint(OLD_CONVENTIONAL, OLD_COLUMNS)
    else:
        op.drop_constraint(NEW, TABLE, type_="unique")
        op.create_unique_constraint(OLD_CONVENTIONAL, TABLE, OLD_COLUMNS)
