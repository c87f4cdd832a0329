"""The production history store: PostgreSQL through psycopg 3, JSONB columns.

The schema is migrated by `stepline history upgrade` (a release step) or `stepline dev`, not
by the web and worker processes: they check the revision on first use and refuse, naming the
command, while the database is behind. A database ahead of this version (a newer release
migrated it first during a rolling deploy) is accepted: migrations only add.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.sql.dml import Insert

from app.errors import HistoryUnavailable
from app.history import migrate
from app.history.sql import SqlHistory


class PostgresHistory(SqlHistory):
    def __init__(self, url: sa.URL) -> None:
        super().__init__(sa.create_engine(url, pool_pre_ping=True))

    def _prepare(self) -> None:
        revision = migrate.current(self.engine)
        if revision == migrate.head():
            return
        known = {
            script.revision
            for script in ScriptDirectory.from_config(migrate.config()).walk_revisions()
        }
        if revision is None or revision in known:
            raise HistoryUnavailable(
                f"the history database {self.url} is at revision {revision or 'none'}, "
                f"this Stepline needs {migrate.head()}: run `stepline history upgrade`"
            )

    def _insert(self, table: sa.Table) -> Insert:
        return insert(table)
