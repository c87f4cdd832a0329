"""Flow-control state: rate limits, debounces, batches, singleton locks and event outcomes.

The admission half of flow control (`app/flow/admission.py`) decides through these verbs; each
state change is one script in `lua/flow_*.lua` (return codes in each header). Built like
`Store`: same client, same key prefix, `now` always passed in. Timer jobs (debounce, batch)
are created inside the scripts with the queue's `enqueue` helper, atomically with the state
they serve, so no timer is lost between the two; the beat tick sends them when due.

Keys: `FlowKeys` in `keys.py`.

Timer jobs: `debounce:<debounce id>:<generation>` (kind debounce), `batch:<batch id>` and
`batch:<batch id>:full` (kind batch); `flow_item_id(job_id)` gives back the item id.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

from app.errors import StateError
from app.models import JSON, Job, JobKind
from app.state.base import _dumps
from app.state.keys import FlowKeys
from app.state.records import (
    BatchAppend,
    BatchStart,
    DebounceFire,
    DebounceResult,
    RateLimitResult,
    SingletonDecision,
)
from app.state.store import RETRIES, Store

if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.resources.abc import Traversable

    from redis import Redis

RATE_LIMIT_SEEN_TTL_MS = 30 * 60_000
"""A repeated admission of the same event is not counted again within this (Inngest: 30 min)."""
OUTCOME_TTL_MS = 7 * 86_400_000
BATCH_SEEN_TTL_MS = 30 * 60_000
SINGLETON_DECISION_TTL_MS = 86_400_000
SINGLETON_GRACE_MS = 60_000
"""A singleton lock whose run does not exist yet is honoured this long (the run is being
created); after that it is taken for the leftover of a crash and replaced."""
FIRED_DEBOUNCE_TTL_MS = 86_400_000

Arg = str | int


def flow_item_id(job_id: str) -> str:
    """The debounce or batch id inside a flow timer job's id (`debounce:<id>:<gen>`, ...)."""
    parts = job_id.split(":")
    if len(parts) < 2 or parts[0] not in ("debounce", "batch") or not parts[1]:
        raise ValueError(f"not a flow timer job id: {job_id!r}")
    return parts[1]


class FlowStore:
    """Flow-control verbs over the store's Redis client."""

    NAMES = (
        "flow_rate_limit",
        "flow_debounce",
        "flow_debounce_fire",
        "flow_batch_append",
        "flow_batch_start",
        "flow_singleton",
        "flow_singleton_release",
    )

    def __init__(
        self, store: Store, lua_dir: Traversable | None = None, *, client: Redis[str] | None = None
    ) -> None:
        self._lua = store.lua.over(client, lua_dir)
        self._lua.load(self.NAMES)
        self._client: Redis[str] = self._lua.client
        self._jobs = store.keys
        self._keys = FlowKeys(store.keys.prefix)

    @property
    def keys(self) -> FlowKeys:
        return self._keys

    def _run(self, name: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        return self._lua.run(name, keys, args)

    def _job_keys(self, job_id: str) -> list[str]:
        k = self._jobs
        return [k.jobs, k.jobs_due, k.jobs_by_run, k.job_tombstone(job_id)]

    # --- rate limit -------------------------------------------------------------------------
    def rate_limit(
        self,
        function_id: str,
        key_hash: str,
        event_id: str,
        now: int,
        *,
        period_ms: int,
        limit: int,
        burst: int,
    ) -> RateLimitResult:
        """Count one run against the function's (and key's) GCRA limit, once per event."""
        keys = [
            self._keys.rate_limit(function_id, key_hash),
            self._keys.rate_limit_seen(function_id, event_id),
        ]
        args: list[Arg] = [now, period_ms, limit, burst, RATE_LIMIT_SEEN_TTL_MS]
        code, retry_at = self._run("flow_rate_limit", keys, args)
        code = int(code)
        if code == 0:
            return RateLimitResult(False, retry_at=int(retry_at))
        return RateLimitResult(True, repeat=code == 2)

    # --- event outcomes ---------------------------------------------------------------------
    def record_outcome(self, event_id: str, function_id: str, outcome: dict[str, JSON]) -> None:
        """Why `function_id` did not start a run from this event (replaces an earlier record)."""
        key = self._keys.outcomes(event_id)
        pipe = self._client.pipeline(transaction=True)
        pipe.hset(key, function_id, _dumps(outcome))
        pipe.pexpire(key, OUTCOME_TTL_MS)
        pipe.execute()

    def event_outcomes(self, event_id: str) -> list[dict[str, JSON]]:
        """The recorded outcomes of an event, by function id: each a dict with at least
        `function_id`, `outcome`, `message` and `at` (see `app.flow.admission`)."""
        raw = self._client.hgetall(self._keys.outcomes(event_id))
        return [json.loads(raw[function_id]) for function_id in sorted(raw)]

    # --- debounce ---------------------------------------------------------------------------
    def debounce(
        self,
        function_id: str,
        key_hash: str,
        event_id: str,
        event: dict[str, JSON],
        now: int,
        *,
        period_ms: int,
        timeout_ms: int,
        new_id: str,
    ) -> DebounceResult:
        """Put the event into the function's debounce for `key_hash` (see flow_debounce.lua)."""
        pointer = self._keys.debounce(function_id, key_hash)
        ts = event.get("ts")
        ts_ms = ts if isinstance(ts, int) and not isinstance(ts, bool) else now
        ttl = max(period_ms, timeout_ms) + 86_400_000
        event_json = _dumps(event)
        for _ in range(RETRIES):
            current = self._client.get(pointer)
            debounce_id = current or new_id
            job = _debounce_job(debounce_id, 0)
            keys = [pointer, self._keys.debounce_item(debounce_id), *self._job_keys(job.id)]
            args: list[Arg] = [
                debounce_id,
                "0" if current else "1",
                event_id,
                event_json,
                ts_ms,
                now,
                period_ms,
                timeout_ms,
                function_id,
                key_hash,
                job.id,
                job.model_dump_json(),
                ttl,
            ]
            code, found, due = self._run("flow_debounce", keys, args)
            if code != "changed":
                return DebounceResult(code, str(found), int(due))
        raise StateError(f"debounce of {function_id} kept changing")

    def fire_debounce(self, debounce_id: str, now: int) -> DebounceFire:
        """The debounce's timer is due: fire it or re-arm it (see flow_debounce_fire.lua)."""
        item_key = self._keys.debounce_item(debounce_id)
        for _ in range(RETRIES):
            item = self._client.hmget(item_key, ["fn", "key", "gen"])
            if item[0] is None:
                return DebounceFire("gone")
            function_id, key_hash, gen = str(item[0]), str(item[1]), int(item[2] or 0)
            job = _debounce_job(debounce_id, gen + 1)
            keys = [self._keys.debounce(function_id, key_hash), item_key, *self._job_keys(job.id)]
            args: list[Arg] = [
                debounce_id,
                now,
                gen,
                job.id,
                job.model_dump_json(),
                FIRED_DEBOUNCE_TTL_MS,
            ]
            reply = self._run("flow_debounce_fire", keys, args)
            code = reply[0]
            if code == "fired":
                return DebounceFire("fired", function_id, str(reply[1]), json.loads(reply[2]), now)
            if code == "rescheduled":
                return DebounceFire("rescheduled", function_id, due=int(reply[1]))
            if code == "gone":
                return DebounceFire("gone")
        raise StateError(f"debounce {debounce_id} kept changing while firing")

    # --- batches ----------------------------------------------------------------------------
    def append_batch(
        self,
        function_id: str,
        key_hash: str,
        event_id: str,
        event: dict[str, JSON],
        now: int,
        *,
        max_size: int,
        max_bytes: int,
        timeout_ms: int,
        new_id: str,
        full_send_by: int,
    ) -> BatchAppend:
        """Add the event to the open batch for (function, key) (see flow_batch_append.lua)."""
        pointer = self._keys.batch(function_id, key_hash)
        item = _dumps({"id": event_id, "event": event})
        for _ in range(RETRIES):
            current = self._client.get(pointer)
            batch_id = current or new_id
            timer = Job(id=f"batch:{batch_id}", kind=JobKind.BATCH)
            full = Job(id=f"batch:{batch_id}:full", kind=JobKind.BATCH)
            k = self._jobs
            keys = [
                pointer,
                self._keys.batch_seen(function_id, event_id),
                self._keys.batch_events(batch_id),
                self._keys.batch_meta(batch_id),
                k.jobs,
                k.jobs_due,
                k.jobs_by_run,
                k.job_tombstone(timer.id),
                k.job_tombstone(full.id),
            ]
            args: list[Arg] = [
                batch_id,
                "0" if current else "1",
                event_id,
                item,
                max_size,
                max_bytes,
                now,
                timeout_ms,
                function_id,
                key_hash,
                timer.id,
                timer.model_dump_json(),
                full.id,
                full.model_dump_json(),
                full_send_by,
                BATCH_SEEN_TTL_MS,
                timeout_ms + 86_400_000,
            ]
            code, found, size = self._run("flow_batch_append", keys, args)
            if code != "changed":
                return BatchAppend(code, str(found), int(size), full if code == "full" else None)
        raise StateError(f"batch of {function_id} kept changing")

    def start_batch(self, batch_id: str) -> BatchStart | None:
        """Close the batch and return its events in order; None if it is gone."""
        meta = self._client.hmget(self._keys.batch_meta(batch_id), ["fn", "key"])
        if meta[0] is None:
            return None
        function_id, key_hash = str(meta[0]), str(meta[1])
        keys = [
            self._keys.batch(function_id, key_hash),
            self._keys.batch_events(batch_id),
            self._keys.batch_meta(batch_id),
        ]
        reply = self._run("flow_batch_start", keys, [batch_id])
        if reply[0] != "start":
            return None
        items = [json.loads(raw) for raw in reply[1:]]
        return BatchStart(
            function_id,
            [str(item["id"]) for item in items],
            [item["event"] for item in items],
        )

    def batch_size(self, batch_id: str) -> int | None:
        """How many events the batch holds now; None once it has started its run."""
        pipe = self._client.pipeline(transaction=False)
        pipe.hget(self._keys.batch_meta(batch_id), "status")
        pipe.llen(self._keys.batch_events(batch_id))
        status, size = pipe.execute()
        return None if status is None or status == "started" else int(size)

    def drop_batch(self, batch_id: str) -> None:
        """Delete a scheduled batch's events and metadata."""
        self._client.delete(self._keys.batch_events(batch_id), self._keys.batch_meta(batch_id))

    # --- singleton --------------------------------------------------------------------------
    def acquire_singleton(
        self,
        function_id: str,
        key_hash: str,
        schedule_key: str,
        run_id: str,
        mode: Literal["skip", "cancel"],
        now: int,
    ) -> SingletonDecision:
        """Decide once per `schedule_key` whether a run may start (see flow_singleton.lua)."""
        lock = self._keys.singleton(function_id, key_hash)
        keys_base = [lock, self._keys.singleton_decision(function_id, schedule_key)]
        ref = self._keys.singleton_run(run_id)
        for _ in range(RETRIES):
            holder = self._client.hget(lock, "run_id") or ""
            holder_meta = self._jobs.run(holder or run_id).meta
            args: list[Arg] = [
                run_id,
                mode,
                holder,
                now,
                SINGLETON_GRACE_MS,
                SINGLETON_DECISION_TTL_MS,
                lock,
            ]
            code, found, other = self._run("flow_singleton", [*keys_base, holder_meta, ref], args)
            if code != "changed":
                return SingletonDecision(code, str(found), str(other))
        raise StateError(f"singleton lock of {function_id} kept changing")

    def release_singleton(self, run_id: str) -> bool:
        """Free the singleton lock `run_id` holds, if any. True if a lock was freed."""
        ref = self._keys.singleton_run(run_id)
        lock = self._client.get(ref)
        if lock is None:
            return False
        return int(self._run("flow_singleton_release", [lock, ref], [run_id])) == 1

    def singleton_holder(self, function_id: str, key_hash: str) -> str | None:
        return self._client.hget(self._keys.singleton(function_id, key_hash), "run_id")

    def idempotency_holder(self, key: str) -> str | None:
        """The run holding the store's idempotency key `<fn id>:<key>`, if taken."""
        return self._client.get(self._jobs.idempotency(key))


def _debounce_job(debounce_id: str, generation: int) -> Job:
    return Job(id=f"debounce:{debounce_id}:{generation}", kind=JobKind.DEBOUNCE)


__all__ = [
    "BatchAppend",
    "BatchStart",
    "DebounceFire",
    "DebounceResult",
    "FlowKeys",
    "FlowStore",
    "RateLimitResult",
    "SingletonDecision",
    "flow_item_id",
]
