"""Store verbs that show runs to the API: one run with its step history, and pages of runs
(newest first) by function and/or status."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from app.models import JSON
from app.state.base import StoreBase, _opt_int
from app.state.records import ANY_RUN, Page, Position, RunCriteria, RunView, SearchPage, T
from app.state.run_logs import RunLogKeys
from app.state.runs import _decode_record

if TYPE_CHECKING:
    from app.search import Filter


class RunViewVerbs(StoreBase):
    """Part of `Store`: runs as the API shows them."""

    def get_run(self, run_id: str) -> RunView | None:
        r = self._keys.run(run_id)
        pipe = self._client.pipeline(transaction=True)
        pipe.hgetall(r.meta)
        pipe.hgetall(r.history)
        pipe.hgetall(r.steps)
        logs = RunLogKeys(self._keys.prefix)
        pipe.lrange(logs.logs(run_id), 0, -1)
        pipe.hget(logs.meta(run_id), "dropped")
        meta, history, memos, lines, dropped = pipe.execute()
        if not meta:
            return None
        view = _run_view(meta)
        view.logs = [json.loads(line) for line in lines]
        view.logs_dropped = int(dropped or 0)
        records = [_decode_record(step, raw) for step, raw in history.items()]
        for record in records:
            memo = memos.get(str(record["id"]))
            if memo is not None:
                record["memo"] = json.loads(memo)
        view.steps = sorted(records, key=lambda record: int(record.get("order", 0)))
        return view

    def list_runs(
        self,
        limit: int,
        function_id: str | None = None,
        before: str | None = None,
        *,
        status: str | None = None,
    ) -> list[RunView]:
        """Newest first (by created_at); `before` is a run id (exclusive) from a previous
        page. The views carry no step history (`steps` is empty): use get_run for that."""
        ids = self._page(self._runs_index(function_id, status), limit, before)
        return self._run_views(ids)

    def page_runs(
        self, limit: int, where: RunCriteria = ANY_RUN, *, after: Position | None = None
    ) -> Page[RunView]:
        """Newest first: the runs `where` selects, following position `after` (a previous
        page's `next`). Reads one index (O(log N + limit)); views carry no step history."""
        key = self._runs_index(where.function_id, where.status)
        members, more = self._score_page(
            key, limit, where.created_after, where.created_before, after
        )
        views = self._run_views([member for member, _ in members])
        if not members:
            return Page([], None)
        last = members[-1]
        return Page(views, (last[1], last[0]) if more else None)

    def search_runs(
        self,
        search: Filter | None,
        limit: int,
        where: RunCriteria = ANY_RUN,
        *,
        after: Position | None = None,
        scan: int,
    ) -> SearchPage[RunView]:
        """`page_runs` with a filter, evaluated with CEL on at most `scan` runs of the index
        (newest first): a page cut short by that bound is `partial`, `next` where it stopped."""
        key = self._runs_index(where.function_id, where.status)
        found: list[tuple[RunView, Position]] = []
        looked = 0
        cursor = after
        batch = min(scan, max(limit + 1, 100))
        while looked < scan:
            members, more = self._score_page(
                key, min(batch, scan - looked), where.created_after, where.created_before, cursor
            )
            if not members:
                return _search_page(found, limit, None)
            pipe = self._client.pipeline(transaction=False)
            for member, _ in members:
                pipe.hgetall(self._keys.run(member).meta)
            for (member, score), meta in zip(members, pipe.execute(), strict=True):
                looked += 1
                cursor = (score, member)
                if meta and (search is None or search.matches_run(**_variables(meta))):
                    found.append((_run_view(meta), cursor))
                    if len(found) > limit:
                        return _search_page(found, limit, None)
            if not more:
                return _search_page(found, limit, None)
        return _search_page(found, limit, cursor)

    def run_views(self, run_ids: list[str]) -> list[RunView]:
        """Views (without steps) of those of `run_ids` that are in Redis, in that order."""
        return self._run_views(run_ids)

    def _runs_index(self, function_id: str | None, status: str | None) -> str:
        if status is not None:
            return self._keys.status_runs(status, function_id)
        if function_id is not None:
            return self._keys.function_runs(function_id)
        return self._keys.runs

    def _run_views(self, ids: list[str]) -> list[RunView]:
        if not ids:
            return []
        pipe = self._client.pipeline(transaction=False)
        for run_id in ids:
            pipe.hgetall(self._keys.run(run_id).meta)
        return [_run_view(meta) for meta in pipe.execute() if meta]


def _variables(meta: dict[str, str]) -> dict[str, JSON]:
    events = json.loads(meta.get("events") or "[]")
    first = events[0] if isinstance(events, list) and events else None
    return dict(
        event=first if isinstance(first, dict) else None,
        output=json.loads(meta.get("output") or "null"),
        error=json.loads(meta.get("error") or "null"),
        status=meta["status"],
        function_id=meta["function_id"],
        run_id=meta["run_id"],
        created_at=int(meta["created_at"]),
        ended_at=_opt_int(meta.get("ended_at")),
    )


def _search_page(
    found: list[tuple[T, Position]], limit: int, stopped: Position | None
) -> SearchPage[T]:
    """Matches newest first: with more than `limit`, the page ends at the limit-th; else
    the search stopped at `stopped` (its bound; None: it saw every item)."""
    if len(found) > limit:
        last = found[limit - 1][1]
        return SearchPage([item for item, _ in found[:limit]], last, last, False)
    items = [item for item, _ in found]
    return SearchPage(items, stopped, stopped, stopped is not None)


def _run_view(meta: dict[str, str]) -> RunView:
    return RunView(
        run_id=meta["run_id"],
        function_id=meta["function_id"],
        status=meta["status"],
        event_ids=json.loads(meta["event_ids"]),
        created_at=int(meta["created_at"]),
        started_at=_opt_int(meta.get("started_at")),
        ended_at=_opt_int(meta.get("ended_at")),
        output=json.loads(meta.get("output") or "null"),
        error=json.loads(meta.get("error") or "null"),
        original_run_id=meta.get("original_run_id") or None,
    )
