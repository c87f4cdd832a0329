"""Store verbs for a run's life: create, load, start, memoize steps, finish.

A step's history record is stored as a JSON object whose values are JSON texts (see the
`store.py` docstring): `_encode_info` writes that form, `_decode_record` reads it back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from app.errors import StateError
from app.ids import new_ulid
from app.models import JSON, Job, Pause, RunStatus, event_job
from app.state.base import RETRIES, StoreBase, _dumps, _opt_int
from app.state.events import RECENT_EVENTS_MAX, event_item
from app.state.jobs import Lease, job_record
from app.state.keys import RUN_JOB_SEPARATOR
from app.state.pauses import _pause_ref
from app.state.records import (
    BrokerMessage,
    MemoizedSteps,
    NewEvent,
    NewRun,
    QueuedJob,
    RunEnd,
    RunState,
    SaveResult,
    SlotAcquire,
    SlotRelease,
)
from app.state.scripts import (
    CreateStartCode,
    FinishCode,
    FollowUp,
    PauseRef,
    RunCreation,
    Scripts,
    StartAdmit,
    StartCode,
    SuspendCode,
)


@dataclass(frozen=True)
class RunStart:
    """`RunVerbs.start_run`'s answer."""

    leased: Lease | Literal["gone", "busy", "wait", "later"]
    """The start job's lease; or "gone"/"busy" as `lease_job`; "wait": parked for a
    concurrency slot; "later": throttled, deferred to `start_at`."""
    started: bool = False
    """This call (or its repeat after a lost reply) moved the run from Queued to Running."""
    woken: list[Job] = field(default_factory=list)
    """Waiters given a slot on the way (with an admission): the caller sends them."""
    start_at: int = 0


@dataclass(frozen=True)
class AdmittedCreation:
    """`RunVerbs.create_admitted_run`'s answer."""

    run_id: str
    code: CreateStartCode
    """"started": created Running, its start job leased and holding its slots; "wait":
    created Queued, the start job parked for a slot; "later": created Queued, the start job
    deferred to `start_at` by the throttle; "created", "exists": as `create_started_run`."""
    woken: list[Job] = field(default_factory=list)
    """Waiters given a slot on the way: the caller sends them."""
    start_at: int = 0


@dataclass(frozen=True)
class Ended:
    """A run's end as written by lua/finish_run.lua (`RunVerbs.end_alone`, `end_runs`)."""

    code: FinishCode
    job: Job | None
    """The job of the run's lifecycle events (None: nothing listens, or not "finished")."""
    woken: list[Job] = field(default_factory=list)
    """Waiters the slot release woke: the caller sends them."""
    released: bool = False
    """The ending job's slots were given back by this call (`RunEnd.release`)."""


@dataclass(frozen=True)
class Suspended:
    """`RunVerbs.suspend`'s answer."""

    code: SuspendCode
    created: list[bool] = field(default_factory=list)
    """Per follow-up job: created by this call (False: queued already, or tombstoned)."""
    event_job: Job | None = None
    """The job that processes the events stored with the suspend, to send (None: none, or
    its message went with it)."""
    recent: list[str] = field(default_factory=list)
    """With "look": the internal ids of the recent events a lookback wait may match, oldest
    first (the job was kept)."""
    woken: list[Job] = field(default_factory=list)
    """Waiters the slot release woke: the caller sends them."""
    released: bool = False
    """The job's slots were given back by this call (`release`)."""


class RunVerbs(StoreBase):
    """Part of `Store`: a run's state, from creation to its end."""

    def create_run(self, run: NewRun, start: QueuedJob | None = None) -> tuple[str, bool]:
        """Create a run (status Queued) idempotently. Returns (run id, created). With an
        idempotency key already taken: (the existing run id, False). Links each event id to
        the run, adds it to the run lists (all, per function, per status).

        `memoized` (a replay) writes those steps, stack and history records with the run.
        `start` (its start job, as `Queue.plan` made it) is enqueued in the same atomic step
        when the run is created, so no crash leaves a Queued run without a job."""
        return self._create_run(run, None, start)

    def create_started_run(
        self, run: NewRun, start: QueuedJob, token: str, lease_ms: int
    ) -> tuple[str, StartCode]:
        """`create_run` for a run its creator executes next: the run is created Running
        (started_at = created_at, counted as started) and its start job leased to `token`
        until created_at + `lease_ms`, in the same script call. Returns (run id, "started"),
        or as `create_run`: (run id, "created") Queued when the start job could not be
        written (it ran within the tombstone TTL), (existing run id, "exists"). A repeat of
        the call (lost reply) answers "started" again. No memoized steps (no replay)."""
        if run.memoized is not None:
            raise ValueError("a replay's run is never started by its creation")
        return self._scripts.create_started_run(
            run_creation(run, start), (token, run.created_at + lease_ms)
        )

    def create_admitted_run(
        self, run: NewRun, start: QueuedJob, token: str, lease_ms: int, admit: StartAdmit
    ) -> AdmittedCreation:
        """`create_started_run` for a run of a function with concurrency or throttle: its
        start job is admitted under `admit` in the same script call, as `start_run` admits
        it (a slot in each constraint; or parked in a wait list, or deferred by the
        throttle: the run is then created Queued). A repeat after a lost reply answers as
        the first call did (without the waiters it woke: the tick resends those)."""
        if run.memoized is not None:
            raise ValueError("a replay's run is never started by its creation")
        reply = self._scripts.create_admitted_run(
            run_creation(run, start), (token, run.created_at + lease_ms), admit
        )
        woken = [Job.model_validate_json(raw) for raw in reply.woken]
        return AdmittedCreation(reply.run_id, reply.code, woken, reply.start_at)

    def start_run(
        self,
        job: Job,
        function_id: str,
        token: str,
        now: int,
        lease_ms: int,
        admit: StartAdmit | None = None,
    ) -> RunStart:
        """Lease a run's start `job` to `token` (as `lease_job`), admit it under its
        function's concurrency and throttle (`admit`: a slot in each constraint, or parked
        in a wait list as `SlotStore.acquire` parks it; a throttled start later defers it,
        as `SlotStore.throttle` does) and, once leased and admitted, mark the run started
        (as `mark_started`), in one script call (lua/start_run.lua). A repeat after a lost
        reply answers as the first call did."""
        reply = self._scripts.start_run(
            job.id, job.run_id, function_id, token, now, lease_ms, admit
        )
        woken = [Job.model_validate_json(raw) for raw in reply.woken]
        if reply.code != "ok":
            return RunStart(reply.code, woken=woken, start_at=reply.start_at)
        leased = Lease(Job.model_validate_json(reply.job_json), reply.failures)
        return RunStart(leased, reply.started, woken)

    def create_runs(self, runs: list[NewRun]) -> list[tuple[str, bool]]:
        """`create_run` for many runs in one pipelined round trip (each still atomic)."""

        def fill(pipe: Any) -> None:
            for run in runs:
                self._create_run(run, pipe)

        return [Scripts.created(reply) for reply in self._scripts.pipelined(fill)]

    def _create_run(
        self, run: NewRun, pipe: Any, start: QueuedJob | None = None
    ) -> tuple[str, bool]:
        return self._scripts.create_run(run_creation(run, start), client=pipe)

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

    def run_function_id(self, run_id: str) -> str | None:
        """The function a run belongs to (None if the run is not in Redis)."""
        return self._client.hget(self._keys.run(run_id).meta, "function_id")

    def run_function_ids(self, run_ids: Sequence[str]) -> list[str | None]:
        """`run_function_id` for each run, in one pipelined round trip."""
        pipe = self._client.pipeline(transaction=False)
        for run_id in run_ids:
            pipe.hget(self._keys.run(run_id).meta, "function_id")
        return list(pipe.execute())

    def stack_length(self, run_id: str) -> int:
        """How many steps the run has memoized (0 for a missing run): a cheap way to tell
        whether steps were saved since its state was loaded (checkpoints)."""
        return int(self._client.llen(self._keys.run(run_id).stack))

    def load_run(self, run_id: str) -> RunState | None:
        pipe = self._client.pipeline(transaction=True)
        self._queue_load(pipe, run_id)
        return self._loaded(run_id, *pipe.execute())

    def wake_run(
        self, run_id: str, step: str, info: dict[str, JSON], acquire: SlotAcquire | None = None
    ) -> tuple[SaveResult, RunState | None, tuple[str, list[Job]] | None]:
        """A sleep is over: `save_step(run_id, step, None, info)` and the run's state as it
        is after it (`load_run`), in one round trip (one MULTI: nothing comes between); with
        `acquire`, the woken job's slots taken in it too (`wake_runs`)."""
        return self.wake_runs([(run_id, step, info)], [acquire])[0]

    def wake_runs(
        self,
        wakes: Sequence[tuple[str, str, dict[str, JSON]]],
        acquires: Sequence[SlotAcquire | None] = (),
    ) -> list[tuple[SaveResult, RunState | None, tuple[str, list[Job]] | None]]:
        """`wake_run` for each (run id, sleep step, info), all in one round trip (one MULTI:
        nothing comes between). With `acquires` (one per wake, None for none), the woken job
        of a run limited by `concurrency` takes its slots (or is parked) in the same MULTI
        (lua/slots_acquire.lua): each result's third item is that script's (code, woken
        waiters), None without one."""
        calls = [
            (run_id, [(step, _dumps(None), _encode_info(info))]) for run_id, step, info in wakes
        ]
        takes = list(acquires) + [None] * (len(wakes) - len(acquires))

        def fill(pipe: Any) -> None:
            for (run_id, step_args), take in zip(calls, takes, strict=True):
                self._scripts.queue_save_steps(pipe, run_id, step_args)
                self._queue_load(pipe, run_id)
                if take is not None:
                    self._scripts.queue_slots_acquire(pipe, take)

        replies = iter(self._scripts.pipelined(fill, transaction=True))
        results: list[tuple[SaveResult, RunState | None, tuple[str, list[Job]] | None]] = []
        for (run_id, _, _), take in zip(wakes, takes, strict=True):
            save = next(replies)
            load = [next(replies) for _ in range(4)]
            code, stored, pending = save[0]
            if code == "created":
                saved = SaveResult("created", None, int(pending))
            elif code == "ended":
                saved = SaveResult("ended", None, 0)
            else:
                memo = None if not stored else json.loads(stored)
                saved = SaveResult(code, memo, int(pending))
            got: tuple[str, list[Job]] | None = None
            if take is not None:
                got_code, woken = next(replies)
                got = (str(got_code), [Job.model_validate_json(job) for job in woken])
            results.append((saved, self._loaded(run_id, *load), got))
        return results

    def _queue_load(self, pipe: Any, run_id: str) -> None:
        r = self._keys.run(run_id)
        pipe.hgetall(r.meta)
        pipe.lrange(r.stack, 0, -1)
        pipe.hgetall(r.steps)
        pipe.hgetall(r.history)

    def _loaded(
        self,
        run_id: str,
        meta: dict[str, str],
        stack: list[str],
        steps: dict[str, str],
        history: dict[str, str],
    ) -> RunState | None:
        if not meta:
            return None
        memos: dict[str, JSON] = {}
        kinds: dict[str, str] = {}
        for step in stack:
            if step not in steps:
                raise StateError(f"run {run_id}: step {step} is on the stack but has no memo")
            memos[step] = json.loads(steps[step])
            kind = _decode_record(step, history[step]).get("kind") if step in history else None
            if isinstance(kind, str):
                kinds[step] = kind
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
            kinds=kinds,
        )

    def mark_started(self, run_id: str, now: int, function_id: str | None = None) -> bool:
        """Status Queued -> Running (moving it between the status indexes, counting the
        start); started_at written once. A missing run is left alone. A caller that has
        loaded the run passes its `function_id` (the script checks it), saving a read.
        True if this call moved the run from Queued to Running."""
        if function_id is None:
            function_id = self._client.hget(self._keys.run(run_id).meta, "function_id")
        if function_id is None:
            return False
        return self._scripts.mark_started(run_id, function_id, now)

    def save_step(
        self,
        run_id: str,
        step: str,
        memo: JSON,
        info: dict[str, JSON],
        now: int,
        *,
        function_id: str = "",
        observed: tuple[str, float] | None = None,
    ) -> SaveResult:
        """First write wins: store `memo` under `step`, push it on the stack, drop it from the
        pending set, merge `info` into the step's history record. See lua/save_step.lua.

        `info` is merged only by the call that creates the memo, and `observed` (the step
        duration's (histogram bucket, seconds), `metrics.step_observation`) counted under
        `function_id` by it only. `now` is not used."""
        return self.save_steps(run_id, [(step, memo, info)], function_id, [observed])[0]

    def save_steps(
        self,
        run_id: str,
        steps: list[tuple[str, JSON, dict[str, JSON]]],
        function_id: str = "",
        observed: Sequence[tuple[str, float] | None] = (),
    ) -> list[SaveResult]:
        """`save_step` for consecutive steps (step, memo, info) in one script call, in order:
        one result per step handled; it stops after the first "different" or "ended" (what
        followed was computed from a memo that lost). `observed`: each step's duration
        (bucket, seconds; None: not counted), counted as `save_step` does."""
        replies = self._scripts.save_steps(
            run_id,
            [(step, _dumps(memo), _encode_info(info)) for step, memo, info in steps],
            function_id,
            observed,
        )
        results: list[SaveResult] = []
        for (_, memo, _), (status, stored, pending) in zip(steps, replies, strict=False):
            if status == "created":
                results.append(SaveResult("created", memo, pending))
            elif status == "ended":
                results.append(SaveResult("ended", None, 0))
            else:
                loaded = None if stored is None else json.loads(stored)
                results.append(SaveResult(status, loaded, pending))
        return results

    def record_step(self, run_id: str, step: str, info: dict[str, JSON]) -> None:
        """Merge `info` (name, kind, attempts, error, due, started_at...) into the step's
        history record without memoizing anything. A missing run is left alone."""
        self._scripts.record_step(run_id, step, _encode_info(info))

    def suspend(
        self,
        run_id: str,
        job_id: str,
        token: str,
        follow: Sequence[tuple[str, dict[str, JSON] | None, QueuedJob]],
        pending: Sequence[str] = (),
        pause: Pause | None = None,
        correlation_mode: str = "",
        *,
        steps: Sequence[tuple[str, JSON, dict[str, JSON]]] = (),
        observed: Sequence[tuple[str, float] | None] = (),
        function_id: str = "",
        events: Sequence[NewEvent] = (),
        now: int = 0,
        dedupe_ttl_ms: int = 0,
        send_by: int = 0,
        message: BrokerMessage | None = None,
        lookback: tuple[int, str] | None = None,
        pauses: Sequence[Pause] = (),
        release: SlotRelease | None = None,
    ) -> Suspended:
        """The run stops until later (lua/suspend.lua), in one step: for each (hashed step id
        or "", history info or None, job as `Queue.plan` made it) the info is merged into the
        step's history record and the job queued; then the job `job_id`, whose delivery
        (lease `token`) made the call, is finished. With `pending`, the run's pending
        parallel set is replaced by those steps first (as `set_pending`); with `pause`, it is
        saved first, as `save_pause` saves it (`correlation_mode` "fail" or "replace": as
        `save_signal_pause` does with a signal's name). `steps` (step, memo, info): in-process
        steps that ran before the stop, saved first as `save_steps` saves them (each duration
        in `observed`, counted under `function_id`). `events` (an invoke's event): stored
        with the job that processes them, as `ingest_events` stores them (received `now`,
        deduplicated on their own id for `dedupe_ttl_ms`; the job sent by `send_by`; with
        `message`, the broker message of job "event:<events[0]'s internal id>", pushed with
        it as `ingest_events` pushes it). `lookback` (the oldest received_at in ms, the
        trigger's event id never matched), with a wait's `pause`: once the pause is saved,
        the recent events of its name received since then are read in the same call; with
        any, everything is written but the job is kept: "look" answered with their ids
        (`Suspended.recent`), to match before the job is finished. `pauses`: more pauses
        saved with `pause` (waits and invokes among parallel steps; neither mode "fail" nor a
        lookback then).

        Returns the code ("suspended", or "ended", "missing", "lost", "conflict" (the signal
        name is another pending pause's), "different" (a step has another memo): nothing
        written), whether each job was created (False: queued already, or it ran within the
        tombstone TTL) and the events' job to send (None: none made, its message pushed, or
        not "suspended"). With `release` (the concurrency slots the job holds), a suspended
        job also gives its slots back and wakes the waiters that now fit (as
        `SlotStore.release`), in the same call: `Suspended.woken`, for the caller to send
        (`Suspended.released`; "look" keeps them with the job). A repeat of the call (lost
        reply) answers the first's outcome."""
        items = [
            FollowUp(
                step,
                _encode_info(info) if info is not None else "",
                planned.job.id,
                job_record(planned.job, planned.due_at),
                planned.send_by,
            )
            for step, info, planned in follow
        ]
        saved = [
            (_pause_ref(each, each.model_dump_json()), each.expires_at, correlation_mode)
            for each in ([pause] if pause is not None else []) + list(pauses)
        ]
        if len(saved) > 1 and (correlation_mode == "fail" or lookback is not None):
            raise ValueError("several pauses suspend with neither mode 'fail' nor a lookback")
        looked = None
        if lookback is not None and pause is not None:
            looked = (pause.event, lookback[0], RECENT_EVENTS_MAX, lookback[1])
        code, enqueued, event_job, pushed, recent, woken = self._scripts.suspend(
            run_id,
            job_id,
            token,
            items,
            pending,
            saved,
            steps=[(step, _dumps(memo), _encode_info(info)) for step, memo, info in steps],
            durations=observed,
            function_id=function_id,
            events=[event_item(self._keys, event, now) for event in events],
            now=now,
            dedupe_ttl_ms=dedupe_ttl_ms,
            send_by=send_by,
            message=message,
            lookback=looked,
            release=release,
        )
        job = None if pushed else self._event_job(event_job)
        return Suspended(
            code,
            [each == 1 for each in enqueued],
            job,
            recent,
            [Job.model_validate_json(raw) for raw in woken],
            released=release is not None and code == "suspended",
        )

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
        return self.end_run(run_id, status, output, error, now)[0]

    def end_run(
        self,
        run_id: str,
        status: str,
        output: JSON,
        error: JSON,
        now: int,
        events: Sequence[NewEvent] = (),
        send_by: int = 0,
        *,
        guess: tuple[str, Sequence[str]] | None = None,
        steps: Sequence[tuple[str, JSON, dict[str, JSON]]] = (),
        observed: Sequence[tuple[str, float] | None] = (),
    ) -> tuple[bool, Job | None]:
        """`finish_run`, storing the run's lifecycle `events` and queueing the job that
        processes them (when something listens) in the same script call, so no crash can
        end a run without them. Returns (True for the call that ended it, that job).

        `steps` (step, memo, info), the function's last steps not saved yet, are saved by
        the same call first, as `save_steps` saves them (each duration in `observed`); when
        one already has another memo nothing is written and (False, None) returned.

        `guess` (function id, the run's job ids: the caller's own job) is tried first as
        the run's snapshot, with no pauses, saving its read; the script refuses a wrong
        guess ("changed") and the snapshot is then read."""
        end = RunEnd(run_id, "", "", status, output, error, now, events, send_by, steps, observed)
        ended = self._end(end, guess)
        return ended.code == "finished", ended.job

    def end_alone(self, end: RunEnd, *, guess: bool) -> Ended:
        """`end_run` of `end`; with `guess`, its job first guessed as the run's only one.
        With `end.release`, the call that ends the run gives the job's slots back too."""
        return self._end(end, (end.function_id, [end.job_id]) if guess else None)

    def _end(self, end: RunEnd, guess: tuple[str, Sequence[str]] | None) -> Ended:
        if not RunStatus(end.status).ended:
            raise ValueError(f"finish_run needs an ended status, not {end.status!r}")
        items = [event_item(self._keys, event, end.now) for event in end.events]
        token = end.events[0].internal_id if end.events else new_ulid(end.now)
        step_args = [(step, _dumps(memo), _encode_info(info)) for step, memo, info in end.steps]
        for attempt in range(RETRIES):
            pauses: list[PauseRef] = []
            if attempt == 0 and guess is not None:
                function_id, job_ids = guess[0], list(guess[1])
            else:
                function_id, pauses, job_ids = self._run_snapshot(end.run_id)
            reply = self._scripts.finish_run(
                end.run_id,
                end.status,
                _dumps(end.output),
                _dumps(end.error),
                end.now,
                pauses,
                job_ids,
                function_id=function_id,
                token=token,
                events=items,
                send_by=end.send_by,
                steps=step_args,
                durations=end.observed,
                release=end.release,
                release_job=end.job_id,
            )
            if reply[0] != "changed":
                return self._ended(end, *reply)
        raise StateError(f"run {end.run_id}: its pauses and jobs kept changing during finish")

    def _ended(self, end: RunEnd, code: FinishCode, job_id: str, woken: list[str]) -> Ended:
        return Ended(
            code,
            self._event_job(job_id),
            [Job.model_validate_json(raw) for raw in woken],
            released=end.release is not None and code == "finished",
        )

    def end_runs(self, ends: Sequence[RunEnd]) -> list[Ended]:
        """`end_run` for each run's end, as its own job guessed it (`RunEnd.job_id`: the
        run's only job, no pauses), all in one pipelined round trip (each call atomic
        alone). Returns each call's code (a "changed" one, whose guess was wrong, wrote
        nothing: the caller ends it with `end_run`) and its events' job."""
        calls = []
        for end in ends:
            if not RunStatus(end.status).ended:
                raise ValueError(f"finish_run needs an ended status, not {end.status!r}")
            items = [event_item(self._keys, event, end.now) for event in end.events]
            token = end.events[0].internal_id if end.events else new_ulid(end.now)
            steps = [(step, _dumps(memo), _encode_info(info)) for step, memo, info in end.steps]
            calls.append((end, items, token, steps))

        def fill(pipe: Any) -> None:
            for end, items, token, steps in calls:
                self._scripts.finish_run(
                    end.run_id,
                    end.status,
                    _dumps(end.output),
                    _dumps(end.error),
                    end.now,
                    [],
                    [end.job_id],
                    function_id=end.function_id,
                    token=token,
                    events=items,
                    send_by=end.send_by,
                    steps=steps,
                    durations=end.observed,
                    release=end.release,
                    release_job=end.job_id,
                    client=pipe,
                )

        replies = self._scripts.pipelined(fill)
        return [
            self._ended(end, *Scripts.finished(reply))
            for end, reply in zip(ends, replies, strict=True)
        ]

    @staticmethod
    def _event_job(job_id: str) -> Job | None:
        """The job ingest.lua made for the events something listens to. (Its stored copy,
        which `begin_job` hands the worker, lists all of them.)"""
        if not job_id:
            return None
        return event_job([job_id.removeprefix("event:")])

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


def _encode_info(info: dict[str, JSON]) -> str:
    """History info as the Lua merge takes it: an object of field -> JSON text."""
    return _dumps({name: _dumps(value) for name, value in info.items()})


def _decode_record(step: str, raw: str) -> dict[str, JSON]:
    record: dict[str, JSON] = {name: json.loads(value) for name, value in json.loads(raw).items()}
    record.setdefault("id", step)
    return record


def run_creation(run: NewRun, start: QueuedJob | None) -> RunCreation:
    """`run` (and its start job, as `Queue.plan` made it) encoded as lua/create_run.lua
    takes it: the one builder for every creation (Queued, started, pipelined)."""
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
    return RunCreation(
        run_id=run.run_id,
        function_id=run.function_id,
        created_at=run.created_at,
        events_json=_dumps(run.events),
        event_ids=run.event_ids,
        correlation_id=run.correlation_id or "",
        idempotency_key=run.idempotency_key,
        idempotency_ttl_ms=run.idempotency_ttl_ms,
        original_run_id=run.original_run_id or "",
        memo_json=memo_json,
        start=None
        if start is None
        else (start.job.id, job_record(start.job, start.due_at), start.send_by),
    )
