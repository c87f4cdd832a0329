"""The history store's SQL, shared by both databases (SQLAlchemy 2 Core). A subclass gives the
dialect's upsert (`_insert`), its connection set-up and how it gets its schema ready.

Every list query walks one index of `schema.py` backwards from a row-value bound
(`(created_at, run_id) < (:at, :id)`), so a page costs O(log N + limit) whatever the page.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.dml import Insert

from app.errors import HistoryUnavailable
from app.history import migrate, sql_search
from app.history.cel_sql import Source, translate
from app.history.records import ArchivedRun, ArchivedStep
from app.history.schema import event_runs, events, run_steps, runs
from app.history.sql_search import Budget, Listing, Query, run_variables_of
from app.history.store import HistoryStore, Purged
from app.models import JSON
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

_VIEW_COLUMNS = (
    runs.c.run_id,
    runs.c.function_id,
    runs.c.status,
    runs.c.event_ids,
    runs.c.created_at,
    runs.c.started_at,
    runs.c.ended_at,
    runs.c.output,
    runs.c.error,
    runs.c.original_run_id,
)

RUNS_SOURCE = Source(
    json={
        "event": (runs.c.events, (0,)),
        "output": (runs.c.output, ()),
        "error": (runs.c.error, ()),
    },
    columns={
        ("status",): runs.c.status,
        ("function_id",): runs.c.function_id,
        ("run_id",): runs.c.run_id,
        ("created_at",): runs.c.created_at,
        ("ended_at",): runs.c.ended_at,
    },
)
EVENTS_SOURCE = Source(
    json={"event": (events.c.event, ())},
    columns={("event", "name"): events.c.name, ("received_at",): events.c.received_at},
)


class SqlHistory(HistoryStore):
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.url = engine.url.render_as_string(hide_password=True)
        self._ready = False
        self._ready_lock = threading.Lock()

    # --- schema ---------------------------------------------------------------------------
    def upgrade(self) -> None:
        migrate.upgrade(self.engine)
        self._ready = True

    def close(self) -> None:
        self.engine.dispose()

    def _prepare(self) -> None:
        """Make the schema usable, or raise HistoryUnavailable saying what to do."""
        raise NotImplementedError

    def _begin(self) -> AbstractContextManager[sa.Connection]:
        """A transaction (committed at the end of the block)."""
        return self._connection(write=True)

    def _connect(self) -> AbstractContextManager[sa.Connection]:
        return self._connection(write=False)

    @contextmanager
    def _connection(self, *, write: bool) -> Iterator[sa.Connection]:
        """A connection to a ready schema; a database that cannot be reached (or is locked
        past the busy timeout) raises HistoryUnavailable (503 in the API)."""
        self._ensure_ready()
        try:
            with self.engine.begin() if write else self.engine.connect() as connection:
                yield connection
        except sa.exc.OperationalError as exc:
            raise HistoryUnavailable(f"the history database {self.url}: {exc.orig}") from exc

    def _ensure_ready(self) -> None:
        if self._ready:
            return
        with self._ready_lock:
            if not self._ready:
                try:
                    self._prepare()
                except sa.exc.OperationalError as exc:
                    raise HistoryUnavailable(
                        f"the history database {self.url} is unreachable: {exc.orig}"
                    ) from exc
                self._ready = True

    def _insert(self, table: sa.Table) -> Insert:
        raise NotImplementedError

    def _upsert(self, table: sa.Table, keys: Sequence[str]) -> sa.Executable:
        insert = self._insert(table)
        excluded = insert.excluded  # type: ignore[attr-defined]
        columns = {c.name: excluded[c.name] for c in table.columns if c.name not in keys}
        return insert.on_conflict_do_update(  # type: ignore[attr-defined, no-any-return]
            index_elements=list(keys), set_=columns
        )

    def _insert_new(self, table: sa.Table) -> sa.Executable:
        return self._insert(table).on_conflict_do_nothing()  # type: ignore[attr-defined, no-any-return]

    # --- writes ---------------------------------------------------------------------------
    def save_runs(self, runs_: Sequence[ArchivedRun], now: int) -> None:
        if not runs_:
            return
        run_rows = [_run_row(run, now) for run in runs_]
        step_rows = [_step_row(run.run_id, step) for run in runs_ for step in run.steps]
        links = [
            {"event_internal_id": event_id, "run_id": run.run_id}
            for run in runs_
            for event_id in dict.fromkeys(run.event_ids)
        ]
        with self._begin() as connection:
            connection.execute(self._upsert(runs, ["run_id"]), run_rows)
            if step_rows:
                connection.execute(self._upsert(run_steps, ["run_id", "step_id"]), step_rows)
            if links:
                connection.execute(self._insert_new(event_runs), links)

    def save_events(self, records: Sequence[EventRecord]) -> None:
        if not records:
            return
        with self._begin() as connection:
            connection.execute(self._insert_new(events), [_event_row(r) for r in records])

    # --- reads ----------------------------------------------------------------------------
    def get_run(self, run_id: str) -> RunView | None:
        with self._connect() as connection:
            row = connection.execute(
                sa.select(*_VIEW_COLUMNS, runs.c.logs).where(runs.c.run_id == run_id)
            ).first()
            if row is None:
                return None
            steps = connection.execute(
                sa.select(run_steps.c.record, run_steps.c.memoized, run_steps.c.memo)
                .where(run_steps.c.run_id == run_id, run_steps.c.record.is_not(None))
                .order_by(run_steps.c.position)
            ).all()
        view = _view(row)
        for record, memoized, memo in steps:
            shown = dict(record)
            if memoized:
                shown["memo"] = memo
            view.steps.append(shown)
        return view

    def run_views(self, run_ids: Sequence[str]) -> list[RunView]:
        if not run_ids:
            return []
        with self._connect() as connection:
            rows = connection.execute(
                sa.select(*_VIEW_COLUMNS).where(runs.c.run_id.in_(list(run_ids)))
            ).all()
        found = {row.run_id: _view(row) for row in rows}
        return [found[run_id] for run_id in run_ids if run_id in found]

    def page_runs(
        self, limit: int, where: RunCriteria = ANY_RUN, *, after: Position | None = None
    ) -> Page[RunView]:
        query: Query = sa.select(*_VIEW_COLUMNS).where(*_runs_base(where))
        query = _after(query, runs.c.created_at, runs.c.run_id, after)
        with self._connect() as connection:
            rows = connection.execute(query.limit(limit + 1)).all()
        views = [_view(row) for row in rows[:limit]]
        more = len(rows) > limit and bool(views)
        return Page(views, (views[-1].created_at, views[-1].run_id) if more else None)

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
        listing = Listing(
            RUNS_SOURCE,
            _runs_base(where),
            runs.c.created_at,
            runs.c.run_id,
            (*_VIEW_COLUMNS, _first_event(self._dialect()).label("first_event")),
        )
        with self._connect() as connection:
            rows, page = sql_search.search(
                connection, listing, search, Budget(limit, scan, evaluate, extend), after
            )
        views = [_view(row) for row in rows]
        return SearchPage(views, page.next, page.reached, page.partial)

    def count_runs(
        self,
        search: Filter | None,
        where: RunCriteria = ANY_RUN,
        *,
        evaluate: int,
    ) -> tuple[int, bool]:
        """How many stored runs match, and whether that count is exact (a filter SQL cannot
        express whole is evaluated on at most `evaluate` candidates: then a lower bound)."""
        clauses = _runs_base(where)
        translation = translate(search.tree, RUNS_SOURCE, self._dialect()) if search else None
        if translation is not None and translation.clause is not None:
            clauses.append(translation.clause)
        with self._connect() as connection:
            if translation is None or translation.exact:
                query = sa.select(sa.func.count()).select_from(runs).where(*clauses)
                return int(connection.execute(query).scalar_one()), True
            assert search is not None
            rows = connection.execute(
                sa.select(*_VIEW_COLUMNS, _first_event(self._dialect()))
                .where(*clauses)
                .order_by(runs.c.created_at.desc(), runs.c.run_id.desc())
                .limit(evaluate + 1)
            ).all()
        matched = len([row for row in rows[:evaluate] if search.matches(run_variables_of(row))])
        return matched, len(rows) <= evaluate

    def _dialect(self) -> str:
        return self.engine.dialect.name

    def load_run(self, run_id: str) -> RunState | None:
        with self._connect() as connection:
            row = connection.execute(sa.select(runs).where(runs.c.run_id == run_id)).first()
            if row is None:
                return None
            steps = self._memoized(connection, run_id)
        return RunState(
            run_id=row.run_id,
            function_id=row.function_id,
            status=row.status,
            events=list(row.events),
            steps={step: memo for step, memo, _ in steps},
            stack=[step for step, _, _ in steps],
            disable_immediate_execution=False,
            created_at=row.created_at,
            started_at=row.started_at,
            correlation_id=row.correlation_id,
            kinds={step: kind for step, _, kind in steps if kind is not None},
        )

    def memoized_steps(self, run_id: str) -> MemoizedSteps | None:
        with self._connect() as connection:
            if (
                connection.execute(sa.select(runs.c.run_id).where(runs.c.run_id == run_id)).first()
                is None
            ):
                return None
            memos = self._memoized(connection, run_id)
            records = connection.execute(
                sa.select(run_steps.c.step_id, run_steps.c.record).where(
                    run_steps.c.run_id == run_id, run_steps.c.record.is_not(None)
                )
            ).all()
        return MemoizedSteps(
            stack=[step for step, _, _ in memos],
            steps={step: memo for step, memo, _ in memos},
            history={step: dict(record) for step, record in records},
        )

    @staticmethod
    def _memoized(connection: sa.Connection, run_id: str) -> list[tuple[str, JSON, str | None]]:
        """(step id, memo, recorded kind) of the run's memoized steps, in stack order."""
        rows = connection.execute(
            sa.select(run_steps.c.step_id, run_steps.c.memo, run_steps.c.kind)
            .where(run_steps.c.run_id == run_id, run_steps.c.stack_index.is_not(None))
            .order_by(run_steps.c.stack_index)
        ).all()
        return [(row.step_id, row.memo, row.kind) for row in rows]

    def get_event(self, internal_id: str) -> EventRecord | None:
        with self._connect() as connection:
            row = connection.execute(
                sa.select(events.c.internal_id, events.c.received_at, events.c.event).where(
                    events.c.internal_id == internal_id
                )
            ).first()
        return None if row is None else EventRecord(row[0], row[1], dict(row[2]))

    def page_events(
        self,
        limit: int,
        where: EventCriteria = ANY_EVENT,
        *,
        after: Position | None = None,
    ) -> Page[EventRecord]:
        where.check_unnamed()
        query: Query = sa.select(events.c.internal_id, events.c.received_at, events.c.event)
        query = query.where(*_events_base(where))
        query = _after(query, events.c.received_at, events.c.internal_id, after)
        with self._connect() as connection:
            rows = connection.execute(query.limit(limit + 1)).all()
        records = [EventRecord(row[0], row[1], dict(row[2])) for row in rows[:limit]]
        more = len(rows) > limit and bool(records)
        last = records[-1] if records else None
        return Page(records, (last.received_at, last.internal_id) if more and last else None)

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
        listing = Listing(
            EVENTS_SOURCE,
            _events_base(where),
            events.c.received_at,
            events.c.internal_id,
            (events.c.internal_id, events.c.received_at, events.c.event),
        )
        with self._connect() as connection:
            rows, page = sql_search.search(
                connection, listing, search, Budget(limit, scan, evaluate, extend), after
            )
        records = [EventRecord(row[0], row[1], dict(row[2])) for row in rows]
        return SearchPage(records, page.next, page.reached, page.partial)

    def event_run_ids(self, internal_id: str) -> list[str]:
        with self._connect() as connection:
            rows = connection.execute(
                sa.select(event_runs.c.run_id)
                .where(event_runs.c.event_internal_id == internal_id)
                .order_by(event_runs.c.run_id)
            ).all()
        return [row[0] for row in rows]

    # --- retention ------------------------------------------------------------------------
    def purge(self, cutoff: int, limit: int) -> Purged:
        purged = Purged()
        with self._begin() as connection:
            ids = _ids(
                connection,
                sa.select(runs.c.run_id)
                .where(runs.c.ended_at <= cutoff)
                .order_by(runs.c.ended_at)
                .limit(limit),
            )
            if ids:
                connection.execute(sa.delete(run_steps).where(run_steps.c.run_id.in_(ids)))
                connection.execute(sa.delete(event_runs).where(event_runs.c.run_id.in_(ids)))
                connection.execute(sa.delete(runs).where(runs.c.run_id.in_(ids)))
                purged.runs = len(ids)
        with self._begin() as connection:
            ids = _ids(
                connection,
                sa.select(events.c.internal_id)
                .where(events.c.received_at <= cutoff)
                .order_by(events.c.received_at)
                .limit(limit),
            )
            if ids:
                connection.execute(
                    sa.delete(event_runs).where(event_runs.c.event_internal_id.in_(ids))
                )
                connection.execute(sa.delete(events).where(events.c.internal_id.in_(ids)))
                purged.events = len(ids)
        return purged


# --- rows -------------------------------------------------------------------------------------
def _run_row(run: ArchivedRun, now: int) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "function_id": run.function_id,
        "status": run.status,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "event_ids": run.event_ids,
        "events": run.events,
        "output": run.output,
        "error": run.error,
        "original_run_id": run.original_run_id,
        "correlation_id": run.correlation_id,
        "archived_at": now,
        "logs": run.logs,
    }


def _step_row(run_id: str, step: ArchivedStep) -> dict[str, Any]:
    record = step.record or {}
    return {
        "run_id": run_id,
        "step_id": step.step_id,
        "position": step.position,
        "stack_index": step.stack_index,
        "memoized": step.memoized,
        "name": _text(record.get("name")),
        "kind": _text(record.get("kind")),
        "status": _text(record.get("status")),
        "attempts": _int(record.get("attempts")) or 0,
        "started_at": _int(record.get("started_at")),
        "ended_at": _int(record.get("ended_at")),
        "record": step.record,
        "memo": step.memo if step.memoized else None,
    }


def _event_row(record: EventRecord) -> dict[str, Any]:
    event = record.event
    return {
        "internal_id": record.internal_id,
        "name": _text(event.get("name")) or "",
        "event_id": _text(event.get("id")) or None,
        "received_at": record.received_at,
        "ts": _int(event.get("ts")),
        "event": event,
    }


def _view(row: sa.Row[*tuple[Any, ...]]) -> RunView:
    """A run as the API shows it; its log lines only when the row has them (`get_run`)."""
    logs = row._mapping.get("logs") or {}
    return RunView(
        run_id=row.run_id,
        function_id=row.function_id,
        status=row.status,
        event_ids=list(row.event_ids),
        created_at=row.created_at,
        started_at=row.started_at,
        ended_at=row.ended_at,
        output=row.output,
        error=row.error,
        original_run_id=row.original_run_id,
        logs=list(logs.get("lines") or []),
        logs_dropped=int(logs.get("dropped") or 0),
    )


def _runs_base(where: RunCriteria) -> list[sa.ColumnElement[bool]]:
    """`where` as SQL conditions on the runs table's plain columns."""
    base: list[sa.ColumnElement[bool]] = []
    if where.function_id is not None:
        base.append(runs.c.function_id == where.function_id)
    if where.status is not None:
        base.append(runs.c.status == where.status)
    if where.created_after is not None:
        base.append(runs.c.created_at >= where.created_after)
    if where.created_before is not None:
        base.append(runs.c.created_at < where.created_before)
    return base


def _events_base(where: EventCriteria) -> list[sa.ColumnElement[bool]]:
    """`where` as SQL conditions on the events table's plain columns."""
    base: list[sa.ColumnElement[bool]] = []
    if where.name is not None:
        base.append(events.c.name == where.name)
    if where.received_after is not None:
        base.append(events.c.received_at >= where.received_after)
    if where.received_before is not None:
        base.append(events.c.received_at < where.received_before)
    return base


def _first_event(dialect: str) -> sa.ColumnElement[Any]:
    """The run's trigger event (the first of `events`), as JSON."""
    if dialect == "postgresql":
        return runs.c.events.op("->")(0)
    return sa.func.json_extract(runs.c.events, "$[0]")


def _text(value: JSON) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: JSON) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _ids(connection: sa.Connection, query: Query) -> list[str]:
    return [row[0] for row in connection.execute(query).all()]


def _after(
    query: Query,
    at: sa.ColumnElement[int],
    key: sa.ColumnElement[str],
    after: Position | None,
) -> Query:
    """Newest first by (at, key), strictly after position `after`."""
    query = query.order_by(at.desc(), key.desc())
    if after is None:
        return query
    return query.where(sa.tuple_(at, key) < sa.tuple_(sa.literal(after[0]), sa.literal(after[1])))
