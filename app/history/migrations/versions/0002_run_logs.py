"""Runs keep their `ctx.logger` lines: runs.logs ({"lines": [...], "dropped": n}, JSON).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    op.add_column("runs", sa.Column("logs", JSON))


def downgrade() -> None:
    op.drop_column("runs", "logs")
