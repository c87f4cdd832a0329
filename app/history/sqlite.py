"""The embedded history store: one SQLite file (WAL mode, so the API reads while a worker
archives), created and migrated on first use by whichever process opens it first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.sql.dml import Insert

from app.history.sql import SqlHistory

BUSY_TIMEOUT_MS = 10_000
"""How long a writer waits for another process's write transaction before failing."""


class SqliteHistory(SqlHistory):
    def __init__(self, url: sa.URL) -> None:
        engine = sa.create_engine(url)
        sa.event.listen(engine, "connect", _pragmas)
        super().__init__(engine)

    def upgrade(self) -> None:
        database = self.engine.url.database
        if database and database != ":memory:":
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        super().upgrade()

    def _prepare(self) -> None:
        self.upgrade()

    def _insert(self, table: sa.Table) -> Insert:
        return insert(table)


def _pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")  # first: the next one may wait
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
