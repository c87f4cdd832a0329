"""The store's Lua scripts of `lua/`, each behind one typed wrapper.

A wrapper takes plain values, builds the script's KEYS from `Keys` in the order the script's
header lists them, runs it (one EVALSHA, through the loader of `lua_files.py`) and turns its
return codes into Python values. The JSON encoding of domain objects is left to the store
(`store.py` and its verb modules).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from app.errors import Conflict
from app.models import RunStatus
from app.state.keys import ArchiveKeys, Keys, SlotKeys
from app.state.lua_files import Arg, LuaScripts
from app.state.records import BrokerMessage, SlotAcquire, SlotRelease

TOMBSTONE_TTL_MS = 86_400_000
"""How long a finished job's id is refused by enqueue_job."""


@dataclass(frozen=True)
class PauseRef:
    """What a pause script needs to find a pause's index entries (derived from its JSON)."""

    pause_id: str
    run_id: str
    raw: str
    """The pause JSON as read; the scripts refuse to act if the stored one differs."""
    event: str
    mode: Literal["idx", "scan", ""]
    index_path: str
    index_value: str
    correlation_id: str


@dataclass(frozen=True)
class EventItem:
    """One event as lua/include/ingest.lua takes it."""

    internal_id: str
    dedupe_key: str
    """The dedupe key to check and set; "" for none."""
    record_json: str
    name: str
    must: bool


IngestCode = Literal["stored", "idle", "duplicate"]
SaveCode = Literal["created", "identical", "different", "ended"]
StartCode = Literal["started", "created", "exists"]
CreateStartCode = Literal["started", "created", "exists", "wait", "later"]


@dataclass(frozen=True)
class RunCreation:
    """A run as lua/create_run.lua writes it, encoded (`RunVerbs` builds it from a `NewRun`):
    the one argument list of `create_run` and `create_started_run`."""

    run_id: str
    function_id: str
    created_at: int
    events_json: str
    event_ids: Sequence[str]
    correlation_id: str
    """"" for none."""
    idempotency_key: str | None
    idempotency_ttl_ms: int
    original_run_id: str
    """"" for none (not a rerun or replay)."""
    memo_json: str
    """A replay's memoized steps (lua/create_run.lua's ARGV[9]), "" for none."""
    start: tuple[str, str, int] | None
    """Its start job: (job id, Job JSON, send-by ms), written with it; None for none."""


@dataclass(frozen=True)
class StartAdmit:
    """A start's admission under its function's concurrency and throttle, as lua/start_run.lua
    takes it (`Slots.admit` in app/flow/slots.py builds it). Times in ms."""

    score: int
    """Its place in the wait lists: run created_at - priority seconds * 1000."""
    constraints: Sequence[tuple[str, int]]
    """(constraint name, limit >= 1) of each concurrency constraint (none: throttle only)."""
    slot_lease_ms: int
    resend_ms: int
    park_ms: int
    throttle: str = ""
    """The throttle's name; "" for none (then the other throttle fields are unused)."""
    interval_ms: int = 0
    tolerance_ms: int = 0
    slack_ms: int = 0
    horizon_ms: int = 0
    ticket_slack_ms: int = 0


StartReplyCode = Literal["ok", "gone", "busy", "wait", "later"]


@dataclass(frozen=True)
class StartReply:
    """lua/start_run.lua's answer: `code` "ok" (leased: `job_json`, `failures`, `started`),
    "wait" (parked for a slot), "later" (throttled until `start_at`), "gone" or "busy"."""

    code: StartReplyCode
    job_json: str = ""
    failures: int = 0
    started: bool = False
    woken: Sequence[str] = ()
    """Job JSON of waiters woken on the way: the caller sends them."""
    start_at: int = 0


@dataclass(frozen=True)
class CreateStartReply:
    """lua/create_run.lua's answer to a creation with a lease token and an admission:
    `code` "started" (leased, a slot in each constraint), "wait" (created Queued, the start
    job parked for a slot), "later" (created Queued, the start job deferred by the throttle
    to `start_at`), "created" or "exists" (as without an admission)."""

    run_id: str
    code: CreateStartCode
    woken: Sequence[str] = ()
    """Job JSON of waiters woken on the way: the caller sends them."""
    start_at: int = 0


ConsumeCode = Literal["won", "lost", "missing", "changed"]
SuspendCode = Literal["suspended", "ended", "missing", "lost", "conflict", "different", "look"]


@dataclass(frozen=True)
class FollowUp:
    """What lua/suspend.lua writes for one step a run stops on: the step's history info and
    the job that carries the run on."""

    step: str
    """Hashed step id; "" records nothing (a yield)."""
    info_json: str
    """History info to merge into the step's record; "" for none."""
    job_id: str
    job_json: str
    send_by: int


FinishCode = Literal["finished", "ended", "missing", "changed", "different"]


class Scripts:
    NAMES = (
        "create_run",
        "mark_started",
        "save_step",
        "record_step",
        "set_pending",
        "set_disable_immediate",
        "finish_run",
        "suspend",
        "save_pause",
        "delete_pause",
        "consume_pause",
        "enqueue_job",
        "begin_job",
        "start_run",
        "renew_job",
        "finish_job",
        "fail_job",
        "release_due",
        "store_event",
        "ingest_events",
        "save_app",
    )
    """The scripts these wrappers run (the server preloads them: app/state/server.py)."""

    def __init__(self, lua: LuaScripts, keys: Keys) -> None:
        self._keys = keys
        self._archive = ArchiveKeys(keys.prefix)
        self._lua = lua
        lua.load(self.NAMES)

    def _run(self, name: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        return self._lua.run(name, keys, args)

    def pipelined(self, fill: Callable[[Any], None], *, transaction: bool = False) -> list[Any]:
        """The replies of what `fill` queues on a pipeline, in one round trip
        (`LuaScripts.pipelined`)."""
        return self._lua.pipelined(fill, transaction=transaction)

    # --- runs -----------------------------------------------------------------------------
    def create_run(self, creation: RunCreation, *, client: Any = None) -> tuple[str, bool]:
        """Create a run (see lua/create_run.lua) and, with `creation.start`, its start job in
        the same step. With `client` (a pipeline), only queue the call: the reply then comes
        from the pipeline's `execute`, parsed by `created`."""
        args, keys = self._create_run_call(creation, None)
        if client is not None:
            self._lua.run("create_run", keys, args, client)
            return creation.run_id, True
        return self.created(self._run("create_run", keys, args))

    def create_started_run(
        self, creation: RunCreation, lease: tuple[str, int]
    ) -> tuple[str, StartCode]:
        """Create a run Running with its start job (`creation.start`, required) leased to
        `lease` (token, deadline ms), in one step (lua/create_run.lua): (run id, "started"),
        or "created" (Queued, the job could not be written) or "exists" as `create_run`."""
        reply = self.create_admitted_run(creation, lease, None)
        return reply.run_id, cast(StartCode, reply.code)

    def create_admitted_run(
        self, creation: RunCreation, lease: tuple[str, int], admit: StartAdmit | None
    ) -> CreateStartReply:
        """`create_started_run` of a run of a function with concurrency or throttle: its
        start job is admitted under `admit` (as lua/start_run.lua admits it) in the same
        call; parked or deferred, the run stays Queued ("wait", "later")."""
        if creation.start is None:
            raise ValueError("a run created started needs its start job")
        args, keys = self._create_run_call(creation, lease)
        if admit is not None:
            self._admit_call(creation.run_id, admit, keys, args)
        reply = self._run("create_run", keys, args)
        code, found = cast(CreateStartCode, reply[0]), str(reply[1])
        if code == "later":
            return CreateStartReply(found, code, start_at=int(reply[2]))
        woken = [str(job) for job in reply[2]] if len(reply) > 2 else []
        return CreateStartReply(found, code, woken)

    def _create_run_call(
        self, creation: RunCreation, lease: tuple[str, int] | None
    ) -> tuple[list[Arg], list[str]]:
        c, k = creation, self._keys
        r = k.run(c.run_id)
        queued, running = RunStatus.QUEUED.value, RunStatus.RUNNING.value
        job_id, job_json, send_by = c.start if c.start is not None else ("", "", 0)
        token, deadline = lease if lease is not None else ("", 0)
        keys = [
            r.meta,
            r.steps,
            r.stack,
            r.history,
            k.runs,
            k.function_runs(c.function_id),
            k.status_runs(queued),
            k.status_runs(queued, c.function_id),
            k.metric("runs_queued_total"),
            k.jobs,
            k.jobs_due,
            k.jobs_by_run,
            k.job_tombstone(job_id),
            k.job_owners,
            k.job_leases,
            k.status_runs(running),
            k.status_runs(running, c.function_id),
            k.metric("runs_started_total"),
        ]
        keys += [k.event_runs(event_id) for event_id in c.event_ids]
        if c.idempotency_key is not None:
            keys.append(k.idempotency(c.idempotency_key))
        args: list[Arg] = [
            c.run_id,
            c.function_id,
            c.created_at,
            c.events_json,
            _dumps(list(c.event_ids)),
            c.correlation_id,
            c.idempotency_ttl_ms,
            c.original_run_id,
            c.memo_json,
            job_id,
            job_json,
            send_by,
            token,
            deadline,
            len(c.event_ids),
            *c.event_ids,
        ]
        return args, keys

    @staticmethod
    def created(reply: Any) -> tuple[str, bool]:
        code, found = reply[0], reply[1]
        return str(found), code == "created"

    def mark_started(self, run_id: str, function_id: str, now: int) -> bool:
        keys = self._start_keys(run_id, function_id)
        return int(self._run("mark_started", keys, [now, function_id])) == 1

    def _start_keys(self, run_id: str, function_id: str) -> list[str]:
        """The keys of a run's Queued -> Running move (lua/include/start.lua), in its order."""
        k = self._keys
        queued, running = RunStatus.QUEUED.value, RunStatus.RUNNING.value
        return [
            k.run(run_id).meta,
            k.status_runs(queued),
            k.status_runs(queued, function_id),
            k.status_runs(running),
            k.status_runs(running, function_id),
            k.metric("runs_started_total"),
        ]

    def save_step(
        self, run_id: str, step: str, memo_json: str, info_json: str
    ) -> tuple[SaveCode, str | None, int]:
        return self.save_steps(run_id, [(step, memo_json, info_json)])[0]

    def save_steps(
        self,
        run_id: str,
        steps: Sequence[tuple[str, str, str]],
        function_id: str = "",
        durations: Sequence[tuple[str, float] | None] = (),
    ) -> list[tuple[SaveCode, str | None, int]]:
        """(step, memo JSON, info JSON) of each step, in order, in one call; one result per
        step handled (it stops after a "different" or "ended"). With `function_id`, each
        step's (bucket, seconds) in `durations` (None: not observed) is observed in the
        step duration histogram when its memo is created."""
        r = self._keys.run(run_id)
        args: list[Arg] = [function_id]
        self._step_args(steps, durations, args)
        keys = [r.meta, r.steps, r.stack, r.pending, r.history]
        if function_id:
            keys.append(self._keys.metric("step_duration_seconds"))
        replies = self._run("save_step", keys, args)
        return [
            (cast(SaveCode, code), (stored or None), int(pending))
            for code, stored, pending in replies
        ]

    @staticmethod
    def _step_args(
        steps: Sequence[tuple[str, str, str]],
        durations: Sequence[tuple[str, float] | None],
        args: list[Arg],
    ) -> None:
        """Five values per step as lua/save_step.lua and lua/finish_run.lua take them."""
        for index, step in enumerate(steps):
            observed = durations[index] if index < len(durations) else None
            bucket, seconds = observed if observed is not None else ("", 0.0)
            args.extend([*step, bucket, f"{seconds:.6f}"])

    def queue_save_steps(
        self, pipe: Any, run_id: str, steps: Sequence[tuple[str, str, str]]
    ) -> None:
        """`save_steps` queued in a pipeline: its reply there is the script's list of
        (code, stored memo, pending) triples. No duration is observed."""
        r = self._keys.run(run_id)
        args: list[Arg] = [""]
        for step in steps:
            args.extend([*step, "", "0"])
        self._lua.run("save_step", [r.meta, r.steps, r.stack, r.pending, r.history], args, pipe)

    def queue_slots_acquire(self, pipe: Any, acquire: SlotAcquire) -> None:
        """lua/slots_acquire.lua queued in a pipeline: its reply there is the script's
        (code, woken Job JSON list)."""
        k, slots = self._keys, SlotKeys(self._keys.prefix)
        keys = [k.jobs, k.jobs_due, k.job_owners, k.job_leases, slots.waiting, slots.limits]
        a = acquire
        args: list[Arg] = [a.job_id, a.score, a.now, a.slot_lease_ms, a.resend_ms, a.park_ms]
        for name, limit in a.constraints:
            keys += [slots.slots(name), slots.waiters(name)]
            args += [name, limit]
        self._lua.run("slots_acquire", keys, args, pipe)

    def record_step(self, run_id: str, step: str, info_json: str) -> bool:
        r = self._keys.run(run_id)
        return int(self._run("record_step", [r.meta, r.history], [step, info_json])) == 1

    def set_pending(self, run_id: str, steps: Sequence[str]) -> int:
        r = self._keys.run(run_id)
        return int(self._run("set_pending", [r.meta, r.pending], list(steps)))

    def set_disable_immediate(self, run_id: str, value: bool) -> bool:
        meta = self._keys.run(run_id).meta
        return int(self._run("set_disable_immediate", [meta], ["1" if value else "0"])) == 1

    def finish_run(
        self,
        run_id: str,
        status: str,
        output_json: str,
        error_json: str,
        now: int,
        pauses: Sequence[PauseRef],
        job_ids: Sequence[str],
        *,
        function_id: str,
        token: str = "",
        events: Sequence[EventItem] = (),
        send_by: int = 0,
        steps: Sequence[tuple[str, str, str]] = (),
        durations: Sequence[tuple[str, float] | None] = (),
        release: SlotRelease | None = None,
        release_job: str = "",
        client: Any = None,
    ) -> tuple[FinishCode, str, list[str]]:
        """End the run (lua/finish_run.lua); with `events`, store them and queue their job in
        the same call; with `steps` ((step, memo JSON, info JSON), as `save_steps` takes them,
        each with its (bucket, seconds) in `durations`), save those first. (code, the events'
        job id or "", Job JSON of the waiters a slot release woke). With `release`, the slots
        `release_job` holds are given back by the call that ends the run. With `client` (a
        pipeline), only queue the call: its reply comes from the pipeline, parsed by
        `finished`."""
        k = self._keys
        r = k.run(run_id)
        keys = [
            r.meta,
            r.pauses,
            r.pending,
            k.pause_expiry,
            k.pause_correlations,
            k.jobs,
            k.jobs_due,
            k.job_owners,
            k.job_leases,
            k.jobs_by_run,
            k.status_runs(RunStatus.QUEUED.value),
            k.status_runs(RunStatus.QUEUED.value, function_id),
            k.status_runs(RunStatus.RUNNING.value),
            k.status_runs(RunStatus.RUNNING.value, function_id),
            k.status_runs(status),
            k.status_runs(status, function_id),
            k.ended_runs,
            k.metric(f"runs_{status.lower()}_total"),
            self._archive.runs,
            k.events,
            self._archive.events,
            k.triggers,
            k.trigger_globs,
            k.triggers_built,
            k.job_failures,
            r.steps,
            r.stack,
            r.history,
            k.metric("step_duration_seconds"),
        ]
        args: list[Arg] = [
            status,
            output_json,
            error_json,
            now,
            run_id,
            len(pauses),
            len(job_ids),
            TOMBSTONE_TTL_MS,
            function_id,
            token,
            len(events),
            send_by,
            len(steps),
        ]
        for ref in pauses:
            keys += [k.pause(ref.pause_id), self._index_key(ref), k.pause_paths(ref.event)]
            args += [ref.pause_id, ref.raw, ref.mode, ref.index_path, ref.correlation_id]
        keys += [k.job_tombstone(job_id) for job_id in job_ids]
        args += list(job_ids)
        self._event_items(events, keys, args)
        self._step_args(steps, durations, args)
        if release is not None:
            args.append(release_job)
            self._release_call(release, keys, args)
        if client is not None:
            self._lua.run("finish_run", keys, args, client)
            return "finished", "", []
        return self.finished(self._run("finish_run", keys, args))

    @staticmethod
    def finished(reply: Any) -> tuple[FinishCode, str, list[str]]:
        woken = [str(job) for job in reply[2]] if len(reply) > 2 else []
        return cast(FinishCode, reply[0]), str(reply[1]), woken

    def suspend(
        self,
        run_id: str,
        job_id: str,
        token: str,
        follow: Sequence[FollowUp],
        pending: Sequence[str] = (),
        pauses: Sequence[tuple[PauseRef, int, str]] = (),
        *,
        steps: Sequence[tuple[str, str, str]] = (),
        durations: Sequence[tuple[str, float] | None] = (),
        function_id: str = "",
        events: Sequence[EventItem] = (),
        now: int = 0,
        dedupe_ttl_ms: int = 0,
        send_by: int = 0,
        message: BrokerMessage | None = None,
        lookback: tuple[str, int, int, str] | None = None,
        release: SlotRelease | None = None,
    ) -> tuple[SuspendCode, list[int], str, bool, list[str], list[str]]:
        """Record each follow-up's step, queue its job and finish `job_id` (leased to `token`),
        in one call (lua/suspend.lua); with `pending`, replace the run's pending set first;
        with `pauses` (each its ref, expires_at, correlation mode as `save_pause` takes them;
        mode "fail" only for a lone pause), save them first; with `steps` ((step, memo JSON,
        info JSON) as `save_steps` takes them, each with its (bucket, seconds) in
        `durations`, observed under `function_id`), save them first; with `events`, store
        them (received `now`, deduplicated for `dedupe_ttl_ms`) and queue their job (sent by
        `send_by`; `message`, the broker message of job "event:<events[0]'s internal id>",
        pushed with it when the job gets that name, as `ingest_events` does). `lookback`
        (the wait's event name, the oldest received_at in ms, how many at most, the
        trigger's event id never matched; a lone pause): read the recent events of that name
        once the pause is saved; with any, the job is kept and "look" answered. With
        `release`, a suspended job gives its slots back ("look" keeps them with the job).

        Returns (code, each follow-up's enqueue code: 1 created, 0 queued already, -1
        tombstoned; the events' job id or ""; whether `message` was pushed; all empty unless
        "suspended" or "look"; the recent events' ids with "look"; Job JSON of the waiters the
        release woke)."""
        k = self._keys
        r = k.run(run_id)
        keys = [
            r.meta,
            r.history,
            r.pending,
            *self._lease_keys(),
            k.jobs_by_run,
            k.job_failures,
            k.job_tombstone(job_id),
            r.steps,
            r.stack,
            k.metric("step_duration_seconds"),
            k.events,
            self._archive.events,
            k.triggers,
            k.trigger_globs,
            k.triggers_built,
            message.list_key if message is not None else k.jobs,
            k.recent_events(lookback[0]) if lookback is not None else k.jobs,
        ]
        keys += [k.job_tombstone(each.job_id) for each in follow]
        args: list[Arg] = [run_id, job_id, token, TOMBSTONE_TTL_MS, len(follow), len(pending)]
        args += [len(pauses), len(steps), function_id, len(events), now]
        args += [dedupe_ttl_ms, send_by, message.payload if message is not None else ""]
        if lookback is not None:
            args += [lookback[1], lookback[2], lookback[3]]
        else:
            args += [0, 0, ""]
        for each in follow:
            args += [each.step, each.info_json, each.job_id, each.job_json, each.send_by]
        args += list(pending)
        for ref, expires_at, correlation_mode in pauses:
            keys += self._pause_keys(ref)
            args += [ref.pause_id, ref.raw, expires_at, ref.mode, ref.index_path]
            args += [ref.correlation_id, correlation_mode]
        self._step_args(steps, durations, args)
        self._event_items(events, keys, args)
        if release is not None:
            self._release_call(release, keys, args)
        code, *rest = self._run("suspend", keys, args)
        enqueued = [int(each) for each in rest[: len(follow)]]
        if code == "look":
            return "look", enqueued, "", False, [str(each) for each in rest[len(follow) :]], []
        extra = rest[len(follow) :]
        event_job, pushed = "", False
        if events and len(extra) >= 2:
            event_job, pushed, extra = str(extra[0]), str(extra[1]) == "1", extra[2:]
        woken = [str(job) for job in extra[0]] if release is not None and extra else []
        return cast(SuspendCode, code), enqueued, event_job, pushed, [], woken

    def _release_call(self, release: SlotRelease, keys: list[str], args: list[Arg]) -> None:
        """The keys and arguments of a slot release, appended (as lua/slots_release.lua's
        after its job keys and job id)."""
        slots = SlotKeys(self._keys.prefix)
        keys += [slots.waiting, slots.limits]
        args += [release.now, release.slot_lease_ms, release.resend_ms]
        for name, limit in release.constraints:
            keys += [slots.slots(name), slots.waiters(name)]
            args += [name, limit]

    # --- pauses ---------------------------------------------------------------------------
    def _index_key(self, ref: PauseRef) -> str:
        if ref.mode == "idx":
            return self._keys.pause_index(ref.event, ref.index_path, ref.index_value)
        return self._keys.pause_scan(ref.event)

    def _pause_keys(self, ref: PauseRef) -> list[str]:
        k = self._keys
        return [
            k.pause(ref.pause_id),
            k.pause_expiry,
            self._index_key(ref),
            k.pause_paths(ref.event),
            k.pause_correlations,
            k.run(ref.run_id).pauses,
        ]

    def _pause_args(self, ref: PauseRef) -> list[Arg]:
        return [ref.pause_id, ref.raw, ref.mode, ref.index_path, ref.correlation_id]

    def save_pause(
        self, ref: PauseRef, expires_at: int, correlation_mode: str = ""
    ) -> Literal[1, 0, -1, -2]:
        """1 created, 0 exists, -1 the run is ended or missing, -2 the correlation id is held
        by another pending pause (`correlation_mode` "fail"; see lua/save_pause.lua)."""
        keys = [*self._pause_keys(ref), self._keys.run(ref.run_id).meta]
        args: list[Arg] = [
            ref.pause_id,
            ref.raw,
            expires_at,
            ref.mode,
            ref.index_path,
            ref.correlation_id,
            correlation_mode,
        ]
        return cast(Literal[1, 0, -1, -2], int(self._run("save_pause", keys, args)))

    def delete_pause(self, ref: PauseRef) -> Literal[1, 0, -1]:
        """1 deleted, 0 missing, -1 the stored pause changed (read again)."""
        result = int(self._run("delete_pause", self._pause_keys(ref), self._pause_args(ref)))
        return cast(Literal[1, 0, -1], result)

    def consume_pause(
        self,
        ref: PauseRef,
        step: str,
        memo_json: str,
        resume_id: str = "",
        resume_json: str = "",
        send_by: int = 0,
    ) -> tuple[ConsumeCode, int, bool]:
        k = self._keys
        r = k.run(ref.run_id)
        keys = [
            *self._pause_keys(ref),
            r.meta,
            r.steps,
            r.stack,
            r.pending,
            k.jobs,
            k.jobs_due,
            k.jobs_by_run,
            k.job_tombstone(resume_id or "-"),
        ]
        args = [
            *self._pause_args(ref),
            step,
            memo_json,
            resume_id,
            resume_json,
            send_by,
            ref.run_id,
        ]
        result = self._run("consume_pause", keys, args)
        resumed = len(result) > 2 and int(result[2]) == 1
        return cast(ConsumeCode, result[0]), int(result[1]), resumed

    # --- jobs -----------------------------------------------------------------------------
    def enqueue_job(self, job_id: str, run_id: str, job_json: str, send_by: int) -> int:
        """1 created, 0 queued already, -1 tombstoned, -2 the run has ended."""
        k = self._keys
        keys = [k.jobs, k.jobs_due, k.jobs_by_run, k.job_tombstone(job_id)]
        if run_id:
            keys.append(k.run(run_id).meta)
        return int(self._run("enqueue_job", keys, [job_id, job_json, send_by, run_id]))

    def _lease_keys(self) -> list[str]:
        k = self._keys
        return [k.jobs, k.jobs_due, k.job_owners, k.job_leases]

    def begin_job(
        self, job_id: str, token: str, now: int, lease_ms: int
    ) -> tuple[Literal["ok", "gone", "busy"], str, int]:
        """("ok", Job JSON, earlier failed deliveries) once leased, else ("gone", "", 0) or
        ("busy", "", 0)."""
        keys = [*self._lease_keys(), self._keys.job_failures]
        reply = self._run("begin_job", keys, [job_id, token, now, lease_ms])
        if reply[0] == "ok":
            return "ok", str(reply[1]), int(reply[2])
        return cast(Literal["gone", "busy"], reply[0]), "", 0

    def start_run(
        self,
        job_id: str,
        run_id: str,
        function_id: str,
        token: str,
        now: int,
        lease_ms: int,
        admit: StartAdmit | None = None,
    ) -> StartReply:
        """`begin_job` of a run's start job, its admission under concurrency and throttle
        (with `admit`) and `mark_started` of the run, in one call (lua/start_run.lua)."""
        keys = [
            *self._lease_keys(),
            self._keys.job_failures,
            *self._start_keys(run_id, function_id),
        ]
        args: list[Arg] = [job_id, token, now, lease_ms, function_id]
        if admit is not None:
            self._admit_call(run_id, admit, keys, args)
        reply = self._run("start_run", keys, args)
        code = cast(StartReplyCode, reply[0])
        if code == "ok":
            woken = [str(job) for job in reply[4]] if len(reply) > 4 else []
            return StartReply(code, str(reply[1]), int(reply[2]), int(reply[3]) == 1, woken)
        if code == "wait":
            return StartReply(code, woken=[str(job) for job in reply[1]])
        if code == "later":
            return StartReply(code, start_at=int(reply[1]))
        return StartReply(code)

    def _admit_call(self, run_id: str, admit: StartAdmit, keys: list[str], args: list[Arg]) -> None:
        """The keys and arguments of an admission, appended (lua/start_run.lua's, and
        lua/create_run.lua's after the events' and the idempotency key)."""
        slots = SlotKeys(self._keys.prefix)
        keys += [slots.waiting, slots.limits]
        if admit.throttle:
            keys += [slots.throttle(admit.throttle), slots.ticket(run_id)]
        interval = admit.interval_ms if admit.throttle else 0
        args += [
            admit.score,
            admit.slot_lease_ms,
            admit.resend_ms,
            admit.park_ms,
            interval,
            admit.tolerance_ms,
            admit.slack_ms,
            admit.horizon_ms,
            admit.ticket_slack_ms,
        ]
        for name, limit in admit.constraints:
            keys += [slots.slots(name), slots.waiters(name)]
            args += [name, limit]

    def begin_jobs(
        self, job_ids: Sequence[str], token: str, now: int, lease_ms: int
    ) -> list[tuple[Literal["ok", "gone", "busy"], str, int]]:
        """`begin_job` for each job, in one pipelined round trip (each call atomic alone)."""
        keys = [*self._lease_keys(), self._keys.job_failures]

        def fill(pipe: Any) -> None:
            for job_id in job_ids:
                self._lua.run("begin_job", keys, [job_id, token, now, lease_ms], pipe)

        replies = self._lua.pipelined(fill)
        return [
            ("ok", str(reply[1]), int(reply[2]))
            if reply[0] == "ok"
            else (cast(Literal["gone", "busy"], reply[0]), "", 0)
            for reply in replies
        ]

    def renew_job(self, job_id: str, token: str, now: int, lease_ms: int) -> bool:
        args: list[Arg] = [job_id, token, now, lease_ms]
        return int(self._run("renew_job", self._lease_keys(), args)) == 1

    def finish_job(self, job_id: str) -> bool:
        k = self._keys
        keys = [*self._lease_keys(), k.jobs_by_run, k.job_tombstone(job_id), k.job_failures]
        return int(self._run("finish_job", keys, [job_id, TOMBSTONE_TTL_MS])) == 1

    def finish_jobs(self, job_ids: Sequence[str]) -> None:
        """`finish_job` for each job, in one pipelined round trip (each call atomic alone)."""
        k = self._keys

        def fill(pipe: Any) -> None:
            for job_id in job_ids:
                keys = [*self._lease_keys(), k.jobs_by_run, k.job_tombstone(job_id)]
                self._lua.run(
                    "finish_job", [*keys, k.job_failures], [job_id, TOMBSTONE_TTL_MS], pipe
                )

        self._lua.pipelined(fill)

    def fail_job(self, job_id: str, token: str, now: int, base_ms: int, cap_ms: int) -> int:
        """Failures so far (this one included); 0: the job is gone; -1: not our lease."""
        keys = [*self._lease_keys(), self._keys.job_failures]
        return int(self._run("fail_job", keys, [job_id, token, now, base_ms, cap_ms]))

    def release_due(
        self,
        now: int,
        resend_after_ms: int,
        limit: int,
        lookahead_ms: int = 0,
        recent_ms: int | None = None,
    ) -> list[tuple[str, int]]:
        """(job JSON, due time ms) of each released job; with `recent_ms`, those due since
        now - recent_ms first."""
        args: list[Arg] = [now, resend_after_ms, limit, lookahead_ms]
        if recent_ms is not None:
            args.append(recent_ms)
        keys = [*self._lease_keys(), self._keys.job_failures]
        reply = self._run("release_due", keys, args)
        return [(str(reply[i]), int(reply[i + 1])) for i in range(0, len(reply), 2)]

    # --- events and apps ------------------------------------------------------------------
    def store_event(
        self, internal_id: str, user_id: str, record_json: str, now: int, dedupe_ttl_ms: int
    ) -> tuple[str, bool]:
        k = self._keys
        keys = [k.event(internal_id), k.events, self._archive.events]
        if user_id:
            keys.append(k.event_dedupe(user_id))
        code, found = self._run("store_event", keys, [internal_id, record_json, now, dedupe_ttl_ms])
        return str(found), code == "stored"

    def ingest_events(
        self,
        items: Sequence[EventItem],
        now: int,
        dedupe_ttl_ms: int,
        send_by: int,
        *,
        counter: str = "",
        message: BrokerMessage | None = None,
        recent: tuple[int, int] = (0, 0),
    ) -> tuple[str, bool, list[tuple[IngestCode, str]]]:
        """Store events and queue their one job (lua/ingest_events.lua): (job id or "",
        whether `message` was pushed, each event's (code, internal id)). With `counter`, add
        the number of events to that counter metric in the same call. With `message` (the
        broker message of job "event:<first item's internal id>"), the job is so named when
        the first item is stored by this call, and the message pushed with it. `recent`:
        (window ms, max per name) of the recent-events index new events are added to; (0, 0)
        for none."""
        k = self._keys
        keys = [
            k.events,
            self._archive.events,
            k.jobs,
            k.jobs_due,
            k.jobs_by_run,
            k.triggers,
            k.trigger_globs,
            k.triggers_built,
            k.metric(counter or "events_received_total"),
            message.list_key if message is not None else k.jobs,
        ]
        args: list[Arg] = [
            now,
            dedupe_ttl_ms,
            send_by,
            len(items),
            len(items) if counter else 0,
            "1" if message is not None else "0",
            message.payload if message is not None else "",
            recent[0],
            recent[1],
        ]
        self._event_items(items, keys, args)
        if recent[0] > 0:
            keys += [k.recent_events(item.name) for item in items]
        reply = self._run("ingest_events", keys, args)
        return str(reply[0]), reply[1] == "1", _answers(reply[2:])

    def _event_items(self, items: Sequence[EventItem], keys: list[str], args: list[Arg]) -> None:
        """Append each event's five keys and five values (lua/include/ingest.lua)."""
        k = self._keys
        for item in items:
            event_key = k.event(item.internal_id)
            keys += [
                event_key,
                item.dedupe_key or event_key,
                k.pause_scan(item.name),
                k.pause_paths(item.name),
                k.job_tombstone(f"event:{item.internal_id}"),
            ]
            args += [
                item.internal_id,
                "1" if item.dedupe_key else "0",
                item.record_json,
                item.name,
                "1" if item.must else "0",
            ]

    def save_app(
        self,
        app_id: str,
        record_json: str,
        checksum: str,
        sync_id: str,
        takeover: bool,
        functions: Sequence[tuple[str, str]],
    ) -> bool:
        """True if the functions changed. Raises `Conflict` when another app owns one of
        them, or (without `takeover`) the app is served in-process."""
        k = self._keys
        keys = [
            k.apps,
            k.functions,
            k.app_functions(app_id),
            k.registry_version,
            k.app_syncs,
            k.triggers,
            k.trigger_globs,
            k.triggers_built,
        ]
        args: list[Arg] = [app_id, record_json, checksum, sync_id, "1" if takeover else "0"]
        for function_id, config_json in functions:
            args += [function_id, config_json]
        result = self._run("save_app", keys, args)
        if isinstance(result, list) and result and result[0] == "function":
            raise Conflict(
                f"function {result[1]!r} already belongs to app {result[2]!r}: give this app "
                "or the function another id",
                field="functions",
            )
        if isinstance(result, list):
            raise Conflict(
                f"app {app_id!r} is served in-process by Stepline's workers: give the SDK app "
                "another id",
                field="appName",
            )
        return int(result) == 1


def _answers(flat: Sequence[Any]) -> list[tuple[IngestCode, str]]:
    return [(cast(IngestCode, flat[i]), str(flat[i + 1])) for i in range(0, len(flat), 2)]


def _dumps(value: Any) -> str:
    # Never NaN or Infinity: what is stored is answered by the API as strict JSON.
    return json.dumps(value, separators=(",", ":"), allow_nan=False)
