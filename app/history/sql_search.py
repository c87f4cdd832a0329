"""Filtered pages of the history store (`GET /v1/runs?filter=`, `GET /v1/events?filter=`),
shared by both databases: how far a search looks, and what it answers when it stops early.

A search walks one list index newest first (`Listing`) within a `Budget`:

1. An index-only walk finds the `scan`-th row (the *edge*; the filter's conditions on plain
   columns narrow that walk), and the page is read between the start and the edge.
2. A filter SQL says whole (`Translation.exact`) that matched too few rows there goes on: a
   value whose matches say `extend` more rows fill the page walks on that far (neighbouring
   rows in `created_at` order, few pages read); a rarer one, or none found, tries the GIN
   index (PostgreSQL, an equality on JSON, one heap page per match); without a GIN-served
   condition it walks `extend` more rows. Either within INDEXED_TIMEOUT_MS on PostgreSQL,
   else the first rows are the (partial) answer.
3. A filter SQL cannot say whole is evaluated with CEL on at most `evaluate` rows.

Every answer says where to go on (`SearchPage.next`) and whether the look was cut short
(`partial`), so a client pages through the rest.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import Tuple

from app.history.cel_sql import Source, Translation, translate
from app.models import JSON
from app.search import Filter, event_variables, run_variables
from app.state.records import Position, SearchPage

Query = sa.Select[*tuple[Any, ...]]
Row = sa.Row[*tuple[Any, ...]]

INDEXED_TIMEOUT_MS = 60
"""How long a search may try the GIN index or walk on (PostgreSQL) for values the bounded
walk of the list index found too few of; past it the bounded (partial) page is the answer."""


@dataclass(frozen=True)
class Listing:
    """One list index, walked newest first by (`at`, `key`): the table's conditions on plain
    columns (`base`), the columns a page reads and how the filter's names map to them."""

    source: Source
    base: list[sa.ColumnElement[bool]]
    at: sa.ColumnElement[int]
    key: sa.ColumnElement[str]
    columns: Sequence[sa.ColumnElement[Any]]

    def before(self, position: Position) -> sa.ColumnElement[bool]:
        """Rows strictly older than `position`."""
        older: sa.ColumnElement[bool] = sa.tuple_(self.at, self.key) < _bound(position)
        return older

    def from_(self, position: Position) -> sa.ColumnElement[bool]:
        """Rows no older than `position`."""
        newer: sa.ColumnElement[bool] = sa.tuple_(self.at, self.key) >= _bound(position)
        return newer

    def select(self, *clauses: sa.ColumnElement[Any]) -> Query:
        return sa.select(*self.columns).where(*clauses).order_by(self.at.desc(), self.key.desc())

    def edge(
        self, connection: sa.Connection, clauses: list[sa.ColumnElement[Any]], rows: int
    ) -> Position | None:
        """The `rows`-th row newest first under `clauses` (an index-only walk of the list
        index): the bound of a look at that many rows; None when there are no more rows."""
        found = connection.execute(
            sa.select(self.at, self.key)
            .where(*clauses)
            .order_by(self.at.desc(), self.key.desc())
            .offset(rows - 1)
            .limit(2)
        ).all()
        return (found[0][0], found[0][1]) if len(found) == 2 else None


@dataclass(frozen=True)
class Budget:
    """How much one page may cost: `limit` rows answered, at most `scan` rows of the list
    index looked at, `evaluate` of them evaluated with CEL, `extend` more walked for values
    the first look found too few of."""

    limit: int
    scan: int
    evaluate: int
    extend: int = 0


def search(
    connection: sa.Connection,
    listing: Listing,
    search: Filter | None,
    budget: Budget,
    after: Position | None,
) -> tuple[list[Row], SearchPage[None]]:
    """The rows of one page matching `search` (newest first, after `after`), and the paging."""
    return _Search(connection, listing, search, budget, after).page()


class _Search:
    def __init__(
        self,
        connection: sa.Connection,
        listing: Listing,
        search: Filter | None,
        budget: Budget,
        after: Position | None,
    ) -> None:
        self.connection = connection
        self.listing = listing
        self.search = search
        self.budget = budget
        self.after = after
        self.dialect = connection.engine.dialect.name
        self.translation = translate(search.tree, listing.source, self.dialect) if search else None

    def page(self) -> tuple[list[Row], SearchPage[None]]:
        listing, translation = self.listing, self.translation
        clauses = list(listing.base)
        if self.after is not None:
            clauses.append(listing.before(self.after))
        if translation is not None and translation.narrow is not None:
            clauses.append(translation.narrow)  # the walk looks only at rows that can match
        walk = list(clauses)
        edge = listing.edge(self.connection, walk, self.budget.scan)
        if edge is not None:
            clauses.append(listing.from_(edge))
        if translation is not None and translation.clause is not None:
            clauses.append(translation.clause)
        query = listing.select(*clauses)
        if self.search is None or translation is None or translation.exact:
            return self._exact(query, walk, edge)
        return self._evaluated(query, self.search, edge)

    def _exact(
        self, query: Query, walk: list[sa.ColumnElement[Any]], edge: Position | None
    ) -> tuple[list[Row], SearchPage[None]]:
        """A page SQL answers whole; too few in the first rows: go on by density (a walk
        further back) or, for rare values, through the GIN index (PostgreSQL)."""
        limit, extend, translation = self.budget.limit, self.budget.extend, self.translation
        rows = self.connection.execute(query.limit(limit + 1)).all()
        if len(rows) > limit or edge is None or translation is None:
            return _paged(rows, limit, edge, budget_hit=False)
        found = len(rows)
        need = extend + 1 if not found else -(-(limit + 1 - found) * self.budget.scan // found)
        indexed = self._indexed(translation)
        if indexed is not None and need > extend:
            complete = self._within(self.listing.select(*indexed).limit(limit + 1))
            if complete is not None:
                return _paged(complete, limit, None, budget_hit=False)
            return _paged(rows, limit, edge, budget_hit=False)
        if translation.clause is None or extend <= 0:
            return _paged(rows, limit, edge, budget_hit=False)
        walk = [*walk, self.listing.before(edge)]
        further = self.listing.edge(self.connection, walk, min(need, extend))
        if further is not None:
            walk.append(self.listing.from_(further))
        more = self._bounded(
            self.listing.select(*walk, translation.clause).limit(limit + 1 - found)
        )
        if more is None:  # too slow now (a loaded database): the first rows
            return _paged(rows, limit, edge, budget_hit=False)
        return _paged([*rows, *more], limit, further, budget_hit=False)

    def _evaluated(
        self, query: Query, search: Filter, edge: Position | None
    ) -> tuple[list[Row], SearchPage[None]]:
        """A filter SQL cannot say whole: its SQL part narrows, CEL decides, on at most
        `evaluate` rows."""
        limit, evaluate = self.budget.limit, self.budget.evaluate
        matched: list[Row] = []
        evaluated = 0
        batch = limit + 1
        last: Position | None = None
        while len(matched) <= limit and evaluated < evaluate:
            step = query if last is None else query.where(self.listing.before(last))
            chunk = self.connection.execute(step.limit(min(batch, evaluate - evaluated))).all()
            for row in chunk:
                evaluated += 1
                last = _position(row)
                if search.matches(_variables(search, row)):
                    matched.append(row)
                    if len(matched) > limit:
                        break
            if len(chunk) < batch:
                break
        if len(matched) <= limit and evaluated >= evaluate and last is not None:
            return _paged(matched, limit, last, budget_hit=True)
        return _paged(matched, limit, edge, budget_hit=False)

    def _indexed(self, translation: Translation) -> list[sa.ColumnElement[Any]] | None:
        """The whole search's conditions with the GIN-served one (PostgreSQL, exact filters
        with an equality on JSON): for values the bounded walk found too few of."""
        if translation.indexed is None or translation.clause is None or not translation.exact:
            return None
        clauses: list[sa.ColumnElement[Any]] = [
            *self.listing.base,
            translation.indexed,
            translation.clause,
        ]
        if self.after is not None:
            clauses.append(self.listing.before(self.after))
        return clauses

    def _within(self, query: Query) -> list[Row] | None:
        """Run `query` if it answers within INDEXED_TIMEOUT_MS, else None."""
        try:
            with self.connection.begin_nested():
                self.connection.exec_driver_sql(
                    f"SET LOCAL statement_timeout = {INDEXED_TIMEOUT_MS}"
                )
                return list(self.connection.execute(query).all())
        except sa.exc.OperationalError:
            return None

    def _bounded(self, query: Query) -> list[Row] | None:
        """`_within` on PostgreSQL; SQLite has no statement timeout (its walks are bounded by
        rows, and cheap: no server between)."""
        if self.dialect == "postgresql":
            return self._within(query)
        return list(self.connection.execute(query).all())


def run_variables_of(row: Row) -> dict[str, JSON]:
    """A runs row read with its first event last, as a run filter sees it."""
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


def _variables(search: Filter, row: Row) -> dict[str, JSON]:
    if search.kind == "runs":
        return run_variables_of(row)
    event = row[2]
    return event_variables(dict(event) if isinstance(event, dict) else {}, row[1])


def _bound(position: Position) -> Tuple:
    return sa.tuple_(sa.literal(position[0]), sa.literal(position[1]))


def _position(row: Row) -> Position:
    mapping = row._mapping
    if "run_id" in mapping:
        return (mapping["created_at"], mapping["run_id"])
    return (mapping["received_at"], mapping["internal_id"])


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
