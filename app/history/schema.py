"""The history tables (SQLAlchemy Core). Alembic migrations in `migrations/versions/` create
them; a test checks that the migrated database matches these definitions on both dialects.

    runs          one row per finished run        PK run_id
    run_steps     one row per step of a run       PK (run_id, step_id)
    events        one row per received event      PK internal_id
    event_runs    which runs an event started     PK (event_internal_id, run_id)

Times are integer milliseconds since the epoch, as everywhere in Stepline. Event data, run
outputs and errors, step records and memos are JSON (JSONB on PostgreSQL, so a search can
index and query into them); an absent output or error is SQL NULL. Lists are newest first by
(created_at, run_id) / (received_at, internal_id), which every list index ends with.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

JSONType = sa.JSON(none_as_null=True).with_variant(
    postgresql.JSONB(none_as_null=True), "postgresql"
)
"""JSON on SQLite, JSONB on PostgreSQL; Python None is stored as SQL NULL."""

ID = sa.String(64).with_variant(sa.String(64, collation="C"), "postgresql")
"""Ids sort bytewise everywhere, as Redis sorts members, so positions mean the same in both."""
NAME = sa.String(255)

metadata = sa.MetaData()

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", ID, primary_key=True),
    sa.Column("function_id", NAME, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("started_at", sa.BigInteger),
    sa.Column("ended_at", sa.BigInteger, nullable=False),
    sa.Column("event_ids", JSONType, nullable=False),
    sa.Column("events", JSONType, nullable=False),
    sa.Column("output", JSONType),
    sa.Column("error", JSONType),
    sa.Column("original_run_id", ID),
    sa.Column("correlation_id", NAME),
    sa.Column("archived_at", sa.BigInteger, nullable=False),
    sa.Column("logs", JSONType),
    sa.Index("ix_runs_created", "created_at", "run_id"),
    sa.Index("ix_runs_function_created", "function_id", "created_at", "run_id"),
    sa.Index("ix_runs_status_created", "status", "created_at", "run_id"),
    sa.Index("ix_runs_function_status_created", "function_id", "status", "created_at", "run_id"),
    sa.Index("ix_runs_ended", "ended_at"),
)

run_steps = sa.Table(
    "run_steps",
    metadata,
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
    sa.Column("record", JSONType),
    sa.Column("memo", JSONType),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("internal_id", ID, primary_key=True),
    sa.Column("name", NAME, nullable=False),
    sa.Column("event_id", NAME),
    sa.Column("received_at", sa.BigInteger, nullable=False),
    sa.Column("ts", sa.BigInteger),
    sa.Column("event", JSONType, nullable=False),
    sa.Index("ix_events_received", "received_at", "internal_id"),
    sa.Index("ix_events_name_received", "name", "received_at", "internal_id"),
)


def _postgres_only(index: sa.Index) -> sa.Index:
    """An index created on PostgreSQL only (`info["dialect"]` tells the schema check)."""
    index.info["dialect"] = "postgresql"
    return index.ddl_if(dialect="postgresql")


SEARCH_INDEXES = [
    _postgres_only(
        sa.Index(
            f"ix_{table.name}_{column}_gin",
            table.c[column],
            postgresql_using="gin",
            postgresql_ops={column: "jsonb_path_ops"},
        )
    )
    for table, column in ((runs, "events"), (runs, "output"), (runs, "error"), (events, "event"))
]
"""GIN (jsonb_path_ops) indexes serving a search's equalities on JSON fields: the SQL of
`cel_sql.py` says `column @> {...}` for each (migration 0003)."""

event_runs = sa.Table(
    "event_runs",
    metadata,
    sa.Column("event_internal_id", ID, primary_key=True),
    sa.Column("run_id", ID, primary_key=True),
    sa.Index("ix_event_runs_run", "run_id"),
)
