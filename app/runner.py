"""The runner: events in, runs and resumed pauses out.

    ingest(events) ──► ingest_events.lua: store, dedupe by id, ONE job for the request's new
                       events that a trigger or pause listens to (none: stored, no job)
    process_events(job), for each of its events:
                      ──► function.invoked   → schedule exactly that function
                      ──► trigger match      → schedule each matching function once,
                                               as flow control admits (app/flow/admission)
                      ──► function.finished  → resume the invoking parent (correlation id)
                      ──► pause matching     → resume waiting runs (indexed lookups only)

Everything here is idempotent: an event processed twice schedules no second run (the run's
idempotency key is derived from the event) and resumes no pause twice (consuming is atomic).
"""

from __future__ import annotations

import base64
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Literal

from ulid import ULID

from app import expressions, metrics
from app.config import Settings
from app.flow.slots import has_rules, start_limits
from app.ids import new_ulid, new_ulids, ulid_ms
from app.models import (
    JSON,
    FunctionConfig,
    Job,
    JobKind,
    Pause,
    StartLimits,
    event_job,
    resume_job,
    start_job,
    start_job_run,
)
from app.queue import Queue
from app.registry import Registry
from app.state.jobs import Lease
from app.state.records import QueuedJob
from app.state.runs import RunStart
from app.state.scripts import StartAdmit
from app.state.store import NewEvent, NewRun, RunState, Store

if TYPE_CHECKING:
    from app.flow.admission import Admission
    from app.flow.outcomes import Held
    from app.flow.slots import Slots
    from app.worker import Claim

log = logging.getLogger("stepline.runner")

INVOKED = "inngest/function.invoked"
FINISHED = "inngest/function.finished"
PAUSE_CREATED_GRACE_MS = 5_000
"""A pause created more than this after an event was received is not resumed by it."""

Canceller = Callable[[str, int], bool]
FRESH_RUNS = 1024
"""Runs this process created and has not started yet, kept in memory (`FreshRuns`)."""


class FreshRuns:
    """The state of runs this process just created, for the task that starts them next (its
    work list), so their first execution needs no read of what it just wrote. Bounded; an
    entry is taken once. Also the lease of the one start job the task's creation already
    took (`claim`): the work list runs that job first, with no `begin_job` of its own."""

    def __init__(self) -> None:
        self._runs: OrderedDict[str, RunState] = OrderedDict()
        self._starts: dict[str, Job] = {}
        self._waiting: set[str] = set()
        self._claim: tuple[str, str, Lease] | None = None
        self._lock = threading.Lock()

    def put(self, state: RunState, start: Job | None = None) -> None:
        """Keep a run's state as created, and its start job as recorded (`start_of`)."""
        with self._lock:
            self._runs[state.run_id] = state
            if start is not None:
                self._starts[state.run_id] = start
            if len(self._runs) > FRESH_RUNS:
                oldest, _ = self._runs.popitem(last=False)
                self._starts.pop(oldest, None)

    def start_of(self, run_id: str) -> Job | None:
        """The start job of a run kept here, as recorded with it (a function with
        concurrency or throttle: with its `limits`, which its message must carry)."""
        with self._lock:
            return self._starts.get(run_id)

    def peek(self, run_id: str) -> RunState | None:
        """The run's state if kept (not taken)."""
        with self._lock:
            return self._runs.get(run_id)

    def take(self, run_id: str) -> RunState | None:
        with self._lock:
            self._starts.pop(run_id, None)
            return self._runs.pop(run_id, None)

    def clear(self) -> None:
        """Forget them all: a new task begins (what the last one left, e.g. runs its work
        list sent on, is not for this one; a lease left unused runs out and the tick
        resends its job)."""
        with self._lock:
            self._runs.clear()
            self._starts.clear()
            self._waiting.clear()
            self._claim = None

    def wait(self, run_id: str) -> None:
        """A run this task created whose start job its creation parked for a concurrency
        slot or deferred by a throttle (`Store.create_admitted_run`): not for the work list
        (whoever frees a slot, or the throttle's countdown, sends it)."""
        with self._lock:
            self._waiting.add(run_id)

    def waits(self, run_id: str) -> bool:
        with self._lock:
            return run_id in self._waiting

    def claim(self, token: str, lease: Lease) -> None:
        """The start job of a run created started (`Store.create_started_run`) is leased to
        `token`: the work list's next job."""
        with self._lock:
            self._claim = (lease.job.id, token, lease)

    def holds(self, job_id: str) -> bool:
        """Is `job_id` the start job this task's creation leased?"""
        return self._claim is not None and self._claim[0] == job_id

    @property
    def claiming(self) -> bool:
        """Has this task's creation already leased a start job (not yet taken)?"""
        return self._claim is not None

    def claimed(self, job_id: str) -> tuple[str, Lease] | None:
        """The lease (token, lease) this task holds for `job_id` from its creation, once."""
        with self._lock:
            if self._claim is None or self._claim[0] != job_id:
                return None
            _, token, lease = self._claim
            self._claim = None
            return token, lease


class Runner:
    def __init__(self, store: Store, queue: Queue, registry: Registry, settings: Settings) -> None:
        self._store = store
        self._queue = queue
        self._registry = registry
        self.settings = settings
        self.canceller: Canceller | None = None
        """Set by the executor's owner: how a matched `Cancel` pause cancels its run."""
        self.works_here = False
        """Set in worker processes: the start jobs of in-process runs an event job creates
        are recorded, not sent, and returned to the task's work list (`JobRunner.work`),
        so an event and the runs it starts cost one queue hop."""
        self.fresh = FreshRuns()
        """Those runs' state as created, for their first execution (`Executor`)."""
        self.admission: Admission | None = None
        """Set by `Engine.create`: flow control's say before and after a run is created."""
        self.slots: Slots | None = None
        """Set by `Engine.create` (the executor's): admits a start job of a function with
        concurrency or throttle in the call that leases it (`_start_run`)."""

    # --- ingest -----------------------------------------------------------------------------
    def ingest(
        self,
        events: list[dict[str, JSON]],
        now: int,
        *,
        internal: bool = False,
        id_seed: str | None = None,
        count: bool = False,
    ) -> list[str]:
        """Store the events and queue their processing, in one script call; returns internal
        ids in order.

        A duplicate (same `id` within the dedupe window; engine events have their own
        namespace) is not queued again and answers the original's internal id. `id_seed`
        (`x-inngest-event-id-seed`) makes internal ids deterministic so an SDK's retried
        send dedupes. Events nothing listens to are stored but cost no job; the job of the
        others is sent. With `count` (the event API) they are counted as received, in the same call.
        """
        new = self.prepare(events, now, internal=internal, id_seed=id_seed)
        return self.commit(new, now, internal=internal, count=count)

    def prepare(
        self,
        events: list[dict[str, JSON]],
        now: int,
        *,
        internal: bool = False,
        id_seed: str | None = None,
    ) -> list[NewEvent]:
        """`ingest`'s first half, no Redis: the events with their internal ids, as stored."""
        ids = (seeded_ids(id_seed, len(events)) if id_seed else None) or new_ulids(now, len(events))
        return [
            new_event(raw, internal_id, now, internal=internal)
            for raw, internal_id in zip(events, ids, strict=True)
        ]

    def commit(
        self,
        new: list[NewEvent],
        now: int,
        *,
        internal: bool = False,
        count: bool = False,
    ) -> list[str]:
        """`ingest`'s second half: store prepared events and send their one job."""
        ids, job = self.store(new, now, internal=internal, count=count)
        if job is not None:
            self._queue.dispatch(job)
        return ids

    def store(
        self, new: list[NewEvent], now: int, *, internal: bool = False, count: bool = False
    ) -> tuple[list[str], Job | None]:
        """Store prepared events (of one request, or of several that the API groups into one
        call: `app.api.group_commit`) with the one job that processes them and its Celery
        message, in one script call; returns their internal ids and the job left to send
        (None: no job, or its message went with it). Once stored, the job is durable: if it
        is never sent, the tick sends it.

        The message is built beforehand (`Queue.message`) for the job named after the first
        event; the script pushes it only if that event is stored by this call (it names the
        job after another event otherwise, and that job is returned to be sent). The events
        of a request (not `internal`) go into the recent-events index of their names in the
        same call: a wait with lookback saved before it finds the event processed (the
        script sees its pause), one saved after finds it in the index (app/lookback.py)."""
        message = self._queue.message(event_job([new[0].internal_id])) if new else None
        ingested = self._store.ingest_events(
            new,
            now,
            self.settings.event_dedupe_seconds * 1000,
            self.send_by(now),
            counter=metrics.EVENTS_RECEIVED if count else "",
            message=message,
            index_recent=not internal,
        )
        return ingested.ids, None if ingested.sent else ingested.job

    def send_by(self, now: int) -> int:
        """When the tick sends a job created now if no Celery message did."""
        return self._queue.resend_deadline(now)

    def process_events(self, job: Job, now: int) -> list[Job]:
        """An event job: process its events in order, in this task. Returns the start jobs
        of the runs it left to this task's work list (see `process_event`)."""
        self.fresh.clear()
        here: list[Job] = []
        for internal_id in job.events:
            here.extend(self.process_event(internal_id, now))
        return here

    # --- processing -------------------------------------------------------------------------
    def process_event(self, internal_id: str, now: int) -> list[Job]:
        """Schedule the runs an event triggers and resume the pauses it satisfies. In a
        worker (`works_here`) the start jobs of in-process runs due now are recorded, not
        sent, and returned for the task to run here; everything else is sent."""
        record = self._store.get_event(internal_id)
        if record is None:
            log.warning("event not found event_id=%s", internal_id)
            return []
        event = record.event
        name = str(event.get("name", ""))
        data = event.get("data")
        data = data if isinstance(data, dict) else {}
        runs: list[str] = []
        # Runs started in this task: in-process ones due now (when this is a worker). Runs of
        # SDK apps' functions always go to their own queue (`Queue.queue_of`).
        here: list[Job] = []
        later = start_time([event], now) > now  # an event sent for the future
        if name == INVOKED:
            fn = self._invoked_function(data)
            send = not self.works_here or fn is None or fn.driver != "inprocess"
            run_id = self._invoke(fn, event, data, internal_id, now, send=send)
            if run_id:
                runs.append(run_id)
                if fn is not None and not send and not self.fresh.waits(run_id):
                    here.append(self.fresh.start_of(run_id) or start_job(run_id, fn.id))
        else:
            for fn in self._registry.triggered_by(name):
                if any(expressions.trigger_matches(t, event) for t in fn.triggers):
                    send = not self.works_here or later or fn.driver != "inprocess"
                    admitted = self._admit(fn, event, internal_id, now, send=send)
                    if admitted:
                        runs.append(admitted)
                        if not send and not self.fresh.waits(admitted):
                            here.append(self.fresh.start_of(admitted) or start_job(admitted, fn.id))
                elif self.admission is not None:
                    self.admission.no_match(fn, event, internal_id)
        resumed = 0
        if name == FINISHED and isinstance(data.get("correlation_id"), str):
            resumed += self._resume_invoker(data, now)
        resumed += self._match_pauses(event, internal_id, record.received_at, now)
        log.info(
            "event processed event_id=%s name=%s runs=%d resumed=%d",
            internal_id,
            name,
            len(runs),
            resumed,
            extra={
                "event_id": internal_id,
                "event_name": name,
                "run_ids": runs,
                "resumed": resumed,
            },
        )
        return here

    def _invoked_function(self, data: dict[str, JSON]) -> FunctionConfig | None:
        meta = data.get("_inngest")
        fn_id = str(meta.get("fn_id") or "") if isinstance(meta, dict) else ""
        return self._registry.get(fn_id) if fn_id else None

    def _invoke(
        self,
        fn: FunctionConfig | None,
        event: dict[str, JSON],
        data: dict[str, JSON],
        internal_id: str,
        now: int,
        *,
        send: bool,
    ) -> str | None:
        meta = data.get("_inngest")
        meta = meta if isinstance(meta, dict) else {}
        fn_id = str(meta.get("fn_id") or "")
        correlation = meta.get("correlation_id")
        correlation_id = correlation if isinstance(correlation, str) and correlation else None
        if fn is None:
            log.warning(
                "invoked function not found fn_id=%r correlation_id=%s", fn_id, correlation_id
            )
            if correlation_id:
                self._invoke_not_found(event, fn_id, correlation_id, internal_id, now)
            return None
        return self._admit(fn, event, internal_id, now, send=send, correlation_id=correlation_id)

    def _admit(
        self,
        fn: FunctionConfig,
        event: dict[str, JSON],
        internal_id: str,
        now: int,
        *,
        send: bool,
        correlation_id: str | None = None,
        default_key: str | None = None,
    ) -> str | None:
        """Schedule the event's run of `fn` if flow control admits it (app/flow/admission).
        `default_key` is the run's idempotency key unless the function sets its own."""
        if self.admission is None:
            return self.schedule(
                fn,
                [event],
                [internal_id],
                now,
                correlation_id=correlation_id,
                send=send,
                idempotency_key=default_key,
            )[0]
        decision = self.admission.admit(fn, event, internal_id, now, correlation_id=correlation_id)
        if not decision.start:
            return None
        run_id, created = self.schedule(
            fn,
            [event],
            [internal_id],
            now,
            idempotency_key=decision.idempotency_key or default_key,
            correlation_id=correlation_id,
            run_id=decision.run_id,
            send=send,
        )
        ours = self.admission.on_scheduled(
            fn, decision, run_id, created, [event], [internal_id], now
        )
        return run_id if ours else None

    def start_scheduled(
        self, fn: FunctionConfig, event: dict[str, JSON], internal_id: str, now: int, key: str
    ) -> str | None:
        """A cron run: through flow control like any event's run, once per scheduled time
        (`key`). Returns the run id, or None when flow control held or skipped it."""
        return self._admit(fn, event, internal_id, now, send=True, default_key=key)

    def _invoke_not_found(
        self, event: dict[str, JSON], fn_id: str, correlation_id: str, internal_id: str, now: int
    ) -> None:
        error = {"name": "FunctionNotFound", "message": f"function {fn_id!r} is not registered"}
        finished: dict[str, JSON] = {
            "name": FINISHED,
            "id": f"{internal_id}:not-found",
            "ts": now,
            "data": {
                "function_id": fn_id,
                "event": event,
                "events": [event],
                "error": error,
                "correlation_id": correlation_id,
                "_inngest": {"status": "Failed"},
            },
        }
        self.ingest([finished], now, internal=True)

    def _resume_invoker(self, data: dict[str, JSON], now: int) -> int:
        pause = self._store.pause_by_correlation(str(data["correlation_id"]))
        if pause is None or pause.expires_at < now:
            return 0  # already resumed, timed out, or the parent is gone
        error = data.get("error")
        memo: JSON = {"error": error} if error is not None else {"data": data.get("result")}
        return int(self.resume(pause, memo, now))

    def _match_pauses(
        self, event: dict[str, JSON], internal_id: str, received_at: int, now: int
    ) -> int:
        name = str(event.get("name", ""))
        paths = self._store.pause_index_paths(name)
        lookups = expressions.lookups_for(paths, event)
        resumed = 0
        for pause in self._store.find_pauses(name, lookups):
            if not self._may_match(pause, event, internal_id, received_at, now):
                continue
            if not expressions.pause_matches(pause, event):
                continue
            if pause.kind == "Cancel":
                resumed += int(self._cancel(pause, now))
            elif self.resume(pause, wire_event(event), now):
                resumed += 1
        return resumed

    @staticmethod
    def _may_match(
        pause: Pause, event: dict[str, JSON], internal_id: str, received_at: int, now: int
    ) -> bool:
        if pause.kind == "InvokeFunction" or pause.correlation_id:
            return False  # resolved by correlation id only, with a {"data"|"error"} memo
        if pause.trigger_event_id and pause.trigger_event_id in (internal_id, event.get("id")):
            return False  # a run's own trigger never resumes it
        if pause.created_at > received_at + max(PAUSE_CREATED_GRACE_MS, pause.lookback_ms):
            return False  # the pause is newer than the event (and looks back less far)
        if pause.expires_at < now:
            return False  # its timeout job owns it now
        # Cancellation: an event received before the run was created never cancels it. Both
        # times are this server's clocks: the event's internal id may come from the sender's
        # clock (`x-inngest-event-id-seed`), which can run behind ours.
        return not (pause.kind == "Cancel" and received_at < run_created_ms(pause))

    def _cancel(self, pause: Pause, now: int) -> bool:
        if self.canceller is None:
            log.warning("cancel pause matched but no canceller is set run_id=%s", pause.run_id)
            return False
        cancelled = self.canceller(pause.run_id, now)
        self._store.delete_pause(pause.id)
        return cancelled

    # --- scheduling and resuming ------------------------------------------------------------
    def schedule(
        self,
        fn: FunctionConfig,
        events: list[dict[str, JSON]],
        event_ids: list[str],
        now: int,
        *,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
        run_id: str | None = None,
        send: bool = True,
    ) -> tuple[str, bool]:
        """Create a run of `fn` (once per idempotency key) and queue its start.

        The key defaults to the first event's internal id, so processing an event again never
        starts a second run. Returns (run id, created). With `send=False` the start job is
        only recorded (its state kept in `fresh`): the caller's task runs it here. `run_id`
        is the id to create the run with (flow control may have reserved it), else a new
        ULID. A run whose first event has a `ts` in the future starts then, as Inngest schedules it.
        """
        new_id = run_id or new_ulid(now)
        key = idempotency_key or (event_ids[0] if event_ids else new_id)
        run = NewRun(
            run_id=new_id,
            function_id=fn.id,
            events=[wire_event(event) for event in events],
            event_ids=event_ids,
            created_at=now,
            idempotency_key=f"{fn.id}:{key}",
            correlation_id=correlation_id,
        )
        run_id, created = self.create(fn, run, start_time(events, now), now, send=send)
        if created:
            log.info(
                "run scheduled run_id=%s function=%s event_id=%s",
                run_id,
                fn.id,
                event_ids[0] if event_ids else "",
                extra={"run_id": run_id, "function": fn.id, "status": "Queued"},
            )
        return run_id, created

    def create(
        self, fn: FunctionConfig, run: NewRun, start_at: int, now: int, *, send: bool
    ) -> tuple[str, bool]:
        """Create `run` of `fn` and its start job (due at `start_at`) in one atomic step,
        then send the job. Returns (run id, created), as `Store.create_run`.

        The first run a task creates to run here next (`_starts_next`) is created started,
        its start job leased to this task, in that same script call (`fresh.claim`); of a
        function with concurrency or throttle, admitted in that call too (`_create_admitted`:
        a slot in each constraint, or the job parked or deferred and the run left Queued)."""
        event = run.events[0] if run.events else {}
        start = start_job(run.run_id, fn.id, start_limits(fn, event, run.created_at))
        planned = self._queue.plan(start, start_at, now)
        admit = None
        starts = self._starts_next(run, start_at, now, send=send)
        if starts and has_rules(fn.options):
            admit = self._admit_of(fn, start)
            starts = admit is not None
        if starts:
            token = uuid.uuid4().hex
            lease_ms = int(self.settings.lease_seconds * 1000)
            code: str
            if admit is None:
                run_id, code = self._store.create_started_run(run, planned, token, lease_ms)
            else:
                run_id, code = self._create_admitted(start, run, planned, token, admit, now)
            created = code != "exists"
            if code in ("wait", "later"):
                self._registry.remember_run(run_id, fn)
                self.fresh.wait(run_id)
                return run_id, True
            if code == "started":
                self._registry.remember_run(run_id, fn)
                self.fresh.put(fresh_state(run, started=True))
                self.fresh.claim(token, Lease(start, 0))
                log.info(
                    "run started run_id=%s function=%s",
                    run_id,
                    fn.id,
                    extra={"run_id": run_id, "function": fn.id, "status": "Running"},
                )
                return run_id, True
        else:
            run_id, created = self._store.create_run(run, planned)
        self._registry.remember_run(run_id, fn)  # which queue its jobs go to
        if created:
            self._queue.written(planned, now, send=send or start_at > now)
            if not send and run.memoized is None:
                self.fresh.put(fresh_state(run), start)
        else:
            # An idempotency key gave back an existing run: make sure it has its start job
            # (runs created before the start job was written with them); a no-op otherwise.
            start = start_job(run_id, fn.id, start.limits)
            self._queue.enqueue(start, start_at, now, send=send or start_at > now)
        return run_id, created

    def _admit_of(self, fn: FunctionConfig, start: Job) -> StartAdmit | None:
        """The admission of `fn`'s start job carrying `start.limits` (`Slots.admit`); None
        without the executor's slots or under other rules."""
        if self.slots is None or start.limits is None:
            return None
        return self.slots.admit(fn, start.limits)

    def _create_admitted(
        self, start: Job, run: NewRun, planned: QueuedJob, token: str, admit: StartAdmit, now: int
    ) -> tuple[str, str]:
        """Create `run` started with its start job admitted under `admit`, in one call
        (`Store.create_admitted_run`); the answer goes to the slots as a start call's does
        (waiters it woke sent, a deferred job sent with its countdown, the slots it granted
        kept for the executor's `acquire`). Returns (run id, code)."""
        lease_ms = int(self.settings.lease_seconds * 1000)
        got = self._store.create_admitted_run(run, planned, token, lease_ms, admit)
        if self.slots is not None:
            leased: Lease | Literal["gone", "wait", "later"] = "gone"
            if got.code == "started":
                leased = Lease(start, 0)
            elif got.code in ("wait", "later"):
                leased = "wait" if got.code == "wait" else "later"
            self.slots.admitted(start, admit, RunStart(leased, True, got.woken, got.start_at), now)
        return got.run_id, got.code

    # --- the work list's starts (app.worker.Starter) ----------------------------------------
    def held(self, job_id: str) -> bool:
        """Is `job_id` the start job this task's creation leased (`create`)?"""
        return self.fresh.holds(job_id)

    def claim(self, job: Job) -> Claim:
        """The work list is about to run `job` here. The start job of a run created started
        by this task: its lease, taken then. That of a run this task created Queued: lease
        it, admit it (concurrency, throttle) and mark the run started in one script call
        (`Store.start_run`). Anything else: None (leased as any job)."""
        held = self.fresh.claimed(job.id)
        if held is not None:
            return held
        if job.kind is not JobKind.START or job.attempt:
            return None
        state = self.fresh.peek(job.run_id)
        if state is None or state.started_at is not None:
            return None
        return self._start_run(job, state.function_id, state)

    def start(self, job_id: str, function_id: str, limits: str = "") -> Claim:
        """A start job sent to this worker (another worker's share of a fan-out, one past
        its step budget, a run of an SDK app's function, a resend, a waiter woken): its
        message names the run's function (`Job.function_id`) and, if that function has
        concurrency or throttle, the values they take for its run (`Job.limits`), so its
        lease, its admission and its run's start are one script call here too
        (`Store.start_run`). None for any other job, or a function with limits whose
        message lacks them (leased as any job: the executor admits it first)."""
        run_id = start_job_run(job_id)
        if run_id is None:
            return None
        carried = StartLimits.model_validate_json(limits) if limits else None
        job = start_job(run_id, function_id, carried)
        return self._start_run(job, function_id, self.fresh.peek(run_id))

    def _start_run(self, job: Job, function_id: str, state: RunState | None) -> Claim:
        """Lease the start `job`, admit it under its function's concurrency and throttle
        (`Slots.admit`, from `job.limits` or the run's state as this process created it)
        and mark its run started, in one call; None when that cannot be (limits unknown,
        or computed under other rules: the job is leased as any job). "parked" when the
        call parked or deferred the job. `state`: the run as this process created it,
        kept in `fresh`, updated to Running (or dropped when it was not Queued any more)."""
        fn = self._registry.get(function_id)
        if fn is None:
            return None
        admit = None
        if has_rules(fn.options):
            if job.limits is None and state is not None and state.events:
                job = job.model_copy(
                    update={"limits": start_limits(fn, state.events[0], state.created_at)}
                )
            if self.slots is None or job.limits is None:
                return None
            admit = self.slots.admit(fn, job.limits)
            if admit is None:
                return None
        token = uuid.uuid4().hex
        now = int(time.time() * 1000)
        lease_ms = int(self.settings.lease_seconds * 1000)
        start = self._store.start_run(job, function_id, token, now, lease_ms, admit)
        if admit is not None and self.slots is not None:
            self.slots.admitted(job, admit, start, now)
        leased = start.leased
        match leased:
            case "wait" | "later":
                return "parked"
            case "gone" | "busy":
                return leased
        if start.started:
            if state is not None:
                state.status, state.started_at = "Running", now
            log.info(
                "run started run_id=%s function=%s",
                job.run_id,
                fn.id,
                extra={"run_id": job.run_id, "function": fn.id, "status": "Running"},
            )
        elif state is not None:
            self.fresh.take(job.run_id)  # not Queued any more: the executor reads it
        return token, leased

    def _starts_next(self, run: NewRun, start_at: int, now: int, *, send: bool) -> bool:
        """Is `run` the start job this task's work list runs next, with nothing to wait for?
        Only the first run a task leaves to its own work list (the list runs a job leased
        already first, whatever its budget: `JobRunner.work`), due now, no replay. (With
        concurrency or throttle, its creation admits it: `create`.) The others the task
        keeps start when the list reaches them, in the call that leases their start job
        (`claim`)."""
        return (
            not send
            and self.works_here
            and start_at <= now
            and run.memoized is None
            and not self.fresh.claiming
        )

    def start_held(self, held: Held | None) -> None:
        """A debounced or batched run that admission handed back when its timer fired:
        create it, then let admission drop what it held for it (a batch)."""
        if held is None or self.admission is None:
            return
        run_id, created = self.schedule(
            held.fn,
            held.events,
            held.event_ids,
            held.now,
            idempotency_key=held.decision.idempotency_key,
            run_id=held.decision.run_id,
        )
        ours = self.admission.on_scheduled(
            held.fn,
            held.decision,
            run_id,
            created,
            held.events,
            held.event_ids,
            held.now,
            batched=held.batched,
        )
        self.admission.held_started(held, run_id if ours else None)

    def start_copy(self, fn: FunctionConfig, run: NewRun, now: int) -> tuple[str | None, str]:
        """A rerun or replay (`app/replay.py`): `run` (a new id, no idempotency key) goes
        through flow control like an event's run (`Admission.admit_copy`: its singleton lock;
        then its cancellation pauses and timeout jobs) and starts now, created with its start
        job in one step. Returns (run id, ""), or (None, the run holding the singleton lock)
        when the singleton skipped it."""
        trigger = run.events[0] if run.events else {}
        if self.admission is None:
            return self.create(fn, run, now, now, send=True)[0], ""
        decision = self.admission.admit_copy(fn, trigger, run.run_id, now)
        if not decision.start:
            return None, decision.other or ""
        if decision.run_id is not None:
            run = replace(run, run_id=decision.run_id)
        run_id, created = self.create(fn, run, now, now, send=True)
        self.admission.on_scheduled(fn, decision, run_id, created, run.events, run.event_ids, now)
        return run_id, ""

    def resume(self, pause: Pause, memo: JSON, now: int) -> bool:
        """Consume `pause` with `memo`; the single winner queues the run's next discovery.

        The discovery job is created in the same atomic step as the memo (when no parallel
        step is left pending), so a worker dying right after winning loses nothing.
        """
        job = resume_job(pause.run_id, pause.step)
        result = self._store.consume_pause(
            pause.id, memo, now, resume=job, send_by=self._queue.resend_deadline(now)
        )
        if result.won:
            failed = isinstance(memo, dict) and memo.get("error") is not None
            self._store.record_step(
                pause.run_id,
                pause.step,
                {"status": "Failed" if failed else "Completed", "ended_at": now},
            )
            log.info(
                "pause resumed run_id=%s step=%s kind=%s", pause.run_id, pause.step_name, pause.kind
            )
        if result.resumed:
            self._queue.dispatch(job)
        return result.won


def fresh_state(run: NewRun, *, started: bool = False) -> RunState:
    """A run's state as `create_run` writes it: Queued (or Running since its creation, when
    created `started`), no step memoized."""
    return RunState(
        run_id=run.run_id,
        function_id=run.function_id,
        status="Running" if started else "Queued",
        events=run.events,
        steps={},
        stack=[],
        disable_immediate_execution=False,
        created_at=run.created_at,
        started_at=run.created_at if started else None,
        correlation_id=run.correlation_id,
    )


def run_created_ms(pause: Pause) -> int:
    """When the pause's run was created (the time in its ULID, from our clock), or the pause's
    own creation time for a run id that is not a ULID."""
    try:
        return ulid_ms(pause.run_id)
    except ValueError:
        return pause.created_at


FUTURE_TS_SLACK_MS = 1_000
"""An event `ts` at most this far ahead counts as now (clock skew between senders)."""
MAX_START_AHEAD_MS = 365 * 86_400_000
"""How far ahead an event's `ts` may schedule its runs: `/e` refuses a later `ts` (400), and
a run of an event that came another way starts by then at the latest, so no Queued run
waits in Redis longer than this."""


def start_time(events: list[dict[str, JSON]], now: int) -> int:
    """When a run of these events starts: now, or the first event's `ts` if it is in the
    future (an event sent ahead of time schedules its runs), at most MAX_START_AHEAD_MS on."""
    ts = events[0].get("ts") if events else None
    if isinstance(ts, int) and not isinstance(ts, bool) and ts > now + FUTURE_TS_SLACK_MS:
        return min(ts, now + MAX_START_AHEAD_MS)
    return now


def new_event(
    raw: dict[str, JSON], internal_id: str, now: int, *, internal: bool = False
) -> NewEvent:
    """An incoming event as the store takes it: normalized, deduplicated on its own `id` (in
    the engine's namespace for engine events, so a user event can never swallow one), and
    always processed when it is an invoke or the finish of an invoked run."""
    event = normalize_event(raw, internal_id, now, internal=internal)
    own_id = raw.get("id")
    dedupe: Literal["user", "engine", ""] = ""
    if isinstance(own_id, str) and own_id:
        dedupe = "engine" if internal else "user"
    return NewEvent(internal_id, event, dedupe, must_process(event))


def must_process(event: dict[str, JSON]) -> bool:
    """Engine events processed whatever the trigger index says: an invoke (it names its
    function) and the finish of an invoked run (its parent waits by correlation id)."""
    name = event.get("name")
    if name == INVOKED:
        return True
    data = event.get("data")
    return name == FINISHED and isinstance(data, dict) and bool(data.get("correlation_id"))


def normalize_event(
    raw: dict[str, JSON], internal_id: str, now: int, *, internal: bool = False
) -> dict[str, JSON]:
    """An event in wire form with defaults filled: data/user {}, ts now, id = internal id.

    External events lose `data._inngest` (no forging invoke correlation).
    """
    data = raw.get("data")
    data = dict(data) if isinstance(data, dict) else {}
    if not internal:
        data.pop("_inngest", None)
    user = raw.get("user")
    ts = raw.get("ts")
    event: dict[str, JSON] = {
        "name": str(raw.get("name", "")),
        "data": data,
        "id": str(raw.get("id") or "") or internal_id,
        "ts": ts if isinstance(ts, int) and not isinstance(ts, bool) and ts > 0 else now,
        "user": dict(user) if isinstance(user, dict) else {},
    }
    if isinstance(raw.get("v"), str):
        event["v"] = raw["v"]
    return event


def wire_event(event: dict[str, JSON]) -> dict[str, JSON]:
    """The event as functions see it: name, data, id, ts, user, and v when set."""
    out: dict[str, JSON] = {
        "name": event.get("name", ""),
        "data": event.get("data") if isinstance(event.get("data"), dict) else {},
        "id": event.get("id", ""),
        "ts": event.get("ts", 0),
        "user": event.get("user") if isinstance(event.get("user"), dict) else {},
    }
    if event.get("v") is not None:
        out["v"] = event["v"]
    return out


def seeded_ids(seed: str, count: int) -> list[str] | None:
    """Deterministic ULIDs from `x-inngest-event-id-seed: <ms>,<base64 10-byte entropy>`.

    Event `i` gets the seed's entropy plus `i`, as the Go server derives them. A malformed
    seed gives None (random ids).
    """
    try:
        ms_text, entropy_text = seed.split(",", 1)
        ms = int(ms_text)
        entropy = base64.b64decode(entropy_text, validate=True)
    except (ValueError, TypeError):
        return None
    if len(entropy) != 10 or not 0 <= ms < 2**48:
        return None
    base = int.from_bytes(entropy, "big")
    return [
        str(ULID.from_bytes(ms.to_bytes(6, "big") + ((base + i) % 2**80).to_bytes(10, "big")))
        for i in range(count)
    ]
