"""The history tables: runs, run_steps, events, event_runs (see app/history/schema.py).

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
ID = sa.String(64).with_variant(sa.String(64, collation="C"), "postgresql")
NAME = sa.String(255)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("run_id", ID, primary_key=True),
        sa.Column("function_id", NAME, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("started_at", sa.BigInteger),
        sa.Column("ended_at", sa.BigInteger, nullable=False),
        sa.Column("event_ids", JSON, nullable=False),
        sa.Column("events", JSON, nullable=False),
        sa.Column("output", JSON),
        sa.Column("error", JSON),
        sa.Column("original_run_id", ID),
        sa.Column("correlation_id", NAME),
        sa.Column("archived_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_runs_created", "runs", ["created_at", "run_id"])
    op.create_index("ix_runs_function_created", "runs", ["function_id", "created_at", "run_id"])
    op.create_index("ix_runs_status_created", "runs", ["status", "created_at", "run_id"])
    op.create_index(
        "ix_runs_function_status_created",
        "runs",
        ["function_id", "status", "created_at", "run_id"],
    )
    op.create_index("ix_runs_ended", "runs", ["ended_at"])
    op.create_table(
        "run_steps",
        sa.Column("run_id", ID, primary_key=True),
        sa.Column("step_id", sa.String(255), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("stack_index", sa.Integer),
        sa.Column("memoized", sa.Boolean, nullable=False),
        sa.Column("name", NAME),
        sa.Column("kind", sa.String(32)),
        sa.Column("status", sa.String(32)),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("started_at", sa.BigInteger),
        sa.Column("ended_at", sa.BigInteger),
        sa.Column("record", JSON),
        sa.Column("memo", JSON),
    )
    op.create_table(
        "events",
        sa.Column("internal_id", ID, primary_key=True),
        sa.Column("name", NAME, nullable=False),
        sa.Column("event_id", NAME),
        sa.Column("received_at", sa.BigInteger, nullable=False),
        sa.Column("ts", sa.BigInteger),
        sa.Column("event", JSON, nullable=False),
    )
    op.create_index("ix_events_received", "events", ["received_at", "internal_id"])
    op.create_index("ix_events_name_received", "events", ["name", "received_at", "internal_id"])
    op.create_table(
        "event_runs",
        sa.Column("event_internal_id", ID, primary_key=True),
        sa.Column("run_id", ID, primary_key=True),
    )
    op.create_index("ix_event_runs_run", "event_runs", ["run_id"])


def downgrade() -> None:
    op.drop_table("event_runs")
    op.drop_table("events")
    op.drop_table("run_steps")
    op.drop_table("runs")
