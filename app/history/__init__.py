"""Run history in SQL: Redis holds live state, the history store holds what happened.

    store.py      HistoryStore, the interface; open_history(url)
    sql.py        the SQL both databases share (SQLAlchemy Core)
    sql_search.py filtered pages: how far a search looks, what it answers when cut short
    sqlite.py     the embedded default: a file in the data directory
    postgres.py   production: PostgreSQL (JSONB)
    schema.py     the tables; migrations/ their Alembic history (migrate.py runs it)
    records.py    what the archiver moves
    archiver.py   finished runs and events -> the history store; Redis drops them after
    reads.py      reads that go where the data is (Redis or the history store), merged

What lives where, and for how long:

    Redis            live runs (queued, running, sleeping, waiting); a finished run or an
                     event until the archiver has it and STEPLINE_HOT_WINDOW_SECONDS more
    history store    every finished run (with steps) and every event, until
                     STEPLINE_RETENTION_DAYS after it ended / was received
"""

from __future__ import annotations

from app.config import Settings
from app.history.store import HistoryStore, default_url, open_history

__all__ = ["HistoryStore", "history_url", "open_history", "open_settings_history"]


def history_url(settings: Settings) -> str:
    """STEPLINE_HISTORY_URL, else the SQLite file in STEPLINE_DATA_DIR."""
    return settings.history_url or default_url(settings.data_dir)


def open_settings_history(settings: Settings) -> HistoryStore:
    return open_history(history_url(settings))
