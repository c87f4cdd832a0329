"""Reads go where the data is: live runs (and runs and events still in their hot window) in
Redis, everything archived in the history store. The API, the UI and rerun/replay read
through `Reads`, so a run looks the same before and after it moves.

    one run or event   Redis first, then the history store
    pages              the same page from both, merged newest first by position and
                       deduplicated (an archived run in its hot window is in both); a position
                       (created_at, run id) means the same in both stores, so a cursor stays
                       valid while runs move from one to the other
    an event's runs    the union of both stores' links
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from app.history.store import HistoryStore
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
    T,
)
from app.state.store import Store


class Reads:
    def __init__(self, store: Store, history: HistoryStore) -> None:
        self.store = store
        self.history = history

    # --- runs -----------------------------------------------------------------------------
    def get_run(self, run_id: str) -> RunView | None:
        return self.store.get_run(run_id) or self.history.get_run(run_id)

    def load_run(self, run_id: str) -> RunState | None:
        return self.store.load_run(run_id) or self.history.load_run(run_id)

    def memoized_steps(self, run_id: str) -> MemoizedSteps | None:
        return self.store.memoized_steps(run_id) or self.history.memoized_steps(run_id)

    def page_runs(
        self, limit: int, where: RunCriteria = ANY_RUN, *, after: Position | None = None
    ) -> Page[RunView]:
        """Newest first, as `Store.page_runs`, over both stores."""
        live = self.store.page_runs(limit, where, after=after)
        archived = self.history.page_runs(limit, where, after=after)
        return merge(live, archived, limit, _run_position)

    def search_runs(
        self,
        search: Filter | None,
        limit: int,
        where: RunCriteria = ANY_RUN,
        *,
        after: Position | None = None,
        bounds: SearchBounds | None = None,
    ) -> SearchPage[RunView]:
        """`page_runs` with a filter over both stores, each looking at a bounded number of
        runs (`SearchBounds`): the page is `partial` when a bound stopped it short."""
        bounds = bounds or SearchBounds()
        live = self.store.search_runs(search, limit, where, after=after, scan=bounds.live(search))
        archived = self.history.search_runs(
            search,
            limit,
            where,
            after=after,
            scan=bounds.history_scan,
            evaluate=bounds.live(search),
            extend=bounds.history_extend,
        )
        return merge_search(live, archived, limit, _run_position)

    # --- events ---------------------------------------------------------------------------
    def get_event(self, internal_id: str) -> EventRecord | None:
        return self.store.get_event(internal_id) or self.history.get_event(internal_id)

    def page_events(
        self, limit: int, where: EventCriteria = ANY_EVENT, *, after: Position | None = None
    ) -> Page[EventRecord]:
        """Newest first, every name (`EventCriteria.check_unnamed`), over both stores."""
        live = self.store.page_events(limit, where, after=after)
        archived = self.history.page_events(limit, where, after=after)
        return merge(live, archived, limit, _event_position)

    def search_events(
        self,
        search: Filter | None,
        limit: int,
        where: EventCriteria = ANY_EVENT,
        *,
        after: Position | None = None,
        bounds: SearchBounds | None = None,
    ) -> SearchPage[EventRecord]:
        bounds = bounds or SearchBounds()
        live = self.store.search_events(search, limit, where, after=after, scan=bounds.live(search))
        archived = self.history.search_events(
            search,
            limit,
            where,
            after=after,
            scan=bounds.history_scan,
            evaluate=bounds.live(search),
            extend=bounds.history_extend,
        )
        return merge_search(live, archived, limit, _event_position)

    def event_runs(self, internal_id: str) -> list[RunView]:
        """The runs the event started, by run id, wherever each one is."""
        run_ids = sorted(
            set(self.store.event_run_ids(internal_id))
            | set(self.history.event_run_ids(internal_id))
        )
        live = {view.run_id: view for view in self.store.run_views(run_ids)}
        missing = [run_id for run_id in run_ids if run_id not in live]
        archived = {view.run_id: view for view in self.history.run_views(missing)}
        found = {**archived, **live}
        return [found[run_id] for run_id in run_ids if run_id in found]


def merge(
    first: Page[T], second: Page[T], limit: int, position: Callable[[T], Position]
) -> Page[T]:
    """The first `limit` items of both pages, newest first, each position once (the first
    page's copy wins). Both pages must start after the same position and hold up to `limit`
    items each: every item of the true merged page is then in one of them."""
    unique: dict[Position, T] = {}
    for item in [*first.items, *second.items]:
        unique.setdefault(position(item), item)
    ordered = sorted(unique.values(), key=position, reverse=True)
    items = ordered[:limit]
    more = len(ordered) > limit or first.next is not None or second.next is not None
    return Page(items, position(items[-1]) if more and items else None)


def merge_search(
    first: SearchPage[T], second: SearchPage[T], limit: int, position: Callable[[T], Position]
) -> SearchPage[T]:
    """Merge two bounded searches that started at the same position. Each is complete down
    to its `reached` position, so together they are complete down to the higher of the two:
    matches below it are left for the next page, which continues from there."""
    bounds = [page.reached for page in (first, second) if page.reached is not None]
    bound = max(bounds) if bounds else None
    unique: dict[Position, T] = {}
    for item in [*first.items, *second.items]:
        at = position(item)
        if bound is None or at >= bound:
            unique.setdefault(at, item)
    ordered = sorted(unique.values(), key=position, reverse=True)
    if len(ordered) > limit:
        last = position(ordered[limit - 1])
        return SearchPage(ordered[:limit], last, last, False)
    if bound is None:
        return SearchPage(ordered, None, None, False)
    partial = len(ordered) < limit and (first.partial or second.partial)
    return SearchPage(ordered, bound, bound, partial)


@dataclass(frozen=True)
class SearchBounds:
    """How much one search request may look at (each store), so it answers in bounded time.
    The history store's bounds are measured in `bench/history_search.py`."""

    live_scan: int = 2_000
    """Runs (events) of Redis looked at (a filter `quick` answers costs microseconds each)."""
    history_scan: int = 5_000
    """Rows of the history store's list index walked (SQL evaluates the filter on them).
    Measured in bench/history_search.py: the rows of one function are spread over the table,
    so on PostgreSQL each costs a heap page read; SQLite parses each row's JSON text."""
    history_extend: int = 25_000
    """Rows of the history store's list index a filter SQL says whole may walk on when the
    first `history_scan` held too few matches: as far as their density says fills the page,
    at most this far (a rare value of a GIN-indexed equality goes to the index instead).
    Measured in bench/history_search.py: a 1-in-100 value fills a page within ~10,000 more
    rows, read in `created_at` order (neighbouring rows, few pages), where the GIN index
    would visit one heap page per match, 10,000 of them (~200 ms cold)."""
    evaluate: int = 20
    """Runs evaluated with cel-python (milliseconds each), in each store, when neither SQL
    nor `quick` can say the whole filter."""

    def live(self, search: Filter | None) -> int:
        """How many items one store may evaluate the filter on in Python."""
        return (
            self.live_scan if search is None or search.quick else min(self.live_scan, self.evaluate)
        )


def _run_position(view: RunView) -> Position:
    return (view.created_at, view.run_id)


def _event_position(record: EventRecord) -> Position:
    return (record.received_at, record.internal_id)
