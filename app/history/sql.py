"""The history store's SQL, shared by both databases (SQLAlchemy 2 Core). A subclass gives the
dialect's upsert (`_insert`), its connection set-up and how it gets its schema ready.

Every list query walks one index of `schema.py` backwards from a row-value bound
(`(created_at, run_id) < (:at, :id)`), so a page costs O(log N + limit) whatever the page.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.dml import Insert

from app.errors import HistoryUnavailable
from app.history import migrate
from app.history.cel_sql import Source, Translation, translate
from app.history.records import ArchivedRun, ArchivedStep
from app.history.schema import event_runs, events, run_steps, runs
from app.history.store import HistoryStore, Purged
from app.models import JSON
from app.search import Filter, event_variables, run_variables
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

Query = sa.Select[*tuple[Any, ...]]
Row = sa.Row[*tuple[Any, ...]]

INDEXED_TIMEOUT_MS = 60
"""How long a search may try the GIN index or walk on (PostgreSQL) for values the bounded
walk of the list index found too few of; past it the bounded (partial) page is the answer."""

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
        base = _runs_base(where)
        at, key = runs.c.created_at, runs.c.run_id
        columns = (*_VIEW_COLUMNS, _first_event(self._dialect()).label("first_event"))
        rows, page = self._search(
            search, RUNS_SOURCE, base, at, key, after, columns, limit, scan, evaluate, extend
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
        matched = len([row for row in rows[:evaluate] if search.matches(_run_variables(row))])
        return matched, len(rows) <= evaluate

    def _indexed(
        self,
        connection: sa.Connection,
        translation: Translation,
        base: list[sa.ColumnElement[bool]],
        after: Position | None,
        at: sa.ColumnElement[int],
        key: sa.ColumnElement[str],
    ) -> list[sa.ColumnElement[Any]] | None:
        """The whole search's conditions with the GIN-served one (PostgreSQL, exact filters
        with an equality on JSON): for values the bounded walk found too few of."""
        if translation.indexed is None or translation.clause is None or not translation.exact:
            return None
        clauses: list[sa.ColumnElement[Any]] = [*base, translation.indexed, translation.clause]
        if after is not None:
            clauses.append(
                sa.tuple_(at, key) < sa.tuple_(sa.literal(after[0]), sa.literal(after[1]))
            )
        return clauses

    def _within(self, connection: sa.Connection, query: Query) -> list[Row] | None:
        """Run `query` if it answers within INDEXED_TIMEOUT_MS, else None."""
        try:
            with connection.begin_nested():
                connection.exec_driver_sql(f"SET LOCAL statement_timeout = {INDEXED_TIMEOUT_MS}")
                return list(connection.execute(query).all())
        except sa.exc.OperationalError:
            return None

    def _bounded(self, connection: sa.Connection, query: Query) -> list[Row] | None:
        """`_within` on PostgreSQL; SQLite has no statement timeout (its walks are bounded by
        rows, and cheap: no server between)."""
        if self._dialect() == "postgresql":
            return self._within(connection, query)
        return list(connection.execute(query).all())

    def _dialect(self) -> str:
        return self.engine.dialect.name

    def _search(
        self,
        search: Filter | None,
        source: Source,
        base: list[sa.ColumnElement[bool]],
        at: sa.ColumnElement[int],
        key: sa.ColumnElement[str],
        after: Position | None,
        columns: Sequence[sa.ColumnElement[Any]],
        limit: int,
        scan: int,
        evaluate: int,
        extend: int = 0,
    ) -> tuple[list[Row], SearchPage[None]]:
        """Newest first, at most `scan` rows of the list index looked at (an index-only walk
        finds the edge; the filter's conditions on plain columns narrow that walk), at most
        `evaluate` of them evaluated with CEL when SQL cannot say the whole filter. Returns
        the matching rows (up to `limit`) and the paging.

        A filter SQL says whole that matched too few of the first `scan` rows goes on: a
        value whose matches there say `extend` more rows fill the page walks on that far
        (neighbouring rows in `created_at` order, few pages read); a rarer one, or none
        found, tries the GIN index (PostgreSQL, an equality on JSON, one heap page per
        match); without a GIN-served condition it walks `extend` more rows. Either within
        INDEXED_TIMEOUT_MS on PostgreSQL, else the first rows are the (partial) answer."""
        clauses = list(base)
        if after is not None:
            clauses.append(
                sa.tuple_(at, key) < sa.tuple_(sa.literal(after[0]), sa.literal(after[1]))
            )
        translation = translate(search.tree, source, self._dialect()) if search else None
        if translation is not None and translation.narrow is not None:
            clauses.append(translation.narrow)  # the walk looks only at rows that can match
        with self._connect() as connection:
            walk = list(clauses)
            edge = _edge(connection, walk, at, key, scan)
            if edge is not None:
                clauses.append(
                    sa.tuple_(at, key) >= sa.tuple_(sa.literal(edge[0]), sa.literal(edge[1]))
                )
            if translation is not None and translation.clause is not None:
                clauses.append(translation.clause)
            query = sa.select(*columns).where(*clauses).order_by(at.desc(), key.desc())
            if search is None or translation is None or translation.exact:
                rows = connection.execute(query.limit(limit + 1)).all()
                if len(rows) <= limit and edge is not None and translation is not None:
                    # too few in the first rows: go on by density (a walk further back) or,
                    # for rare values, through the GIN index (PostgreSQL)
                    found = len(rows)
                    need = extend + 1 if not found else -(-(limit + 1 - found) * scan // found)
                    indexed = self._indexed(connection, translation, base, after, at, key)
                    if indexed is not None and need > extend:
                        query = sa.select(*columns).where(*indexed).order_by(at.desc(), key.desc())
                        complete = self._within(connection, query.limit(limit + 1))
                        if complete is not None:
                            return _paged(complete, limit, None, budget_hit=False)
                        return _paged(rows, limit, edge, budget_hit=False)
                    if translation.clause is not None and extend > 0:
                        walk.append(
                            sa.tuple_(at, key) < sa.tuple_(sa.literal(edge[0]), sa.literal(edge[1]))
                        )
                        further = _edge(connection, walk, at, key, min(need, extend))
                        if further is not None:
                            walk.append(
                                sa.tuple_(at, key)
                                >= sa.tuple_(sa.literal(further[0]), sa.literal(further[1]))
                            )
                        more = self._bounded(
                            connection,
                            sa.select(*columns)
                            .where(*walk, translation.clause)
                            .order_by(at.desc(), key.desc())
                            .limit(limit + 1 - found),
                        )
                        if more is None:  # too slow now (a loaded database): the first rows
                            return _paged(rows, limit, edge, budget_hit=False)
                        return _paged([*rows, *more], limit, further, budget_hit=False)
                return _paged(rows, limit, edge, budget_hit=False)
            matched: list[Row] = []
            evaluated = 0
            batch = limit + 1
            last: Position | None = None
            while len(matched) <= limit and evaluated < evaluate:
                step = query
                if last is not None:
                    step = step.where(
                        sa.tuple_(at, key) < sa.tuple_(sa.literal(last[0]), sa.literal(last[1]))
                    )
                chunk = connection.execute(step.limit(min(batch, evaluate - evaluated))).all()
                for row in chunk:
                    evaluated += 1
                    last = _position(row)
                    if search.matches(_variables(search, row)):
                        matched.append(row)
                        if len(matched) > limit:
                            break
                if len(chunk) < batch:
                    break
            budget_hit = len(matched) <= limit and evaluated >= evaluate and last is not None
            if budget_hit:
                return _paged(matched, limit, last, budget_hit=True)
            return _paged(matched, limit, edge, budget_hit=False)

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
        base = _events_base(where)
        columns = (events.c.internal_id, events.c.received_at, events.c.event)
        rows, page = self._search(
            search,
            EVENTS_SOURCE,
            base,
            events.c.received_at,
            events.c.internal_id,
            after,
            columns,
            limit,
            scan,
            evaluate,
            extend,
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


def _edge(
    connection: sa.Connection,
    clauses: list[sa.ColumnElement[Any]],
    at: sa.ColumnElement[int],
    key: sa.ColumnElement[str],
    rows: int,
) -> Position | None:
    """The `rows`-th row newest first under `clauses` (an index-only walk of the list index):
    the bound of a look at that many rows; None when there are no more rows than that."""
    found = connection.execute(
        sa.select(at, key).where(*clauses).order_by(at.desc(), key.desc()).offset(rows - 1).limit(2)
    ).all()
    return (found[0][0], found[0][1]) if len(found) == 2 else None


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


def _position(row: Row) -> Position:
    mapping = row._mapping
    if "run_id" in mapping:
        return (mapping["created_at"], mapping["run_id"])
    return (mapping["received_at"], mapping["internal_id"])


def _variables(search: Filter, row: Row) -> dict[str, JSON]:
    if search.kind == "runs":
        return _run_variables(row)
    event = row[2]
    return event_variables(dict(event) if isinstance(event, dict) else {}, row[1])


def _run_variables(row: Row) -> dict[str, JSON]:
    event = row[-1]
    if isinstance(event, str):  # SQLite's json_extract answers the object as JSON text
        event = json.loads(event)
    return run_variables(
        event=event if isinstance(event, dict) else None,
        output=row.output,
        error=row.error,
        status=row.status,
        function_id=row.function_id,
        run_id=row.run_id,
        created_at=row.created_at,
        ended_at=row.ended_at,
    )


def _paged(
    rows: Sequence[Row], limit: int, reached: Position | None, *, budget_hit: bool
) -> tuple[list[Row], SearchPage[None]]:
    """The first `limit` rows with where to go on: after the last one when more matched,
    else from `reached` (where the bounded look stopped; None: it saw everything)."""
    items = list(rows[:limit])
    if len(rows) > limit:
        last = _position(items[-1])
        return items, SearchPage([], last, last, False)
    if reached is None:
        return items, SearchPage([], None, None, False)
    return items, SearchPage([], reached, reached, True)


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
