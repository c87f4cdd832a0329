"""The executor: load run state, call the function through its driver, save what it reports,
schedule what comes next.

    job ─► load run ─► driver.call ─► outcome
                          ▲              │ StepRun / StepFailed   save (first write wins), go on
                          └──────────────┤ StepError              retry job with backoff
                                         │ StepPlanned / several  pending set, one job per step
                                         │ Sleep                  sleep job at wake time
                                         │ WaitForEvent/Invoke    pause + timeout job
                                         │ complete / error       finish the run

A task keeps calling the function while steps complete (`step_budget_seconds`), so a run of
in-process steps costs no queue hop per step, and the run only suspends at sleeps, waits,
invokes, retries and crashes. Consecutive in-process step results are saved together, in one
script call: when SAVE_BATCH_STEPS are waiting, when the oldest has waited SAVE_BATCH_S (checked
as each step ends), and always before anything else is written for the run (its next op), or
with it (its end: lua/finish_run.lua saves them and ends the run in one call). A worker crash
can so lose up to that many finished results besides the running step: those steps run again
on the retry, as a step interrupted by a crash always does. The jobs of one message of due
timers (`woken`) share their round trips: their sleeps are marked done and their runs read in
one, and the runs they end are written together when the message is done.

A suspend is one script call (lua/suspend.lua, `_suspend`): the in-process steps not saved yet
are saved, the steps the run stops on recorded, the jobs that carry it on queued (a wait's or
an invoke's pause saved with its timeout job; an invoke's `inngest/function.invoked` event
stored with the job that processes it) and the job that ran the call finished, under that
job's lease (`Job.lease`; a delivery whose lease another took over writes nothing); the worker
then finishes nothing (`Done`). So N in-process steps and the sleep after them are one call.
A wait with lookback reads the recent events of its name in that call too: with some in its
window, its job stays until they are matched (`lookback.match_events`). Waits for events and
invokes among parallel steps go in one call with the pending set; signal and lookback waits
among parallel steps still save their pause, history record and timeout job as separate calls
and leave their job to the worker, which finishes it after them.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

from app import expressions, lookback, metrics, outbound, signals, tracing
from app.config import Settings
from app.drivers.base import CallRequest, CallResult, CheckpointResult, Driver, Op
from app.durations import MAX_WAIT_MS, iso_ms, parse_duration_ms, parse_time_ms
from app.errors import BadRequest
from app.flow.slots import NO_GRANT, Grant, Slots
from app.lifecycle import Lifecycle
from app.models import (
    JSON,
    FunctionConfig,
    Job,
    JobKind,
    Pause,
    RunStatus,
    StartLimits,
    event_job,
)
from app.queue import Queue
from app.registry import Registry
from app.runner import Runner
from app.state.run_logs import RunLogStore
from app.state.store import NewEvent, RunState, SaveResult, Store, Suspended
from app.worker import Done

log = logging.getLogger("stepline.executor")

BACKOFF_TABLE_S = (15, 30, 60, 120, 300, 600, 1200, 2400, 3600, 7200)
"""Delay before retry n (0-based), as Inngest's default table; plus 0-30 s of jitter."""
INVOKE_DEFAULT_TIMEOUT_MS = 365 * 86_400_000
PAUSE_NAMESPACE = uuid.UUID("6f1e0a52-6d0c-4c43-9a43-5e0c5b7c2f10")

Outcome = Literal["continue", "stop"]
Settled = Literal["", "ended", "suspended"]
"""What became of a call's job: "" it is left to the worker to finish; "ended": it went with
its run's end (lua/finish_run.lua, maybe written when the message's batch closes);
"suspended": its run's suspend finished it, or found it was not this delivery's any more
(lua/suspend.lua)."""

SAVE_BATCH_STEPS = 32
SAVE_BATCH_S = 0.02
"""In-process step results wait unsaved at most this many / this long (see the docstring)."""


def backoff_ms(attempt: int, base_seconds: float, rng: random.Random | None = None) -> int:
    """Delay before retrying after failed attempt `attempt` (0-based)."""
    scale = base_seconds / BACKOFF_TABLE_S[0]
    step = BACKOFF_TABLE_S[min(attempt, len(BACKOFF_TABLE_S) - 1)]
    jitter = (rng or random).uniform(0, 30)
    return int((step + jitter) * scale * 1000)


def pause_id(run_id: str, step: str) -> str:
    return str(uuid.uuid5(PAUSE_NAMESPACE, f"{run_id}:{step}"))


@dataclass
class _Call:
    """One execution pass over a run: what the task has in hand."""

    job: Job
    state: RunState
    fn: FunctionConfig
    target: str | None
    attempt: int
    deadline: float
    mark_ms: int
    unsaved: list[_Unsaved] = field(default_factory=list)
    """Finished in-process steps not saved yet (in order), mirrored in `state` already."""
    unsaved_since: float = 0.0
    grant: Grant = NO_GRANT
    """The concurrency slots the job holds: given back by the script that suspends it."""
    lost: bool = False
    """A batched save found the run ended or another memo first: this call stops."""
    ended: bool = False
    """This call ended the run; its job went with it (no `finish_job` needed)."""
    suspended: bool = False
    """This call suspended the run and its job went with it, or was not this delivery's any
    more (lua/suspend.lua; no `finish_job` needed)."""

    @property
    def settled(self) -> Settled:
        return "ended" if self.ended else "suspended" if self.suspended else ""


@dataclass(frozen=True)
class _FollowUp:
    """A step the run stops on and the job that carries it on (lua/suspend.lua)."""

    step: str
    """Hashed step id whose history record gets `info`; "" for none (a yield)."""
    info: dict[str, JSON] | None
    job: Job
    due_at: int


@dataclass(frozen=True)
class _Unsaved:
    step: str
    memo: JSON
    info: dict[str, JSON]
    started_at: int
    ended_at: int


class Executor:
    def __init__(
        self,
        store: Store,
        queue: Queue,
        registry: Registry,
        runner: Runner,
        drivers: Mapping[str, Driver],
        settings: Settings,
    ) -> None:
        self._store = store
        self._queue = queue
        self._registry = registry
        self._drivers = drivers
        self._settings = settings
        self._runner = runner
        self.lifecycle = Lifecycle(store, runner, queue)
        self.slots = Slots(store, queue, settings)
        self._outbound_calls = outbound.Outbound(settings)
        self._logs = RunLogStore(store)
        self._woken: dict[str, tuple[SaveResult, RunState | None]] = {}
        """Sleeps of the message being run, marked done and read together (`woken`)."""

    @staticmethod
    def _now() -> int:
        return int(time.time() * 1000)

    # --- entry points, one per job kind -----------------------------------------------------
    def run_job(self, job: Job) -> Done | None:
        if job.kind in (JobKind.START, JobKind.EDGE):
            settled = self.execute(job, target=job.step or None, attempt=job.attempt)
        elif job.kind is JobKind.SLEEP:
            settled = self._wake(job)
        elif job.kind is JobKind.PAUSE_TIMEOUT:
            self._pause_timeout(job)
            return None
        else:
            raise ValueError(f"executor cannot run a {job.kind} job")
        if settled == "ended":
            return Done(later=self.lifecycle.deferring)  # the run ended, and its job
        if settled == "suspended":
            return Done()  # the run suspended, and its job went with it
        return None

    def fail_run(self, run_id: str, error: dict[str, JSON], now: int) -> bool:
        """Fail a run for a reason outside the function (e.g. an unusable checkpoint)."""
        state = self._store.load_run(run_id)
        if state is None or RunStatus(state.status).ended:
            return False
        return self.lifecycle.finish(state, RunStatus.FAILED, None, error, now)

    def give_up(self, job: Job, problem: str, now: int, *, name_step: bool = True) -> bool:
        """Fail the run of a job that keeps failing (`app.worker`): an `InternalError` naming
        the step the job was running, when it can be found. `name_step` asks an in-process
        function for its next step without running it (planning mode); the caller turns it
        off when even that may be what kills the process."""
        self.slots.forget(job.id, now)  # slots the call that leased it took: never run
        state = self._store.load_run(job.run_id)
        if state is None or RunStatus(state.status).ended:
            return False
        steps = self._planned_steps(job, state) if name_step else []
        where = (
            f"step {', '.join(repr(step) for step in steps)}"
            if steps
            else f"its {job.kind} job (step unknown)"
        )
        error: dict[str, JSON] = {"name": "InternalError", "message": f"{where}: {problem}"}
        log.error(
            "run failed: job kept failing run_id=%s job_id=%s %s",
            state.run_id,
            job.id,
            error["message"],
        )
        return self.lifecycle.finish(state, RunStatus.FAILED, None, error, now)

    def _planned_steps(self, job: Job, state: RunState) -> list[str]:
        """Names of the steps the run would execute next (the one `job` targets, if any),
        reported by the function in planning mode, so no step body runs. Empty when unknown:
        not a step-executing job, an SDK app (calling it again costs a request and its errors
        already count), or the function failing to plan."""
        fn = self._registry.get(state.function_id)
        if fn is None or fn.driver != "inprocess" or job.kind not in (JobKind.START, JobKind.EDGE):
            return []
        request = CallRequest(
            function=fn,
            run_id=state.run_id,
            event=state.events[0],
            events=state.events,
            steps=state.steps,
            stack=state.stack,
            attempt=job.attempt,
            max_attempts=fn.max_attempts,
            target=None,
            disable_immediate_execution=True,
            kinds=state.kinds,
        )
        try:
            result = self._drivers[fn.driver].call(request, lambda _: CheckpointResult(False))
        except Exception:
            log.exception("could not plan the failing run's next step run_id=%s", state.run_id)
            return []
        if result.kind != "ops":
            return []
        ops = [op for op in result.ops if not job.step or op.id == job.step] or result.ops
        return [op.name or op.id for op in ops]

    def cancel(self, run_id: str, now: int) -> bool:
        """Cancel a run: no further step executes; its pauses and timers are dropped."""
        state = self._store.load_run(run_id)
        if state is None or RunStatus(state.status).ended:
            return False
        return self.lifecycle.finish(state, RunStatus.CANCELLED, None, None, now)

    @contextmanager
    def woken(self, jobs: Sequence[Job]) -> Iterator[None]:
        """Around the jobs of one message (`JobRunner.handle_each`): the sleeps among them are
        marked done, and their runs read, in one round trip for all of them; each `_wake`
        then takes its own. If that fails, each does its own (`wake_run`). The runs these
        jobs end are written together as the message closes (`Lifecycle.batched`): a crash
        before that loses their last steps, which run again on the retry (as a batch of
        in-process steps does, see the module docstring)."""
        sleeps = [job for job in jobs if job.kind is JobKind.SLEEP]
        if len(sleeps) < 2:
            yield
            return
        now = self._now()
        info: dict[str, JSON] = {"status": "Completed", "ended_at": now}
        try:
            woken = self._store.wake_runs(
                [(job.run_id, job.step, info) for job in sleeps],
                [self.slots.wake_acquire(job, now) for job in sleeps],
            )
            for job, (saved, state, got) in zip(sleeps, woken, strict=True):
                self.slots.woke(job, got)
                self._woken[job.id] = (saved, state)
        except Exception:
            log.exception("waking %d runs together failed; each wakes alone", len(sleeps))
        try:
            with self.lifecycle.batched():
                yield
        finally:
            self._woken = {}

    def _wake(self, job: Job) -> Settled:
        """The sleep is over: mark it done and run on, from the state read with it (one round
        trip for both, or none when `woken` read it). What became of `job` (`Settled`)."""
        woken = self._woken.pop(job.id, None)
        if woken is None:
            now = self._now()
            info: dict[str, JSON] = {"status": "Completed", "ended_at": now}
            saved, state, got = self._store.wake_run(
                job.run_id, job.step, info, self.slots.wake_acquire(job, now)
            )
            self.slots.woke(job, got)
        else:
            saved, state = woken
        if saved.status in ("created", "identical") and saved.pending == 0:
            return self._execute(job, state, target=None, attempt=0)
        self.slots.forget(job.id, self._now())  # slots its wake took, if any: not run
        return ""

    def _pause_timeout(self, job: Job) -> None:
        now = self._now()
        pause = self._store.get_pause(job.pause_id)
        if pause is None:
            return  # an event resumed it first
        memo: JSON = None
        if pause.kind == "InvokeFunction":
            memo = {
                "error": {
                    "name": "InngestInvokeTimeoutError",
                    "message": "Timed out waiting for invoked function to complete",
                }
            }
        resume = Job(
            id=f"{pause.run_id}:resume:{pause.step}", kind=JobKind.EDGE, run_id=pause.run_id
        )
        result = self._store.consume_pause(
            pause.id, memo, now, resume=resume, send_by=self._queue.resend_deadline(now)
        )
        if result.won:
            self._store.record_step(
                pause.run_id, pause.step, {"status": "TimedOut", "ended_at": now}
            )
        if result.resumed:
            self._queue.dispatch(resume)

    # --- the loop ---------------------------------------------------------------------------
    def execute(self, job: Job, target: str | None, attempt: int) -> Settled:
        """Run the function from where the run is; what became of `job` (`Settled`)."""
        state = self._fresh(job) or self._store.load_run(job.run_id)
        return self._execute(job, state, target, attempt)

    def _execute(
        self, job: Job, state: RunState | None, target: str | None, attempt: int
    ) -> Settled:
        now = self._now()
        if state is None or RunStatus(state.status).ended:
            self.slots.forget(job.id, now)  # slots its start call took (app.flow.slots)
            return ""
        fn = self._registry.get(state.function_id)
        if fn is None:
            self.slots.forget(job.id, now)
            error = {
                "name": "FunctionNotFound",
                "message": f"function {state.function_id!r} is not registered",
            }
            self.lifecycle.finish(state, RunStatus.FAILED, None, error, now)
            return ""
        grant = self.slots.acquire(fn, state, job, now)  # or raises Parked (app.flow.slots)
        try:
            return self._drive(job, state, fn, target, attempt, now, grant)
        finally:
            grant.release(self._now())  # unless the script that stopped the job did

    def _fresh(self, job: Job) -> RunState | None:
        """The state of a run this process created a moment ago, for its start job run from
        the same task's work list (no read of what was just written). A Queued one is only
        trusted once `mark_started` confirms the run was still Queued (`_drive`); one created
        started (`Runner.create`) is dropped from `fresh` when this process ends the run
        (`Engine.create` wires it), and a run ended elsewhere meanwhile stops at its first
        save (the script finds it ended)."""
        if job.kind is not JobKind.START or job.attempt or job.lost_deliveries:
            return None
        return self._runner.fresh.take(job.run_id)

    def _drive(
        self,
        job: Job,
        state: RunState,
        fn: FunctionConfig,
        target: str | None,
        attempt: int,
        now: int,
        grant: Grant = NO_GRANT,
    ) -> Settled:
        if state.started_at is None:
            if not self._store.mark_started(state.run_id, now, state.function_id):
                # Not Queued any more (another delivery started it, or it ended): the state
                # in hand may be stale, read it.
                fresh = self._store.load_run(state.run_id)
                if fresh is None or RunStatus(fresh.status).ended:
                    return ""
                state = fresh
            state.started_at = state.started_at or now
            log.info(
                "run started run_id=%s function=%s",
                state.run_id,
                fn.id,
                extra={"run_id": state.run_id, "function": fn.id, "status": "Running"},
            )
        driver = self._drivers[fn.driver]
        call = _Call(
            job,
            state,
            fn,
            target,
            attempt,
            time.monotonic() + self._settings.step_budget_seconds,
            now,
            grant=grant,
        )
        self._loop(call, driver)
        return call.settled

    def _loop(self, call: _Call, driver: Driver) -> None:
        state, fn = call.state, call.fn
        while True:
            request = CallRequest(
                function=fn,
                run_id=state.run_id,
                event=state.events[0],
                events=state.events,
                steps=state.steps,
                stack=state.stack,
                attempt=call.attempt,
                max_attempts=fn.max_attempts,
                target=call.target,
                disable_immediate_execution=state.disable_immediate_execution,
                kinds=state.kinds,
                checkpoint_id=self._checkpoint_id(call),
            )
            call.mark_ms = self._now()
            with tracing.call_span(state.run_id, fn.id, call.attempt, call.job.kind) as span:
                result = driver.call(request, lambda op: self._checkpoint(call, op))
                if result.kind == "error":
                    tracing.fail(span, str((result.error or {}).get("message") or "error"))
            self._keep_logs(state.run_id, result)
            ends = result.kind == "complete" and not result.ops
            # A run that completes saves its last steps with its end (`_end`): one call; one
            # that stops on ops saves them with its suspend, or first (`_handle`).
            if call.lost or (not ends and result.kind != "ops" and not self._flush(call)):
                return  # the run ended or another execution's memo won meanwhile
            saved_meanwhile = request.checkpoint_id is not None and (
                self._store.stack_length(state.run_id) != len(state.stack)
            )
            if saved_meanwhile:
                # The SDK reported steps to /v1/checkpoint while this call ran.
                fresh = self._store.load_run(state.run_id)
                if fresh is None or RunStatus(fresh.status).ended:
                    return
                call.state = state = fresh
            if self._handle(call, result) == "stop":
                return
            if call.target is not None:
                # This was the last parallel branch to finish: the others saved their results
                # after our state was loaded, so read it again before rediscovering.
                fresh = self._store.load_run(state.run_id)
                if fresh is None or RunStatus(fresh.status).ended:
                    return
                call.state = state = fresh
            call.target, call.attempt = None, 0
            if time.monotonic() >= call.deadline:
                self._yield(call)
                return

    def _checkpoint_id(self, call: _Call) -> str | None:
        """The id a checkpointing SDK reports this call's steps under (`ctx.qi_id`), if it may
        checkpoint: a discovery call of an SDK function, first attempt, no step pending."""
        if (
            not self._settings.checkpointing
            or call.fn.driver == "inprocess"
            or call.target is not None
            or call.attempt != 0
            or call.state.disable_immediate_execution
        ):
            return None
        return f"{call.job.id}:{len(call.state.stack)}"

    def _keep_logs(self, run_id: str, result: CallResult) -> None:
        """Store the call's `ctx.logger` lines with the run (before its outcome, so a run
        that ends has them when it is archived). A failure loses the lines, not the run."""
        if not result.logs:
            return
        try:
            self._logs.append(run_id, uuid.uuid4().hex, result.logs)
        except Exception as exc:
            log.warning("run log lines not stored run_id=%s: %s", run_id, exc)

    def _checkpoint(self, call: _Call, op: Op) -> CheckpointResult:
        """A sequential in-process step finished: keep its result to save with the next ones
        (mirrored in the state at once), saving the batch when it is full or old enough."""
        now = self._now()
        memo: JSON = {"data": op.data}
        if not call.unsaved:
            call.unsaved_since = time.monotonic()
        call.unsaved.append(
            _Unsaved(op.id, memo, self._step_info(call, op, "Completed", now), call.mark_ms, now)
        )
        call.mark_ms = now
        if op.id not in call.state.steps:
            call.state.steps[op.id] = memo
            call.state.stack.append(op.id)
        clock = time.monotonic()
        # After a delivery died (a crash, or a step that kills its process), each step is
        # saved at once: the next crash then repeats no finished step and the poison step is
        # the one named.
        full = len(call.unsaved) >= SAVE_BATCH_STEPS or call.job.lost_deliveries > 0
        if (full or clock - call.unsaved_since >= SAVE_BATCH_S) and not self._flush(call):
            return CheckpointResult(proceed=False)
        return CheckpointResult(proceed=clock < call.deadline)

    def _flush(self, call: _Call) -> bool:
        """Save the batched step results in one script call. False (and `call.lost`) when
        the run ended or one step already had another memo: the call must stop."""
        if call.lost:
            return False
        if not call.unsaved:
            return True
        batch, call.unsaved = call.unsaved, []
        results = self._store.save_steps(
            call.state.run_id,
            [(u.step, u.memo, u.info) for u in batch],
            call.fn.id,  # each created step's duration is counted by the same script
            [metrics.step_observation((u.ended_at - u.started_at) / 1000) for u in batch],
        )
        for saved in results:
            if saved.status not in ("created", "identical"):
                call.lost = True
                return False
        return True

    def _step_info(
        self, call: _Call, op: Op, status: str, now: int, kind: str = "StepRun"
    ) -> dict[str, JSON]:
        return {
            "name": op.name,
            "kind": kind,
            "status": status,
            "started_at": call.mark_ms,
            "ended_at": now,
            "attempts": call.attempt + 1,
            # A step that succeeds after failed attempts must not keep their error in history.
            "error": op.error,
        }

    def _save_run_step(
        self, call: _Call, op: Op, memo: JSON, status: str, kind: str = "StepRun"
    ) -> SaveResult:
        now = self._now()
        info = self._step_info(call, op, status, now, kind)
        saved = self._store.save_step(
            call.state.run_id,
            op.id,
            memo,
            info,
            now,
            function_id=call.fn.id,
            observed=metrics.step_observation((now - call.mark_ms) / 1000),
        )
        call.mark_ms = now
        self._remember(call, op.id, memo, saved)
        return saved

    @staticmethod
    def _remember(call: _Call, step: str, memo: JSON, saved: SaveResult) -> None:
        """Mirror a save in the state this task holds, so the next call replays it."""
        if saved.status != "ended" and step not in call.state.steps:
            call.state.steps[step] = saved.memo if saved.status != "created" else memo
            call.state.stack.append(step)
        if saved.pending == 0:
            call.state.disable_immediate_execution = False

    def _yield(self, call: _Call) -> None:
        """Budget spent: hand the rest of the run to a fresh task (fairness between runs)."""
        run_id = call.state.run_id
        job = Job(id=f"{run_id}:yield:{len(call.state.stack)}", kind=JobKind.EDGE, run_id=run_id)
        now = self._now()
        self._suspend(call, [_FollowUp("", None, job, now)], now)

    # --- outcomes ---------------------------------------------------------------------------
    def _handle(self, call: _Call, result: CallResult) -> Outcome:
        now = self._now()
        if result.kind == "complete":
            for op in result.ops:  # steps a checkpointing SDK reported with the run's end
                if op.op == "StepRun":
                    saved = self._save_run_step(call, op, {"data": op.data}, "Completed")
                    if saved.status == "ended":
                        return "stop"
            self._end(call, RunStatus.COMPLETED, result.output, None, now)
            return "stop"
        if result.kind == "error":
            return self._function_error(call, result, now)
        ops = result.ops
        if not ops:
            self._flush(call)
            return "stop"
        if not self._suspends(call, ops, now) and not self._flush(call):
            return "stop"  # the run ended or another execution's memo won meanwhile
        if len(ops) > 1:
            return self._parallel(call, ops, now)
        return self._single(call, ops[0], now)

    def _suspends(self, call: _Call, ops: Sequence[Op], now: int) -> bool:
        """Whether these ops stop the run in one suspend (`_suspend`), which then saves the
        in-process steps not saved yet with it: N steps and the sleep (wait, invoke, retry,
        planned parallel steps) after them are one script call. Any other path saves them
        first (`_flush`); one of these that ends up not suspending (a signal name taken)
        saves them before it writes anything else."""
        if not call.unsaved:
            return False
        if len(ops) > 1:
            return all(
                self._follow_up(call.state.run_id, op, now) is not None or _folds_in_parallel(op)
                for op in ops
            )
        op = ops[0]
        if op.op == "Sleep":
            wake = self._wake_time(op, now)
            return wake is not None and wake > now
        if op.op == "StepError":
            return not op.no_retry and call.attempt + 1 < call.fn.max_attempts
        return op.op in ("WaitForEvent", "InvokeFunction", "WaitForSignal", "StepPlanned")

    def _parallel(self, call: _Call, ops: Sequence[Op], now: int) -> Outcome:
        """Several steps at once: all pending, each planned (or asleep) with its own job.
        Steps that only need a job, waits for an event (no lookback) and invokes are set up
        together, with the pending set, by one suspend (each wait's and invoke's pause and
        timeout job, each invoke's event with their job); the others (results reported with
        the plan, signal and lookback waits) first, one by one."""
        run_id = call.state.run_id
        pending = [op.id for op in ops]
        follow: list[_FollowUp] = []
        pauses: list[Pause] = []
        events: list[NewEvent] = []
        for op in ops:
            each = self._follow_up(run_id, op, now)
            if each is None and _folds_in_parallel(op):
                try:
                    pause = self._new_pause(call, op, now)
                except BadRequest:
                    break  # the op fails its step on the way below
                each = self._pause_follow_up(run_id, op, pause, now)
                pauses.append(pause)
                if op.op == "InvokeFunction":
                    events.append(self._invoke_event(call, op, pause, now))
            if each is None:
                break
            follow.append(each)
        else:
            self._suspend(call, follow, now, pending=pending, pauses=pauses, events=events)
            return "stop"
        if not self._flush(call):
            return "stop"
        follow = [each for op in ops if (each := self._follow_up(run_id, op, now)) is not None]
        self._store.set_pending(call.state.run_id, pending)
        for op in ops:
            if self._follow_up(call.state.run_id, op, now) is None:
                self._suspend_on(call, op, now, parallel=True)
        if follow:
            self._suspend(call, follow, now)
        return "stop"

    def _single(self, call: _Call, op: Op, now: int) -> Outcome:
        if op.op == "StepRun":
            saved = self._save_run_step(call, op, {"data": op.data}, "Completed")
            return self._after_save(saved)
        if op.op == "StepError" and not op.no_retry and call.attempt + 1 < call.fn.max_attempts:
            self._retry_step(call, op, now)
            return "stop"
        if op.op in ("StepError", "StepFailed"):
            error = op.error or {"name": "Error", "message": "step failed"}
            saved = self._save_run_step(call, op, {"error": error}, "Failed")
            return self._after_save(saved)
        if op.op in ("Gateway", "AIGateway"):
            return self._outbound(call, op, now)
        if op.op == "Sleep":
            wake = self._wake_time(op, now)
            if wake is not None and wake <= now:  # already due: no timer, go on
                info: dict[str, JSON] = {
                    "name": op.name,
                    "kind": "Sleep",
                    "status": "Completed",
                    "ended_at": now,
                }
                saved = self._store.save_step(call.state.run_id, op.id, None, info, now)
                self._remember(call, op.id, None, saved)
                return self._after_save(saved)
        return self._suspend_on(call, op, now, parallel=False)

    def _outbound(self, call: _Call, op: Op, now: int) -> Outcome:
        """step.fetch / step.ai: make the request the SDK reported and memoize its outcome."""
        result = self._outbound_calls.perform(op)
        if result.error is None:
            saved = self._save_run_step(call, op, result.memo, "Completed", op.op)
            return self._after_save(saved)
        failed = Op("StepError", op.id, op.name, error=result.error)
        if result.retriable and call.attempt + 1 < call.fn.max_attempts:
            self._retry_step(call, failed, self._now(), op.op)
            return "stop"
        saved = self._save_run_step(call, failed, {"error": result.error}, "Failed", op.op)
        return self._after_save(saved)

    @staticmethod
    def _after_save(saved: SaveResult) -> Outcome:
        if saved.status in ("ended", "different") or saved.pending > 0:
            return "stop"
        return "continue"

    def _follow_up(
        self, run_id: str, op: Op, now: int, *, parallel: bool = True
    ) -> _FollowUp | None:
        """The step `op` plans and the job that carries the run on, when that is all it
        needs (a planned step, a sleep); None for the others (a parallel step's result to
        save, a sleep too long, a wait)."""
        if op.op in ("StepPlanned", "StepRun", "StepError", "StepFailed", "Gateway", "AIGateway"):
            if op.op == "StepRun" and parallel:
                return None
            info: dict[str, JSON] = {"name": op.name, "kind": "StepRun", "status": "Planned"}
            job = Job(id=f"{run_id}:plan:{op.id}", kind=JobKind.EDGE, run_id=run_id, step=op.id)
            return _FollowUp(op.id, info, job, now)
        if op.op == "Sleep":
            wake = self._wake_time(op, now)
            if wake is None:
                return None
            info = {
                "name": op.name,
                "kind": "Sleep",
                "status": "Sleeping",
                "started_at": now,
                "due_at": wake,
            }
            job = Job(id=f"{run_id}:sleep:{op.id}", kind=JobKind.SLEEP, run_id=run_id, step=op.id)
            return _FollowUp(op.id, info, job, wake)
        return None

    def _suspend(
        self,
        call: _Call,
        follow: Sequence[_FollowUp],
        now: int,
        pause: Pause | None = None,
        correlation_mode: str = "",
        *,
        pending: Sequence[str] = (),
        events: Sequence[NewEvent] = (),
        lookback: tuple[int, str] | None = None,
        pauses: Sequence[Pause] = (),
    ) -> Suspended:
        """The run stops until later: save the in-process steps not saved yet and its pause
        (if any), record the steps it stops on, queue their jobs, store `events` (an
        invoke's) with the job that processes them, and finish the job that ran this call,
        in one script call (lua/suspend.lua); with `pending`, the run's pending parallel
        steps are set in it too; with `lookback` (a wait's, as `Store.suspend` takes it), the
        recent events it may match are read in it too ("look": the job is kept for the
        caller to match them). Once per call: the call stops after it. Code "conflict":
        nothing was written because the pause's correlation id (a signal name) is another
        pending pause's (the unsaved steps are then still to save)."""
        assert not call.suspended, "a call suspends its run once"
        run_id = call.state.run_id
        limits = self.slots.wake_limits(call.fn, call.state)  # a sleep's wake takes its slots
        planned = [
            (f.step, f.info, self._queue.plan(_with_limits(f.job, limits), f.due_at, now))
            for f in follow
        ]
        batch, call.unsaved = call.unsaved, []
        done = self._store.suspend(
            run_id,
            call.job.id,
            call.job.lease,
            planned,
            pending,
            pause,
            correlation_mode,
            steps=[(u.step, u.memo, u.info) for u in batch],
            observed=[metrics.step_observation((u.ended_at - u.started_at) / 1000) for u in batch],
            function_id=call.fn.id,
            events=events,
            now=now,
            dedupe_ttl_ms=self._settings.event_dedupe_seconds * 1000,
            send_by=self._runner.send_by(now),
            message=self._queue.message(event_job([events[0].internal_id])) if events else None,
            lookback=lookback,
            pauses=pauses,
            release=self.slots.handoff(call.grant, now),
        )
        code = done.code
        if done.released:
            self.slots.released(call.grant, done.woken)
        if code in ("missing", "conflict"):
            call.unsaved = batch
            return done  # the job is left for the worker to finish
        if code == "different":
            call.lost = True  # another execution's memo won: it carries the run on
            return done  # the job is left for the worker to finish
        # Finished by the script, or not ours ("lost") or gone ("ended"); "look" keeps it.
        call.suspended = code != "look"
        if code not in ("suspended", "look"):
            log.info("run not suspended (%s) run_id=%s job_id=%s", code, run_id, call.job.id)
            return done
        for (_, _, queued), new in zip(planned, done.created, strict=True):
            if new:
                self._queue.written(queued, now)
        if done.event_job is not None:
            self._queue.dispatch(done.event_job)
        return done

    def _suspend_on(self, call: _Call, op: Op, now: int, parallel: bool) -> Outcome:
        if op.op == "StepRun" and parallel:
            saved = self._save_run_step(call, op, {"data": op.data}, "Completed")
            return self._after_save(saved)
        if op.op == "Sleep" and self._wake_time(op, now) is None:
            return self._fail_early(call, f"sleep {op.name!r} is longer than 366 days", now)
        follow = self._follow_up(call.state.run_id, op, now, parallel=parallel)
        if follow is not None:
            self._suspend(call, [follow], now)
        elif op.op == "WaitForSignal":
            return self._wait_for_signal(call, op, now, parallel)
        elif op.op in ("WaitForEvent", "InvokeFunction"):
            try:
                self._pause(call, op, now, parallel)
            except BadRequest as exc:
                return self._fail_early(call, f"step {op.name!r}: {exc.message}", now)
        return "stop"

    def _pause(self, call: _Call, op: Op, now: int, parallel: bool) -> None:
        state = call.state
        pause = self._new_pause(call, op, now)
        if not parallel:
            # Saved with its history record and timeout job (an invoke's event with the job
            # that processes it), and the job finished, in one call. A lookback's recent
            # events are read in it too: with some, its job stays until they are matched (a
            # crash before runs the match again).
            follow = self._pause_follow_up(state.run_id, op, pause, now)
            events = [self._invoke_event(call, op, pause, now)] if op.op == "InvokeFunction" else []
            back = None
            if pause.lookback_ms:
                back = (lookback.since(pause, now), pause.trigger_event_id)
            done = self._suspend(call, [follow], now, pause, events=events, lookback=back)
            if done.code == "look":
                lookback.match_events(self._store, self._runner, pause, done.recent, now)
            return
        self._store.save_pause(pause)
        self._track_pause(call, op, pause, now)
        if pause.lookback_ms:
            lookback.match_recent(self._store, self._runner, pause, now)
        if op.op == "InvokeFunction":
            payload = op.opts.get("payload")
            self.lifecycle.emit_invoke(
                state,
                str(op.opts.get("function_id", "")),
                payload if isinstance(payload, dict) else {},
                str(pause.correlation_id),
                pause.expires_at,
                now,
            )
            if not op.opts.get("function_id"):
                log.warning("invoke without function_id run_id=%s", state.run_id)

    def _new_pause(self, call: _Call, op: Op, now: int) -> Pause:
        """The pause of a wait for an event or an invoke (raises `BadRequest` for options
        out of bounds)."""
        state = call.state
        trigger = state.events[0]
        timeout = op.opts.get("timeout")
        if op.op == "WaitForEvent":
            event_name = str(op.opts.get("event") or op.name)
            expires = now + (parse_duration_ms(timeout) if timeout not in (None, "") else 0)
            prepared = expressions.prepare_pause(_opt_str(op.opts.get("if")), trigger)
            back = op.opts.get("lookback")
            back_ms = parse_duration_ms(back) if isinstance(back, str) and back else 0
            if back_ms > lookback.MAX_LOOKBACK_MS:
                raise BadRequest("lookback is longer than 24 hours")
            pause = Pause(
                id=pause_id(state.run_id, op.id),
                run_id=state.run_id,
                step=op.id,
                step_name=op.name,
                kind="WaitForEvent",
                event=event_name,
                expression=prepared.expression,
                index_path=prepared.index_path,
                index_value=prepared.index_value,
                trigger_event=trigger,
                trigger_event_id=str(trigger.get("id", "")),
                expires_at=expires,
                created_at=now,
                lookback_ms=back_ms,
            )
        else:
            ttl = parse_duration_ms(timeout) if timeout else INVOKE_DEFAULT_TIMEOUT_MS
            correlation = f"{state.run_id}.{op.id}"
            pause = Pause(
                id=pause_id(state.run_id, op.id),
                run_id=state.run_id,
                step=op.id,
                step_name=op.name,
                kind="InvokeFunction",
                event="",
                correlation_id=correlation,
                trigger_event=trigger,
                expires_at=now + ttl,
                created_at=now,
            )
        if pause.expires_at - now > MAX_WAIT_MS:
            raise BadRequest("timeout is longer than 366 days")
        return pause

    def _invoke_event(self, call: _Call, op: Op, pause: Pause, now: int) -> NewEvent:
        """The `inngest/function.invoked` event of an invoke step, as its suspend stores it."""
        target = str(op.opts.get("function_id", ""))
        if not target:
            log.warning("invoke without function_id run_id=%s", call.state.run_id)
        payload = op.opts.get("payload")
        return self.lifecycle.invoke_event(
            call.state,
            target,
            payload if isinstance(payload, dict) else {},
            str(pause.correlation_id),
            pause.expires_at,
            now,
        )

    def _wait_for_signal(self, call: _Call, op: Op, now: int, parallel: bool) -> Outcome:
        """A pause keyed by its signal name (`signals.correlation`), unique among pending
        waits: a second wait on the name fails its step unless it asks to replace the first."""
        state = call.state
        signal = str(op.opts.get("signal") or op.name)
        timeout = op.opts.get("timeout")
        try:
            ttl = parse_duration_ms(timeout) if isinstance(timeout, str) and timeout else 0
        except BadRequest as exc:
            return self._fail_early(call, f"step {op.name!r}: {exc.message}", now)
        if ttl > MAX_WAIT_MS:
            return self._fail_early(call, f"step {op.name!r}: timeout is longer than 366 days", now)
        pause = Pause(
            id=pause_id(state.run_id, op.id),
            run_id=state.run_id,
            step=op.id,
            step_name=op.name,
            kind="WaitForSignal",
            event="",
            correlation_id=signals.correlation(signal),
            trigger_event=state.events[0],
            expires_at=now + ttl,
            created_at=now,
        )
        replace = op.opts.get("conflict") == "replace"
        waiting_for = f"signal {signal}"
        if parallel:
            saved = self._store.save_signal_pause(pause, replace=replace)
        else:  # saved with its history record and timeout job, and the job finished
            follow = self._pause_follow_up(state.run_id, op, pause, now, waiting_for)
            mode = "replace" if replace else "fail"
            if self._suspend(call, [follow], now, pause, mode).code != "conflict":
                return "stop"
            saved = "conflict"
        if saved == "conflict":
            if not self._flush(call):  # the steps before it, not saved by the suspend
                return "stop"
            error: dict[str, JSON] = {
                "name": "SignalConflictError",
                "message": f"another run is already waiting for signal {signal!r} (signal "
                "names are unique among pending waits; use onConflict: 'replace' to take it over)",
            }
            failed = Op("StepError", op.id, op.name, error=error)
            result = self._save_run_step(call, failed, {"error": error}, "Failed", op.op)
            return "stop" if parallel else self._after_save(result)
        if saved != "ended":  # created, or saved by an earlier pass over the same reply
            self._track_pause(call, op, pause, now, waiting_for)
        return "stop"

    def _track_pause(
        self, call: _Call, op: Op, pause: Pause, now: int, waiting_for: str | None = None
    ) -> None:
        """Show a saved pause in the run's history and queue its timeout (a pause saved on
        its own; `_suspend` does both with the pause's save)."""
        follow = self._pause_follow_up(call.state.run_id, op, pause, now, waiting_for)
        self._store.record_step(call.state.run_id, op.id, follow.info or {})
        self._queue.enqueue(follow.job, follow.due_at, now)

    @staticmethod
    def _pause_follow_up(
        run_id: str, op: Op, pause: Pause, now: int, waiting_for: str | None = None
    ) -> _FollowUp:
        """A pause's history record and its timeout job."""
        info: dict[str, JSON] = {
            "name": op.name,
            "kind": op.op,
            "status": "Waiting",
            "started_at": now,
            "due_at": pause.expires_at,
            "waiting_for": waiting_for if waiting_for is not None else pause.event,
        }
        timeout_job = Job(
            id=f"{run_id}:timeout:{op.id}",
            kind=JobKind.PAUSE_TIMEOUT,
            run_id=run_id,
            step=op.id,
            pause_id=pause.id,
        )
        return _FollowUp(op.id, info, timeout_job, pause.expires_at)

    def _retry_step(self, call: _Call, op: Op, now: int, kind: str = "StepRun") -> None:
        run_id = call.state.run_id
        delay = backoff_ms(call.attempt, self._settings.retry_base_seconds)
        due = op.retry_at_ms if op.retry_at_ms is not None else now + delay
        info: dict[str, JSON] = {
            "name": op.name,
            "kind": kind,
            "status": "Retrying",
            "attempts": call.attempt + 1,
            "error": op.error,
            "retry_at": due,
        }
        job = Job(
            id=f"{run_id}:retry:{op.id}:{call.attempt + 1}",
            kind=JobKind.EDGE,
            run_id=run_id,
            step=op.id,
            attempt=call.attempt + 1,
        )
        self._suspend(call, [_FollowUp(op.id, info, job, due)], now)
        log.info(
            "step retry run_id=%s step=%s attempt=%d due_in_ms=%d",
            run_id,
            op.name,
            call.attempt + 1,
            due - now,
        )

    def _function_error(self, call: _Call, result: CallResult, now: int) -> Outcome:
        error = result.error or {"name": "Error", "message": "function failed"}
        if result.retriable and call.attempt + 1 < call.fn.max_attempts:
            run_id = call.state.run_id
            delay = backoff_ms(call.attempt, self._settings.retry_base_seconds)
            due = result.retry_at_ms if result.retry_at_ms is not None else now + delay
            point = call.target or f"s{len(call.state.stack)}"
            job = Job(
                id=f"{run_id}:retry:{point}:{call.attempt + 1}",
                kind=JobKind.EDGE,
                run_id=run_id,
                step=call.target or "",
                attempt=call.attempt + 1,
            )
            # Show the error in the run's history while retrying (an app that is down or
            # answered garbage): on the targeted step, or on a record of this call.
            info: dict[str, JSON] = {"attempts": call.attempt + 1, "error": error, "retry_at": due}
            if call.target:
                info["status"] = "Retrying"
            else:
                info.update(name="function call", kind="Call", status="Errored")
            self._suspend(call, [_FollowUp(call.target or f"call:{point}", info, job, due)], now)
            log.info(
                "function retry run_id=%s attempt=%d error=%s",
                run_id,
                call.attempt + 1,
                error.get("message"),
            )
            return "stop"
        self._end(call, RunStatus.FAILED, None, error, now)
        return "stop"

    def _fail_early(self, call: _Call, message: str, now: int) -> Outcome:
        error = {"name": "InvalidStep", "message": message}
        self._end(call, RunStatus.FAILED, None, error, now)
        return "stop"

    def _end(self, call: _Call, status: RunStatus, output: JSON, error: JSON, now: int) -> None:
        """End the run from its own job: that job goes with the run's (lua/finish_run.lua),
        and so do the step results not saved yet (one script call for the run's last steps
        and its end)."""
        batch, call.unsaved = call.unsaved, []
        observed = [metrics.step_observation((u.ended_at - u.started_at) / 1000) for u in batch]
        grant = call.grant
        release = self.slots.handoff(grant, now)
        if release is not None:
            grant.hand_over()  # given back by the call that ends the run (maybe batched)
        try:
            call.ended = self.lifecycle.finish(
                call.state,
                status,
                output,
                error,
                now,
                job_id=call.job.id,
                steps=[(u.step, u.memo, u.info) for u in batch],
                observed=observed,
                release=release,
                released=None
                if release is None
                else lambda woken: self.slots.settled(grant, woken, self._now()),
            )
        except Exception:
            if release is not None:  # not handed back by lifecycle: give the slots back here
                self.slots.settled(grant, None, self._now())
            raise

    @staticmethod
    def _wake_time(op: Op, now: int) -> int | None:
        until = op.opts.get("until")
        if isinstance(until, str) and until:
            wake = parse_time_ms(until)
        else:
            wake = now + parse_duration_ms(str(op.opts.get("duration") or "0s"))
        return None if wake - now > MAX_WAIT_MS else wake


def _folds_in_parallel(op: Op) -> bool:
    """A parallel op whose pause a suspend saves with the others' (`_parallel`)."""
    return op.op == "InvokeFunction" or (op.op == "WaitForEvent" and not op.opts.get("lookback"))


def _opt_str(value: JSON) -> str | None:
    return value if isinstance(value, str) and value else None


def _with_limits(job: Job, limits: StartLimits | None) -> Job:
    """A sleep job carrying its run's concurrency values (`Slots.wake_limits`), so its wake
    takes its slots in the wake's own round trip; other jobs as they are."""
    if limits is None or job.kind is not JobKind.SLEEP:
        return job
    return job.model_copy(update={"limits": limits})


__all__ = ["Executor", "backoff_ms", "iso_ms", "pause_id"]
