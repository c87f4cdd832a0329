"""The history store: what happened, in SQL. Redis holds live state; when a run ends, the
archiver copies it here (`archiver.py`) and Redis drops it after a hot window.

    HistoryStore        the interface every reader and the archiver use (this module)
    SqliteHistory       sqlite.py: the embedded default, a file in the data directory
    PostgresHistory     postgres.py: production (STEPLINE_HISTORY_URL=postgresql+psycopg://...)
    open_history(url)   the implementation for a URL

Reads answer with the records the Redis store uses (`RunView`, `EventRecord`, `Page`, ...),
paged newest first by the same positions, so a cursor means the same thing in both stores and
`reads.py` can merge them. Only finished runs are ever stored here.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from app.history.records import ArchivedRun
from app.search import Filter
from app.state.records import (
    ANY_EVENT,
    ANY_RUN,
    EventCriteria,
    EventRecord,
    MemoizedSteps,
    Page,
    Position,
    RunCriteria,
    RunState,
    RunView,
    SearchPage,
)


@dataclass
class Purged:
    runs: int = 0
    events: int = 0
    caught_up: bool = True
    """False when retention stopped with rows still due (its time budget ran out)."""


class HistoryStore(abc.ABC):
    """Finished runs (with steps) and events, kept until retention deletes them."""

    url: str
    """Where the store is, without a password (for logs and `stepline dev`'s banner)."""

    # --- schema ---------------------------------------------------------------------------
    @abc.abstractmethod
    def upgrade(self) -> None:
        """Create or migrate the tables to this version's schema (Alembic)."""

    @abc.abstractmethod
    def close(self) -> None: ...

    # --- writes (the archiver) ------------------------------------------------------------
    @abc.abstractmethod
    def save_runs(self, runs: Sequence[ArchivedRun], now: int) -> None:
        """Upsert the runs with their steps and event links by run id, in one transaction:
        saving a run twice leaves one copy (the second's)."""

    @abc.abstractmethod
    def save_events(self, events: Sequence[EventRecord]) -> None:
        """Insert the events, in one transaction; an event already stored is left alone."""

    # --- reads ----------------------------------------------------------------------------
    @abc.abstractmethod
    def get_run(self, run_id: str) -> RunView | None:
        """The run with its step history, as `Store.get_run` shows a live one."""

    @abc.abstractmethod
    def run_views(self, run_ids: Sequence[str]) -> list[RunView]:
        """The stored runs among `run_ids`, without steps, in the order given."""

    @abc.abstractmethod
    def page_runs(
        self, limit: int, where: RunCriteria = ANY_RUN, *, after: Position | None = None
    ) -> Page[RunView]:
        """Newest first (created_at, then run id), the runs `where` selects, strictly after
        position `after`; views without steps."""

    @abc.abstractmethod
    def search_runs(
        self,
        search: Filter | None,
        limit: int,
        where: RunCriteria = ANY_RUN,
        *,
        after: Position | None = None,
        scan: int,
        evaluate: int,
        extend: int = 0,
    ) -> SearchPage[RunView]:
        """`page_runs` with a filter: at most `scan` runs (newest first, after `after`) are
        looked at, and at most `evaluate` of them evaluated with CEL where SQL cannot say the
        whole filter (`cel_sql.py`); a page cut short by those bounds is `partial`. A filter
        SQL says whole may look at up to `extend` more runs when the first `scan` held too
        few matches (`SearchBounds.history_extend`)."""

    @abc.abstractmethod
    def count_runs(
        self,
        search: Filter | None,
        where: RunCriteria = ANY_RUN,
        *,
        evaluate: int,
    ) -> tuple[int, bool]:
        """How many stored runs match, and whether the count is exact."""

    @abc.abstractmethod
    def load_run(self, run_id: str) -> RunState | None:
        """The run as the executor would load it (what rerun and replay start from)."""

    @abc.abstractmethod
    def memoized_steps(self, run_id: str) -> MemoizedSteps | None: ...

    @abc.abstractmethod
    def get_event(self, internal_id: str) -> EventRecord | None: ...

    @abc.abstractmethod
    def page_events(
        self,
        limit: int,
        where: EventCriteria = ANY_EVENT,
        *,
        after: Position | None = None,
    ) -> Page[EventRecord]:
        """Newest first (received_at, then internal id), as `page_runs`; every name
        (`EventCriteria.check_unnamed`)."""

    @abc.abstractmethod
    def search_events(
        self,
        search: Filter | None,
        limit: int,
        where: EventCriteria = ANY_EVENT,
        *,
        after: Position | None = None,
        scan: int,
        evaluate: int,
        extend: int = 0,
    ) -> SearchPage[EventRecord]:
        """`page_events` by name and filter, bounded as `search_runs`."""

    @abc.abstractmethod
    def event_run_ids(self, internal_id: str) -> list[str]:
        """Ids of the stored runs the event started, sorted."""

    # --- retention ------------------------------------------------------------------------
    @abc.abstractmethod
    def purge(self, cutoff: int, limit: int) -> Purged:
        """Delete at most `limit` runs that ended, and at most `limit` events received, at
        or before `cutoff` (ms), oldest first, each kind in one short transaction."""


SQLITE_FILE = "history.db"


def default_url(data_dir: str | Path) -> str:
    """The embedded default: an SQLite file in the data directory."""
    return f"sqlite:///{Path(data_dir).expanduser().resolve() / SQLITE_FILE}"


def normalize_url(url: str) -> str:
    """`postgres://` and `postgresql://` mean psycopg 3 (the driver Stepline ships with)."""
    for scheme in ("postgres://", "postgresql://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def open_history(url: str) -> HistoryStore:
    """The store for a SQLAlchemy URL: `sqlite:///path/history.db` or
    `postgresql+psycopg://user:password@host/db`. Nothing connects until first use."""
    import sqlalchemy as sa

    parsed = sa.make_url(normalize_url(url))
    if parsed.get_backend_name() == "sqlite":
        from app.history.sqlite import SqliteHistory

        return SqliteHistory(parsed)
    if parsed.get_backend_name() == "postgresql":
        from app.history.postgres import PostgresHistory

        return PostgresHistory(parsed)
    raise ValueError(
        f"STEPLINE_HISTORY_URL: unsupported database {parsed.get_backend_name()!r} "
        "(use sqlite:///path/history.db or postgresql+psycopg://user@host/db)"
    )
