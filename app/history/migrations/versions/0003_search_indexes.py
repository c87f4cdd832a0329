"""Search indexes on PostgreSQL: GIN (jsonb_path_ops) on the JSON a search filters by.

`cel_sql.py` adds `column @> {...}` to each equality on a JSON field (`event.data.x == 1`),
which these serve. Nothing on SQLite (its search walks the list index, bounded).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

INDEXES = (("runs", "events"), ("runs", "output"), ("runs", "error"), ("events", "event"))


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in INDEXES:
        op.create_index(
            f"ix_{table}_{column}_gin",
            table,
            [column],
            postgresql_using="gin",
            postgresql_ops={column: "jsonb_path_ops"},
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in INDEXES:
        op.drop_index(f"ix_{table}_{column}_gin", table_name=table)
