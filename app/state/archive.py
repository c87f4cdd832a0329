"""The archiver's verbs over Redis: claim what waits for the history store, read it, mark it
archived, and drop it once the hot window has passed (app/history/archiver.py drives them).

    claim_runs / claim_events       a batch under a lease (lua/history_claim.lua)
    read_runs / read_events         their records, pipelined
    archived_runs / archived_events after the database commit (lua/history_archived.lua)
    drop_due_runs / drop_due_events the hot window has passed (lua/history_drop_*.lua)

Runs enter the queue in `lua/finish_run.lua` and events in `lua/include/ingest.lua` (run by
`ingest_events.lua` and `finish_run.lua`), atomically with the change that makes them
archivable (`lua/include/archive.lua`). Built like `FlowStore`: the store's client and prefix,
`now` always passed in. Keys: `ArchiveKeys` in `keys.py`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, cast

from app.errors import StateError
from app.history.records import ArchivedRun, ArchivedStep
from app.models import START_SUFFIX, RunStatus
from app.state.base import _opt_int
from app.state.events import _event_record
from app.state.keys import ArchiveKeys
from app.state.records import EventRecord
from app.state.run_logs import RunLogKeys
from app.state.runs import _decode_record
from app.state.store import RETRIES, Store

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    from redis import Redis

Arg = str | int
DropCode = Literal["dropped", "kept", "changed", "waiting"]


def event_job_id(internal_id: str) -> str:
    """The id of an event's processing job, as `Runner.ingest` names it."""
    return f"event:{internal_id}"


def start_job_id(run_id: str) -> str:
    """The id of a run's start job, as the runner names it (its tombstone goes with the run)."""
    return run_id + START_SUFFIX


class ArchiveStore:
    NAMES = ("history_claim", "history_archived", "history_drop_run", "history_drop_event")

    def __init__(self, store: Store, lua_dir: Traversable | None = None) -> None:
        self._client: Redis[str] = store._client
        self._store_keys = store.keys
        self._keys = ArchiveKeys(store.keys.prefix)
        self._logs = RunLogKeys(store.keys.prefix)
        self._lua = store.lua.over(None, lua_dir)
        self._lua.load(self.NAMES)

    @property
    def keys(self) -> ArchiveKeys:
        return self._keys

    # --- the queues -----------------------------------------------------------------------
    def backlog(self, now: int) -> tuple[int, int]:
        """(runs, events) waiting for the archiver and claimable at `now`."""
        pipe = self._client.pipeline(transaction=False)
        pipe.zcount(self._keys.runs, "-inf", now)
        pipe.zcount(self._keys.events, "-inf", now)
        runs, events = pipe.execute()
        return int(runs), int(events)

    def job_queued(self, job_id: str) -> bool:
        """Is this job still queued (not yet done, maybe retrying)?"""
        return bool(self._client.hexists(self._store_keys.jobs, job_id))

    def claim_runs(self, token: str, now: int, lease_ms: int, limit: int) -> list[str]:
        return self._claim(self._keys.runs, token, now, lease_ms, limit)

    def claim_events(self, token: str, now: int, lease_ms: int, limit: int) -> list[str]:
        return self._claim(self._keys.events, token, now, lease_ms, limit)

    def _claim(self, queue: str, token: str, now: int, lease_ms: int, limit: int) -> list[str]:
        keys = [queue, self._keys.claim(token)]
        return [
            str(item) for item in self._lua.script("history_claim")(keys, [now, lease_ms, limit])
        ]

    def archived_runs(self, token: str, ids: Sequence[str], drop_at: int) -> int:
        return self._archived(self._keys.runs, self._keys.drop_runs, token, ids, drop_at)

    def archived_events(self, token: str, ids: Sequence[str], drop_at: int) -> int:
        return self._archived(self._keys.events, self._keys.drop_events, token, ids, drop_at)

    def _archived(
        self, queue: str, drops: str, token: str, ids: Sequence[str], drop_at: int
    ) -> int:
        keys = [queue, drops, self._keys.claim(token)]
        return int(self._lua.script("history_archived")(keys, [drop_at, *ids]))

    def queue_unarchived(self, batch: int = 1_000) -> tuple[int, int]:
        """Queue for the archiver every ended run and every event already in Redis (those of a
        version without a history store; the others are queued already and stay as they are:
        ZADD NX). Bounded batches by rank, never KEYS. Returns (runs, events) newly queued."""
        return (
            self._queue_all(self._store_keys.ended_runs, self._keys.runs, batch),
            self._queue_all(self._store_keys.events, self._keys.events, batch),
        )

    def _queue_all(self, source: str, queue: str, batch: int) -> int:
        added = 0
        start = 0
        while True:
            members = self._client.zrange(source, start, start + batch - 1, withscores=True)
            if not members:
                return added
            added += int(self._client.zadd(queue, dict(members), nx=True))
            start += batch

    # --- reading what is archived ---------------------------------------------------------
    def read_runs(self, run_ids: Sequence[str]) -> list[ArchivedRun]:
        """The ended runs among `run_ids` with their steps (missing or live ones left out)."""
        pipe = self._client.pipeline(transaction=False)
        for run_id in run_ids:
            r = self._store_keys.run(run_id)
            pipe.hgetall(r.meta)
            pipe.lrange(r.stack, 0, -1)
            pipe.hgetall(r.steps)
            pipe.hgetall(r.history)
            pipe.lrange(self._logs.logs(run_id), 0, -1)
            pipe.hget(self._logs.meta(run_id), "dropped")
        replies = pipe.execute()
        out = []
        for i in range(len(run_ids)):
            meta, stack, steps, history, lines, dropped = replies[6 * i : 6 * i + 6]
            if meta and _ended(meta.get("status", "")):
                run = _archived_run(meta, stack, steps, history)
                if lines or dropped:
                    run.logs = {
                        "lines": [json.loads(line) for line in lines],
                        "dropped": int(dropped or 0),
                    }
                out.append(run)
        return out

    def live_runs(self, run_ids: Sequence[str]) -> list[str]:
        """Those of `run_ids` that exist and have not ended."""
        if not run_ids:
            return []
        pipe = self._client.pipeline(transaction=False)
        for run_id in run_ids:
            pipe.hget(self._store_keys.run(run_id).meta, "status")
        statuses = pipe.execute()
        return [rid for rid, st in zip(run_ids, statuses, strict=True) if st and not _ended(st)]

    def read_events(self, internal_ids: Sequence[str]) -> list[EventRecord]:
        if not internal_ids:
            return []
        raws = self._client.mget([self._store_keys.event(i) for i in internal_ids])
        return [_event_record(raw) for raw in raws if raw is not None]

    # --- dropping after the hot window ----------------------------------------------------
    def due_drops(self, now: int, limit: int) -> tuple[list[str], list[str]]:
        """(run ids, event ids) whose drop time has come, oldest first, at most `limit` each."""
        pipe = self._client.pipeline(transaction=False)
        pipe.zrangebyscore(self._keys.drop_runs, "-inf", now, start=0, num=limit)
        pipe.zrangebyscore(self._keys.drop_events, "-inf", now, start=0, num=limit)
        runs, events = pipe.execute()
        return list(runs), list(events)

    def drop_runs(self, run_ids: Sequence[str], now: int) -> int:
        """Remove archived runs whose drop time has come (lua/history_drop_run.lua), in two
        pipelined round trips; returns how many are gone."""
        gone = 0
        pending = list(run_ids)
        for _ in range(RETRIES):
            if not pending:
                return gone
            pipe = self._client.pipeline(transaction=False)
            for run_id in pending:
                pipe.hmget(
                    self._store_keys.run(run_id).meta, ["function_id", "status", "event_ids"]
                )
            snapshots = pipe.execute()
            calls = [
                self._drop_run_call(run_id, now, *snapshot)
                for run_id, snapshot in zip(pending, snapshots, strict=True)
            ]

            def fill(pipe: Any, calls: list[tuple[list[str], list[Arg]]] = calls) -> None:
                for keys, args in calls:
                    self._lua.run("history_drop_run", keys, args, pipe)

            codes = cast(list[DropCode], self._lua.pipelined(fill))
            gone += sum(1 for code in codes if code == "dropped")
            pending = [rid for rid, code in zip(pending, codes, strict=True) if code == "changed"]
        raise StateError(f"runs {pending} kept changing while being dropped")

    def _drop_run_call(
        self, run_id: str, now: int, function_id: str | None, status: str | None, raw: str | None
    ) -> tuple[list[str], list[Arg]]:
        k = self._store_keys
        r = k.run(run_id)
        function_id, status = function_id or "", status or ""
        event_ids: list[str] = json.loads(raw) if raw else []
        keys = [
            r.meta,
            r.steps,
            r.stack,
            r.pending,
            r.history,
            r.pauses,
            k.runs,
            k.function_runs(function_id),
            k.status_runs(status),
            k.status_runs(status, function_id),
            k.ended_runs,
            self._keys.drop_runs,
            *(k.event_runs(event_id) for event_id in event_ids),
            k.job_tombstone(start_job_id(run_id)),
            self._logs.logs(run_id),
            self._logs.meta(run_id),
        ]
        if event_ids:
            keys.append(k.idempotency(f"{function_id}:{event_ids[0]}"))
        return keys, [run_id, function_id, status, now, len(event_ids), 3]

    def drop_event(self, internal_id: str, now: int, retry_at: int) -> DropCode:
        """Remove an archived event whose drop time has come, unless its processing job is
        still queued ("waiting": tried again at `retry_at`)."""
        k = self._store_keys
        job_id = event_job_id(internal_id)
        keys = [
            k.event(internal_id),
            k.events,
            self._keys.drop_events,
            k.jobs,
            k.job_tombstone(job_id),
        ]
        record = self.read_events([internal_id])
        if record and _id_given_by_stepline(record[0]):
            keys.append(k.event_dedupe(str(record[0].event["id"])))
        args: list[Arg] = [internal_id, now, job_id, retry_at]
        return cast(DropCode, self._lua.script("history_drop_event")(keys, args))


def _id_given_by_stepline(record: EventRecord) -> bool:
    """The event's id was not sent by a user: the runner filled in its internal id, or it is
    the end event of a run (named after the run; emitted once, when the run ended)."""
    event_id, name = record.event.get("id"), record.event.get("name")
    if not isinstance(event_id, str) or not event_id:
        return False
    return event_id == record.internal_id or name in RUN_END_EVENTS


RUN_END_EVENTS = (
    "inngest/function.finished",
    "inngest/function.failed",
    "inngest/function.cancelled",
)
"""As `app.lifecycle.LIFECYCLE_EVENTS` emits them. (`inngest/function.invoked` keeps its
dedupe key: a parent replayed later may emit the same invoke again, and must not start a
second child.)"""


def _ended(status: str) -> bool:
    return status in {s.value for s in RunStatus if s.ended}


def _archived_run(
    meta: dict[str, str], stack: list[str], steps: dict[str, str], history: dict[str, str]
) -> ArchivedRun:
    positions: dict[str, int] = {}
    for index, step in enumerate(stack):
        positions.setdefault(step, index)
    archived_steps = [
        ArchivedStep(
            step_id=step,
            record=_decode_record(step, history[step]) if step in history else None,
            memoized=step in steps,
            memo=json.loads(steps[step]) if step in steps else None,
            stack_index=positions.get(step) if step in steps else None,
        )
        for step in dict.fromkeys([*history, *steps])
    ]
    archived_steps.sort(key=lambda s: (s.record is None, s.position, s.stack_index or 0))
    return ArchivedRun(
        run_id=meta["run_id"],
        function_id=meta["function_id"],
        status=meta["status"],
        created_at=int(meta["created_at"]),
        started_at=_opt_int(meta.get("started_at")),
        ended_at=_opt_int(meta.get("ended_at")) or int(meta["created_at"]),
        event_ids=json.loads(meta.get("event_ids") or "[]"),
        events=json.loads(meta.get("events") or "[]"),
        output=json.loads(meta.get("output") or "null"),
        error=json.loads(meta.get("error") or "null"),
        original_run_id=meta.get("original_run_id") or None,
        correlation_id=meta.get("correlation_id") or None,
        steps=archived_steps,
    )
