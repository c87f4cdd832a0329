"""Store verbs that show runs to the API: one run with its step history, and pages of runs
(newest first) by function and/or status."""

from __future__ import annotations

import json

from app.state.base import StoreBase, _opt_int
from app.state.records import Page, Position, RunView
from app.state.run_logs import RunLogKeys
from app.state.runs import _decode_record


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
        self,
        limit: int,
        *,
        function_id: str | None = None,
        status: str | None = None,
        created_after: int | None = None,
        created_before: int | None = None,
        after: Position | None = None,
    ) -> Page[RunView]:
        """Newest first: runs created in [created_after, created_before) (ms), of a function
        and/or in a status, following position `after` (a previous page's `next`). Reads one
        index (O(log N + limit)); views carry no step history."""
        key = self._runs_index(function_id, status)
        members, more = self._score_page(key, limit, created_after, created_before, after)
        views = self._run_views([member for member, _ in members])
        if not members:
            return Page([], None)
        last = members[-1]
        return Page(views, (last[1], last[0]) if more else None)

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
