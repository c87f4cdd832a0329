"""The state store: the one seam between Stepline and Redis.

Every state change goes through one Lua script in `lua/` (atomic); reads are plain commands.
Nothing outside `app/state/` imports `redis`. Times are milliseconds since the epoch and are
always passed in (`now`), never read from the clock here or in Lua.

INTERFACE CONTRACT (implemented by the state helper; the executor, runner, queue and API are
written against exactly these signatures).

Stored forms: every JSON value is stored as compact JSON text. A step's history record is
stored as a JSON object whose values are themselves JSON texts, so the Lua merge (cjson)
only ever re-encodes strings and nothing is altered on the way (cjson would turn `[]` into
`{}` and round large numbers); `_decode_record` turns it back into plain JSON. The key
layout is in `keys.py`, the return codes in each `lua/*.lua` header.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import redis

from app.errors import StateError
from app.models import JSON, FunctionConfig, Job, Pause, RunStatus
from app.state.keys import RUN_JOB_SEPARATOR, Keys
from app.state.scripts import PauseRef, Scripts

if TYPE_CHECKING:
    from redis import Redis

DEFAULT_LUA_DIR = Path(__file__).resolve().parents[2] / "lua"
"""`lua/` at the repository root; `STEPLINE_LUA_DIR` overrides it."""

RETRIES = 20
"""How often a script that found its snapshot stale (a pause or job set changed between the
read and the script) is retried with a fresh read before giving up with a StateError."""


@dataclass
class NewRun:
    run_id: str
    function_id: str
    events: list[dict[str, JSON]]
    """The triggering events as sent to the function (wire form)."""
    event_ids: list[str]
    """Internal ids of those events (links run <-> event for the API)."""
    created_at: int
    idempotency_key: str | None = None
    """`<function id>:<key>`; a second create with the same key within the TTL is refused."""
    idempotency_ttl_ms: int = 86_400_000
    correlation_id: str | None = None
    """Set when this run was started by step.invoke; copied into its finish event."""
    original_run_id: str | None = None
    """Set on a rerun or replay: the run it was made from."""
    memoized: MemoizedSteps | None = None
    """A replay's steps, memoized from the start (they are not executed again)."""


@dataclass
class MemoizedSteps:
    """Steps a run has memoized, in stack (completion) order, with their history records."""

    stack: list[str]
    steps: dict[str, JSON]
    """Memo by hashed step id."""
    history: dict[str, dict[str, JSON]]
    """History record by hashed step id (those without one are left out)."""


@dataclass
class RunState:
    """Everything the executor needs to call a function."""

    run_id: str
    function_id: str
    status: str
    events: list[dict[str, JSON]]
    steps: dict[str, JSON]
    """Memoized values by hashed step id (only those on the stack)."""
    stack: list[str]
    disable_immediate_execution: bool
    created_at: int
    started_at: int | None
    correlation_id: str | None


@dataclass
class SaveResult:
    status: Literal["created", "identical", "different", "ended"]
    """created: this call wrote it. identical: the same bytes were there (a retry of ours).
    different: another writer won. ended: the run is finished or gone; nothing written."""
    memo: JSON = None
    """The value now stored (the existing one unless created)."""
    pending: int = 0
    """Parallel steps still pending after this save."""


@dataclass
class ConsumeResult:
    won: bool
    """True for exactly one consumer of a pause, whatever the race."""
    pause: Pause | None
    pending: int = 0
    resumed: bool = False
    """The resume job passed to `consume_pause` was created (the caller sends it)."""


@dataclass
class RunView:
    """A run as the API shows it."""

    run_id: str
    function_id: str
    status: str
    event_ids: list[str]
    created_at: int
    started_at: int | None
    ended_at: int | None
    output: JSON = None
    error: JSON = None
    steps: list[dict[str, JSON]] = field(default_factory=list)
    """Step history records in first-seen order (see `record_step`)."""
    original_run_id: str | None = None
    """Set on a rerun or replay: the run it was made from."""


@dataclass
class EventRecord:
    internal_id: str
    received_at: int
    event: dict[str, JSON]


T = TypeVar("T")

Position = tuple[int, str]
"""Where a page ended: (score, member) of its last item; the next page starts after it."""


@dataclass
class Page(Generic[T]):
    items: list[T]
    next: Position | None
    """The last item's position when more items follow, else None."""


class Store:
    """Verbs over Redis. Construct with a redis URL (or client) and a key prefix."""

    def __init__(
        self,
        redis_url: str,
        prefix: str = "sl",
        lua_dir: Path | None = None,
        *,
        client: Redis[str] | None = None,
    ) -> None:
        if client is None:
            client = redis.Redis.from_url(redis_url, decode_responses=True)
        if lua_dir is None:
            env_dir = os.environ.get("STEPLINE_LUA_DIR")
            lua_dir = Path(env_dir) if env_dir else DEFAULT_LUA_DIR
        self._client = client
        self._keys = Keys(prefix)
        self._scripts = Scripts(client, self._keys, lua_dir)

    @classmethod
    def from_client(
        cls, client: Redis[str], prefix: str = "sl", lua_dir: Path | None = None
    ) -> Store:
        """A store over an existing client (which must have `decode_responses=True`)."""
        return cls("", prefix, lua_dir, client=client)

    @property
    def keys(self) -> Keys:
        return self._keys

    def close(self) -> None:
        self._client.close()

    # --- functions and apps -------------------------------------------------------------
    def save_app(
        self, app_id: str, url: str | None, functions: list[FunctionConfig], now: int
    ) -> bool:
        """Atomically replace the app's functions (functions it no longer has are removed).
        Returns True if anything changed. Bumps a registry version used for caching."""
        configs = sorted(functions, key=lambda config: config.id)
        dumped = [(config.id, config.model_dump_json()) for config in configs]
        canonical = json.dumps(
            {"url": url, "functions": [config.model_dump(mode="json") for config in configs]},
            sort_keys=True,
            separators=(",", ":"),
        )
        checksum = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
        record = {
            "id": app_id,
            "url": url,
            "functions": [function_id for function_id, _ in dumped],
            "checksum": checksum,
            "synced_at": now,
        }
        return self._scripts.save_app(app_id, _dumps(record), checksum, dumped)

    def list_functions(self) -> list[FunctionConfig]:
        raw = self._client.hvals(self._keys.functions)
        configs = [FunctionConfig.model_validate_json(item) for item in raw]
        return sorted(configs, key=lambda config: config.id)

    def get_function(self, function_id: str) -> FunctionConfig | None:
        raw = self._client.hget(self._keys.functions, function_id)
        return None if raw is None else FunctionConfig.model_validate_json(raw)

    def registry_version(self) -> int:
        raw = self._client.get(self._keys.registry_version)
        return 0 if raw is None else int(raw)

    def list_apps(self) -> list[dict[str, JSON]]:
        """App records: {"id", "url", "functions" (ids), "checksum", "synced_at"}."""
        apps = [json.loads(item) for item in self._client.hvals(self._keys.apps)]
        return sorted(apps, key=lambda app: str(app["id"]))

    # --- events -------------------------------------------------------------------------
    def store_event(
        self, event: dict[str, JSON], internal_id: str, now: int, dedupe_ttl_ms: int
    ) -> tuple[str, bool]:
        """Store an event. If its user `id` was seen within the TTL, store nothing and return
        (the first event's internal id, False); else (internal_id, True)."""
        user_id = event.get("id")
        record = {"internal_id": internal_id, "received_at": now, "event": event}
        return self._scripts.store_event(
            internal_id,
            user_id if isinstance(user_id, str) else "",
            _dumps(record),
            now,
            dedupe_ttl_ms,
        )

    def get_event(self, internal_id: str) -> EventRecord | None:
        raw = self._client.get(self._keys.event(internal_id))
        return None if raw is None else _event_record(raw)

    def page_events(
        self,
        limit: int,
        *,
        received_after: int | None = None,
        received_before: int | None = None,
        after: Position | None = None,
    ) -> Page[EventRecord]:
        """Newest first: events received in [received_after, received_before) (ms), following
        position `after` (a previous page's `next`)."""
        members, more = self._score_page(
            self._keys.events, limit, received_after, received_before, after
        )
        if not members:
            return Page([], None)
        raw = self._client.mget([self._keys.event(member) for member, _ in members])
        records = [_event_record(item) for item in raw if item is not None]
        last = members[-1]
        return Page(records, (last[1], last[0]) if more else None)

    def list_events(self, limit: int, before: str | None = None) -> list[EventRecord]:
        """Newest first; `before` is an internal id (exclusive) from a previous page."""
        ids = self._page(self._keys.events, limit, before)
        if not ids:
            return []
        raw = self._client.mget([self._keys.event(internal_id) for internal_id in ids])
        return [_event_record(item) for item in raw if item is not None]

    def event_run_ids(self, internal_id: str) -> list[str]:
        return sorted(self._client.smembers(self._keys.event_runs(internal_id)))

    # --- runs ---------------------------------------------------------------------------
    def create_run(self, run: NewRun) -> tuple[str, bool]:
        """Create a run (status Queued) idempotently. Returns (run id, created). With an
        idempotency key already taken: (the existing run id, False). Links each event id to
        the run, adds it to the run lists (all, per function, per status).

        `memoized` (a replay) writes those steps, stack and history records with the run."""
        return self._create_run(run, None)

    def create_runs(self, runs: list[NewRun]) -> list[tuple[str, bool]]:
        """`create_run` for many runs in one pipelined round trip (each still atomic)."""
        pipe = self._client.pipeline(transaction=False)
        for run in runs:
            self._create_run(run, pipe)
        return [Scripts.created(reply) for reply in pipe.execute()]

    def _create_run(self, run: NewRun, pipe: Any) -> tuple[str, bool]:
        memo_json = ""
        if run.memoized is not None:
            memo = run.memoized
            memo_json = _dumps(
                {
                    "stack": memo.stack,
                    "steps": {step: _dumps(memo.steps.get(step)) for step in memo.stack},
                    "history": {
                        step: _encode_info(record)
                        for step, record in memo.history.items()
                        if step in memo.steps
                    },
                }
            )
        return self._scripts.create_run(
            run.run_id,
            run.function_id,
            run.created_at,
            _dumps(run.events),
            run.event_ids,
            run.correlation_id or "",
            run.idempotency_key,
            run.idempotency_ttl_ms,
            run.original_run_id or "",
            memo_json,
            client=pipe,
        )

    def memoized_steps(self, run_id: str) -> MemoizedSteps | None:
        """The run's memoized steps in stack order with their history records (None if the
        run is gone): what a replay copies."""
        r = self._keys.run(run_id)
        pipe = self._client.pipeline(transaction=True)
        pipe.exists(r.meta)
        pipe.lrange(r.stack, 0, -1)
        pipe.hgetall(r.steps)
        pipe.hgetall(r.history)
        exists, stack, steps, history = pipe.execute()
        if not exists:
            return None
        return MemoizedSteps(
            stack=[step for step in stack if step in steps],
            steps={step: json.loads(raw) for step, raw in steps.items()},
            history={step: _decode_record(step, raw) for step, raw in history.items()},
        )

    def load_run(self, run_id: str) -> RunState | None:
        r = self._keys.run(run_id)
        pipe = self._client.pipeline(transaction=True)
        pipe.hgetall(r.meta)
        pipe.lrange(r.stack, 0, -1)
        pipe.hgetall(r.steps)
        meta, stack, steps = pipe.execute()
        if not meta:
            return None
        memos: dict[str, JSON] = {}
        for step in stack:
            if step not in steps:
                raise StateError(f"run {run_id}: step {step} is on the stack but has no memo")
            memos[step] = json.loads(steps[step])
        return RunState(
            run_id=run_id,
            function_id=meta["function_id"],
            status=meta["status"],
            events=json.loads(meta["events"]),
            steps=memos,
            stack=list(stack),
            disable_immediate_execution=meta.get("die") == "1",
            created_at=int(meta["created_at"]),
            started_at=_opt_int(meta.get("started_at")),
            correlation_id=meta.get("correlation_id") or None,
        )

    def mark_started(self, run_id: str, now: int) -> None:
        """Status Queued -> Running (moving it between the status indexes, counting the
        start); started_at written once. A missing run is left alone."""
        function_id = self._client.hget(self._keys.run(run_id).meta, "function_id")
        if function_id is not None:
            self._scripts.mark_started(run_id, function_id, now)

    def save_step(
        self, run_id: str, step: str, memo: JSON, info: dict[str, JSON], now: int
    ) -> SaveResult:
        """First write wins: store `memo` under `step`, push it on the stack, drop it from the
        pending set, merge `info` into the step's history record. See lua/save_step.lua.

        `info` is merged only by the call that creates the memo. `now` is not used."""
        memo_json = _dumps(memo)
        status, stored, pending = self._scripts.save_step(
            run_id, step, memo_json, _encode_info(info)
        )
        if status == "created":
            return SaveResult("created", memo, pending)
        if status == "ended":
            return SaveResult("ended", None, 0)
        return SaveResult(status, None if stored is None else json.loads(stored), pending)

    def record_step(self, run_id: str, step: str, info: dict[str, JSON]) -> None:
        """Merge `info` (name, kind, attempts, error, due, started_at...) into the step's
        history record without memoizing anything. A missing run is left alone."""
        self._scripts.record_step(run_id, step, _encode_info(info))

    def set_pending(self, run_id: str, steps: list[str]) -> None:
        """Replace the run's pending parallel set and set disable_immediate_execution.

        An empty list only empties the set (the flag is left as it is). A missing run is
        left alone."""
        self._scripts.set_pending(run_id, steps)

    def set_disable_immediate(self, run_id: str, value: bool) -> None:
        self._scripts.set_disable_immediate(run_id, value)

    def finish_run(self, run_id: str, status: str, output: JSON, error: JSON, now: int) -> bool:
        """End a run once: set status/output/error/ended_at, drop its pauses (and their
        indexes) and its queued jobs. Returns True only for the call that ended it."""
        if not RunStatus(status).ended:
            raise ValueError(f"finish_run needs an ended status, not {status!r}")
        for _ in range(RETRIES):
            function_id, pauses, job_ids = self._run_snapshot(run_id)
            code = self._scripts.finish_run(
                run_id,
                status,
                _dumps(output),
                _dumps(error),
                now,
                pauses,
                job_ids,
                function_id=function_id,
            )
            if code != "changed":
                return code == "finished"
        raise StateError(f"run {run_id}: its pauses and jobs kept changing during finish")

    def _run_snapshot(self, run_id: str) -> tuple[str, list[PauseRef], list[str]]:
        """The run's function id, pauses (as refs) and queued job ids, for finish_run."""
        prefix = run_id + RUN_JOB_SEPARATOR
        pipe = self._client.pipeline(transaction=True)
        pipe.hget(self._keys.run(run_id).meta, "function_id")
        pipe.smembers(self._keys.run(run_id).pauses)
        pipe.zrangebylex(self._keys.jobs_by_run, f"[{prefix}", f"({run_id}}}")
        function_id, pause_ids, members = pipe.execute()
        ordered = sorted(pause_ids)
        raws = self._client.mget([self._keys.pause(pid) for pid in ordered]) if ordered else []
        refs = [
            _pause_ref(Pause.model_validate_json(raw), raw)
            if raw is not None
            else PauseRef(pid, run_id, "", "", "", "", "", "")
            for pid, raw in zip(ordered, raws, strict=True)
        ]
        return function_id or "", refs, [member[len(prefix) :] for member in members]

    def get_run(self, run_id: str) -> RunView | None:
        r = self._keys.run(run_id)
        pipe = self._client.pipeline(transaction=True)
        pipe.hgetall(r.meta)
        pipe.hgetall(r.history)
        pipe.hgetall(r.steps)
        meta, history, memos = pipe.execute()
        if not meta:
            return None
        view = _run_view(meta)
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

    def _score_page(
        self,
        key: str,
        limit: int,
        low: int | None,
        high: int | None,
        after: Position | None,
    ) -> tuple[list[tuple[str, int]], bool]:
        """Up to `limit` members of a zset, highest score first (equal scores: highest member
        first), with low <= score < high, strictly after position `after`. Returns them and
        whether more follow. Members equal in score to `after` are skipped in bounded reads,
        so the cost is O(log N + limit + ties)."""
        if limit <= 0:
            return [], False
        top: str = "+inf" if high is None else f"({high}"
        if after is not None and (high is None or after[0] < high):
            top = str(after[0])
        bottom: str = "-inf" if low is None else str(low)
        out: list[tuple[str, int]] = []
        offset = 0
        while len(out) <= limit:
            want = limit + 1 - len(out)
            batch = self._client.zrevrangebyscore(
                key, top, bottom, start=offset, num=want, withscores=True
            )
            if not batch:
                break
            offset += len(batch)
            for member, raw_score in batch:
                score = int(raw_score)
                if after is not None and score == after[0] and member >= after[1]:
                    continue
                out.append((member, score))
            if len(batch) < want:
                break
        return out[:limit], len(out) > limit

    def _page(self, key: str, limit: int, before: str | None) -> list[str]:
        """Members of a zset, highest score first, after `before` (exclusive)."""
        if limit <= 0:
            return []
        start = 0
        if before is not None:
            rank = self._client.zrevrank(key, before)
            if rank is None:
                return []
            start = int(rank) + 1
        return list(self._client.zrevrange(key, start, start + limit - 1))

    # --- pauses -------------------------------------------------------------------------
    def save_pause(self, pause: Pause) -> bool:
        """Insert if absent (deterministic ids make replays harmless). Indexes it by event
        name, and by (index_path, index_value) when set, else in the event's scan set; by
        correlation id when set; in the run's pause set. Returns True if created.

        False also when the pause's run is ended or missing (nothing is written)."""
        raw = pause.model_dump_json()
        return self._scripts.save_pause(_pause_ref(pause, raw), pause.expires_at) == 1

    def get_pause(self, pause_id: str) -> Pause | None:
        raw = self._client.get(self._keys.pause(pause_id))
        return None if raw is None else Pause.model_validate_json(raw)

    def pause_index_paths(self, event_name: str) -> list[str]:
        """The index paths (e.g. `async.data.order_id`) pending pauses of this event use."""
        return sorted(self._client.hkeys(self._keys.pause_paths(event_name)))

    def find_pauses(
        self, event_name: str, lookups: list[tuple[str, str]], limit: int = 1000
    ) -> list[Pause]:
        """Pauses waiting for `event_name` that might match: every unindexed pause plus those
        indexed under each (path, value) in `lookups`. Never scans indexed pauses.

        Indexed candidates come first; past `limit` the rest are left out."""
        pipe = self._client.pipeline(transaction=False)
        for path, value in lookups:
            pipe.smembers(self._keys.pause_index(event_name, path, value))
        pipe.smembers(self._keys.pause_scan(event_name))
        ids: list[str] = []
        seen: set[str] = set()
        for members in pipe.execute():
            for pause_id in sorted(members):
                if pause_id not in seen:
                    seen.add(pause_id)
                    ids.append(pause_id)
        ids = ids[: max(limit, 0)]
        if not ids:
            return []
        raws = self._client.mget([self._keys.pause(pause_id) for pause_id in ids])
        return [Pause.model_validate_json(raw) for raw in raws if raw is not None]

    def pause_by_correlation(self, correlation_id: str) -> Pause | None:
        pause_id = self._client.hget(self._keys.pause_correlations, correlation_id)
        return None if pause_id is None else self.get_pause(pause_id)

    def consume_pause(
        self, pause_id: str, memo: JSON, now: int, resume: Job | None = None, send_by: int = 0
    ) -> ConsumeResult:
        """Exactly one resumer wins: write `memo` under the pause's step (first write wins),
        then delete the pause and its index entries. A pause already gone loses.

        A step that already has a memo (even the same bytes) also loses, and the stale pause
        is deleted; so does a pause whose run is ended or missing. `pause` is the pause as
        read (None if it was gone). `now` is not used.

        With `resume`, the winner that leaves no parallel step pending also creates that job
        (as `enqueue_job` would, `send_by` its resend time) in the same atomic step;
        `ConsumeResult.resumed` says so and the caller then sends it."""
        memo_json = _dumps(memo)
        resume_id = resume.id if resume is not None else ""
        resume_json = resume.model_dump_json() if resume is not None else ""
        for _ in range(RETRIES):
            raw = self._client.get(self._keys.pause(pause_id))
            if raw is None:
                return ConsumeResult(False, None, 0)
            pause = Pause.model_validate_json(raw)
            code, pending, resumed = self._scripts.consume_pause(
                _pause_ref(pause, raw), pause.step, memo_json, resume_id, resume_json, send_by
            )
            if code != "changed":
                return ConsumeResult(code == "won", pause, pending, resumed)
        raise StateError(f"pause {pause_id} kept changing while being consumed")

    def delete_pause(self, pause_id: str) -> None:
        for _ in range(RETRIES):
            raw = self._client.get(self._keys.pause(pause_id))
            if raw is None:
                return
            pause = Pause.model_validate_json(raw)
            if self._scripts.delete_pause(_pause_ref(pause, raw)) != -1:
                return
        raise StateError(f"pause {pause_id} kept changing while being deleted")

    def count_pauses(self) -> int:
        return int(self._client.zcard(self._keys.pause_expiry))

    def expired_pauses(self, before: int, limit: int = 1000) -> list[str]:
        """Ids of pauses that expired before `before` (ms), oldest first: for garbage
        collection of pauses whose timeout never consumed them."""
        ids = self._client.zrangebyscore(
            self._keys.pause_expiry, "-inf", f"({before}", start=0, num=limit
        )
        return list(ids)

    # --- jobs (durable queue records; Celery only carries their ids) -------------------
    def enqueue_job(self, job: Job, due_at: int, send_by: int) -> bool:
        """Create the job unless it exists or ran in the last 24 h (tombstone). `send_by` is
        when the tick should (re)send it if nobody has started it. Returns True if created.

        False also when the job's run has ended. `due_at` is not stored: the queue sends
        soon-due jobs with a countdown and later ones have `send_by == due_at`."""
        return self._scripts.enqueue_job(job.id, job.run_id, job.model_dump_json(), send_by) == 1

    def begin_job(
        self, job_id: str, token: str, now: int, lease_ms: int
    ) -> Job | Literal["gone", "busy"]:
        """Lease the job for `token`. "gone": done or dropped. "busy": another holder's lease
        is still live."""
        code, raw = self._scripts.begin_job(job_id, token, now, lease_ms)
        if code == "ok":
            return Job.model_validate_json(raw)
        return code

    def renew_job(self, job_id: str, token: str, now: int, lease_ms: int) -> bool:
        """Extend `token`'s lease. False if the job is gone or another token holds it."""
        return self._scripts.renew_job(job_id, token, now, lease_ms)

    def finish_job(self, job_id: str, token: str) -> None:
        """Delete the job and leave a 24 h tombstone so the same id is never enqueued again.
        The token is not checked: whoever finishes it, the work is done."""
        self._scripts.finish_job(job_id)

    def fail_job(self, job_id: str, token: str, now: int, base_ms: int, cap_ms: int) -> int:
        """The handler of a job we lease raised: count it, let go of the lease and schedule
        the job again after base * 2^(failures-1) ms (at most `cap_ms`). Returns the failure
        count (0: the job is gone; -1: another token holds it)."""
        return self._scripts.fail_job(job_id, token, now, base_ms, cap_ms)

    def release_due(self, now: int, resend_after_ms: int, limit: int) -> list[Job]:
        """Jobs whose send-by time has passed (timers now due, sent jobs never started,
        expired leases): push their send-by to now + resend_after_ms and return them."""
        return [job for job, _ in self.release_upcoming(now, resend_after_ms, limit, 0)]

    def release_upcoming(
        self, now: int, resend_after_ms: int, limit: int, lookahead_ms: int
    ) -> list[tuple[Job, int]]:
        """As `release_due`, also taking unleased jobs due within `lookahead_ms`; each with
        its due time, so the caller can send it to fire exactly then."""
        raw = self._scripts.release_due(now, resend_after_ms, limit, lookahead_ms)
        return [(Job.model_validate_json(item), due) for item, due in raw]

    def count_jobs(self) -> int:
        return int(self._client.hlen(self._keys.jobs))

    # --- cron -----------------------------------------------------------------------------
    def claim_cron(self, function_id: str, scheduled_at: int, ttl_ms: int) -> bool:
        """True for exactly one claimer of (function, scheduled time)."""
        key = self._keys.cron_claim(function_id, scheduled_at)
        return bool(self._client.set(key, "1", nx=True, px=ttl_ms))

    def cron_cursor(self, function_id: str) -> int | None:
        return _opt_int(self._client.hget(self._keys.cron_cursor, function_id))

    def set_cron_cursor(self, function_id: str, scheduled_at: int) -> None:
        self._client.hset(self._keys.cron_cursor, function_id, str(scheduled_at))

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except redis.RedisError:
            return False


# --- encoding ---------------------------------------------------------------------------------
def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _opt_int(raw: str | None) -> int | None:
    return None if raw is None or raw == "" else int(raw)


def _encode_info(info: dict[str, JSON]) -> str:
    """History info as the Lua merge takes it: an object of field -> JSON text."""
    return _dumps({name: _dumps(value) for name, value in info.items()})


def _decode_record(step: str, raw: str) -> dict[str, JSON]:
    record: dict[str, JSON] = {name: json.loads(value) for name, value in json.loads(raw).items()}
    record.setdefault("id", step)
    return record


def _pause_ref(pause: Pause, raw: str) -> PauseRef:
    mode: Literal["idx", "scan", ""] = ""
    if pause.event:
        indexed = bool(pause.index_path) and pause.index_value is not None
        mode = "idx" if indexed else "scan"
    return PauseRef(
        pause_id=pause.id,
        run_id=pause.run_id,
        raw=raw,
        event=pause.event,
        mode=mode,
        index_path=(pause.index_path or "") if mode == "idx" else "",
        index_value=(pause.index_value or "") if mode == "idx" else "",
        correlation_id=pause.correlation_id or "",
    )


def _event_record(raw: str) -> EventRecord:
    record = json.loads(raw)
    return EventRecord(
        internal_id=record["internal_id"],
        received_at=int(record["received_at"]),
        event=record["event"],
    )


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
