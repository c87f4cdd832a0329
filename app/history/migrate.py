"""Schema migrations of the history store, run with Alembic from code (no alembic.ini).

    upgrade(engine)    bring the database to the newest revision (`stepline history upgrade`,
                       `stepline dev`, and every process on first use of an SQLite file)
    current(engine)    the revision the database is at (None: no tables yet)
    head()             the newest revision shipped with this version

Concurrent upgrades are serialised: on PostgreSQL by a transaction-scoped advisory lock (the
DDL runs in that transaction, so a second upgrader waits, then finds nothing to do); on an
SQLite file by an exclusive lock on `<file>.lock` (web, worker and beat of one machine may
all open a fresh file at once).
"""

from __future__ import annotations

import fcntl
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

MIGRATIONS = Path(__file__).with_name("migrations")
ADVISORY_LOCK = 0x5354_4550_4C49_4E45 & 0x7FFF_FFFF_FFFF_FFFF
"""PostgreSQL advisory lock key held while upgrading ("STEPLINE")."""


def config(url: str = "", connection: sa.Connection | None = None) -> Config:
    cfg = Config(stdout=io.StringIO())
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    revision = ScriptDirectory.from_config(config()).get_current_head()
    assert revision is not None
    return revision


def current(engine: sa.Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    with _exclusive(engine), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK}
            )
        command.upgrade(config(connection=connection), revision)


def upgrade_sql(url: str, revision: str = "head") -> str:
    """The SQL an upgrade from scratch would run, for a DBA to review or apply by hand."""
    cfg = config(url)
    out = io.StringIO()
    cfg.output_buffer = out
    command.upgrade(cfg, revision, sql=True)
    return out.getvalue()


@contextmanager
def _exclusive(engine: sa.Engine) -> Iterator[None]:
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    with open(f"{database}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
