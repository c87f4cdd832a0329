"""Bulk operations' state in Redis: what each one is, how far it got, what it did to each run.

    <p>:bulk:<id>          hash   id, state (running|done|stopped), spec (JSON), estimate,
                                  matched, done, failed, skipped, cursor (JSON position of
                                  the last run handled, "" before the first), created_at,
                                  updated_at, finished_at
    <p>:bulk:<id>:runs     hash   run id -> "<outcome> <detail>" (outcome done|failed|skipped)
    <p>:bulks              zset   bulk id, score created_at

A finished operation (done or stopped) and its per-run outcomes expire `keep_ms` after it ends
(the run retention, `STEPLINE_RETENTION_DAYS`); `recent` drops the ids of expired ones from
`<p>:bulks`.

Every change is one script of `lua/bulk_*.lua`, each safe to run twice: a run's outcome is
recorded and counted once (`record`), the cursor only moves while the operation runs. Built
like `ArchiveStore`: the store's client and prefix, `now` passed in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.models import JSON
from app.state.keys import ArchiveKeys
from app.state.lua_files import Arg
from app.state.records import Position
from app.state.store import Store

if TYPE_CHECKING:
    from redis import Redis


@dataclass(frozen=True)
class BulkRecord:
    id: str
    state: str
    spec: dict[str, JSON]
    estimate: int
    matched: int
    done: int
    failed: int
    skipped: int
    cursor: Position | None
    created_at: int
    updated_at: int
    finished_at: int | None


class BulkStore:
    NAMES = ("bulk_create", "bulk_record", "bulk_advance", "bulk_stop")

    def __init__(self, store: Store, keep_ms: int) -> None:
        self._keep_ms = max(1, keep_ms)
        self._client: Redis[str] = store._client
        self._prefix = store.keys.prefix
        self._archive = ArchiveKeys(store.keys.prefix)
        self._lua = store.lua
        self._lua.load(self.NAMES)

    def _bulk(self, bulk_id: str) -> str:
        return f"{self._prefix}:bulk:{bulk_id}"

    def _runs(self, bulk_id: str) -> str:
        return f"{self._prefix}:bulk:{bulk_id}:runs"

    @property
    def _bulks(self) -> str:
        return f"{self._prefix}:bulks"

    def create(self, bulk_id: str, spec: dict[str, JSON], estimate: int, now: int) -> bool:
        keys = [self._bulk(bulk_id), self._bulks]
        args: list[Arg] = [bulk_id, now, json.dumps(spec, separators=(",", ":")), estimate]
        return bool(self._lua.script("bulk_create")(keys, args))

    def record(self, bulk_id: str, run_id: str, outcome: str, detail: str) -> str:
        """Record what was done to `run_id` (once); returns the outcome stored for it."""
        keys = [self._bulk(bulk_id), self._runs(bulk_id)]
        return str(self._lua.script("bulk_record")(keys, [run_id, outcome, detail]))

    def outcome(self, bulk_id: str, run_id: str) -> str | None:
        raw = self._client.hget(self._runs(bulk_id), run_id)
        return None if raw is None else str(raw)

    def advance(self, bulk_id: str, cursor: Position | None, now: int, *, finished: bool) -> str:
        """Handled every run down to `cursor`; `finished`: nothing is left. Returns the state."""
        raw = "" if cursor is None else json.dumps([cursor[0], cursor[1]])
        return str(
            self._lua.script("bulk_advance")(
                [self._bulk(bulk_id), self._runs(bulk_id)],
                [raw, now, "1" if finished else "0", self._keep_ms],
            )
        )

    def stop(self, bulk_id: str, now: int) -> str:
        """Stop it if it runs; returns the state it was in ("missing": no such operation)."""
        keys = [self._bulk(bulk_id), self._runs(bulk_id)]
        return str(self._lua.script("bulk_stop")(keys, [now, self._keep_ms]))

    def state(self, bulk_id: str) -> str:
        return str(self._client.hget(self._bulk(bulk_id), "state") or "missing")

    def not_archived(self, run_ids: list[str]) -> list[str]:
        """Those of `run_ids` the history store does not hold yet (ended runs in Redis)."""
        pipe = self._client.pipeline(transaction=False)
        for run_id in run_ids:
            pipe.zscore(self._archive.drop_runs, run_id)
        scores = pipe.execute()
        return [run_id for run_id, score in zip(run_ids, scores, strict=True) if score is None]

    def get(self, bulk_id: str) -> BulkRecord | None:
        raw = self._client.hgetall(self._bulk(bulk_id))
        return _record(raw) if raw else None

    def recent(self, limit: int) -> list[BulkRecord]:
        ids = self._client.zrevrange(self._bulks, 0, limit - 1)
        pipe = self._client.pipeline(transaction=False)
        for bulk_id in ids:
            pipe.hgetall(self._bulk(bulk_id))
        raws = pipe.execute()
        expired = [bulk_id for bulk_id, raw in zip(ids, raws, strict=True) if not raw]
        if expired:
            self._client.zrem(self._bulks, *expired)
        return [_record(raw) for raw in raws if raw]


def _record(raw: dict[str, str]) -> BulkRecord:
    cursor = json.loads(raw["cursor"]) if raw.get("cursor") else None
    return BulkRecord(
        id=raw["id"],
        state=raw["state"],
        spec=json.loads(raw["spec"]),
        estimate=int(raw.get("estimate") or 0),
        matched=int(raw.get("matched") or 0),
        done=int(raw.get("done") or 0),
        failed=int(raw.get("failed") or 0),
        skipped=int(raw.get("skipped") or 0),
        cursor=(int(cursor[0]), str(cursor[1])) if cursor else None,
        created_at=int(raw["created_at"]),
        updated_at=int(raw["updated_at"]),
        finished_at=int(raw["finished_at"]) if raw.get("finished_at") else None,
    )
