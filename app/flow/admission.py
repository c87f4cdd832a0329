"""Admission: which events start runs, and when. Decided before any run state exists.

    runner.process_event ─► admit(fn, event) ─► start   → runner.schedule → on_scheduled
                                            ├─► skip    rate_limited | singleton_skipped
                                            └─► hold    debounced | batched (a timer job
                                                        schedules the run later)

Order of checks, as Inngest's `schedule()`: batching (bypasses the rest until its batch
closes) → rate limit → debounce (the run starts at the timer, with the last event) →
idempotency key → singleton → create the run → cancellation pauses and timeout jobs.
Invoked functions (`step.invoke`) are never debounced or batched; a skip fails the invoking
step at once instead of leaving it waiting for its timeout.

Every skip and hold is recorded per event and function (`FlowStore.event_outcomes`) and
logged, so "why did my function not run?" has an answer. A retry is never a new schedule:
admission runs once per event, debounce or batch, and repeats of it are answered from what
was recorded (rate-limit `seen` key, singleton decision, idempotency key).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from app import expressions
from app.durations import format_duration, parse_time_ms
from app.errors import BadRequest
from app.flow.options import (
    BATCH_DEFAULT_TIMEOUT_MS,
    BATCH_MAX_BYTES,
    BATCH_MAX_SIZE,
    CANCEL_DEFAULT_TIMEOUT_MS,
    DEBOUNCE_MIN_PERIOD_MS,
    MAX_CANCELS,
    NO_KEY,
    key_hash,
    looks_like_time,
    option_ms,
    option_str,
)
from app.ids import new_ulid, ulid_ms
from app.models import JSON, FunctionConfig, Job, JobKind, Pause, RunStatus
from app.runner import wire_event
from app.state.flow import FlowStore, flow_item_id

if TYPE_CHECKING:
    from app.lifecycle import Lifecycle
    from app.queue import Queue
    from app.registry import Registry
    from app.runner import Runner
    from app.state.store import RunState, Store

log = logging.getLogger("stepline.flow")

CANCEL_NAMESPACE = uuid.UUID("0f4c7f0e-3f0e-4b8a-9a57-7c1d2f5e9b31")

# --- outcomes, as recorded per event and function -------------------------------------------
RATE_LIMITED = "rate_limited"
DEBOUNCED = "debounced"
BATCHED = "batched"
IDEMPOTENT = "idempotent"
SINGLETON_SKIPPED = "singleton_skipped"
NO_MATCH = "no_match"

ADMISSION_OPTIONS = frozenset({"rateLimit", "idempotency", "debounce", "batchEvents", "singleton"})
AFTER_SCHEDULE_OPTIONS = frozenset({"cancel", "timeouts"})
FINISHED = "inngest/function.finished"

Clock = Callable[[], int]


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Decision:
    """What to do with one (function, event): start a run, skip it, or hold the event."""

    action: Literal["start", "skip", "hold"]
    reason: str = ""
    """skip: rate_limited | singleton_skipped; hold: debounced | batched."""
    run_id: str | None = None
    """The id the run must be created with (a singleton lock names it already)."""
    idempotency_key: str | None = None
    """For `runner.schedule`; None keeps its default (the event's internal id)."""
    correlation_id: str | None = None
    """Set for invoked functions: a skip fails the invoking step."""

    @property
    def start(self) -> bool:
        return self.action == "start"


# --- admission ----------------------------------------------------------------------------------


class Admission:
    """The admission half of flow control, wired by `Engine.create`."""

    def __init__(
        self,
        flow: FlowStore,
        store: Store,
        queue: Queue,
        registry: Registry,
        runner: Runner,
        lifecycle: Lifecycle,
        clock: Clock = wall_clock_ms,
    ) -> None:
        self.flow = flow
        self._store = store
        self._queue = queue
        self._registry = registry
        self._runner = runner
        self._lifecycle = lifecycle
        self.clock = clock

    # --- before the run ---------------------------------------------------------------------
    def admit(
        self,
        fn: FunctionConfig,
        event: dict[str, JSON],
        internal_id: str,
        now: int,
        *,
        correlation_id: str | None = None,
    ) -> Decision:
        """Decide whether the event starts a run of `fn` now (see the module docstring)."""
        options = fn.options
        if not ADMISSION_OPTIONS.intersection(options):
            return Decision("start", correlation_id=correlation_id)
        invoked = correlation_id is not None
        batch = options.get("batchEvents")
        if not invoked and isinstance(batch, dict) and self._batches(batch, event):
            return self._batch(fn, batch, event, internal_id, now)
        rate = options.get("rateLimit")
        if isinstance(rate, dict) and not self._rate_allows(fn, rate, event, internal_id, now):
            if correlation_id:
                self._fail_invoker(fn.id, event, internal_id, correlation_id, now, RATE_LIMITED)
            return Decision("skip", RATE_LIMITED)
        debounce = options.get("debounce")
        if not invoked and isinstance(debounce, dict):
            return self._debounce(fn, debounce, event, internal_id, now)
        return self._prepare(
            fn, event, [internal_id], internal_id, now, correlation_id=correlation_id
        )

    def no_match(self, fn: FunctionConfig, event: dict[str, JSON], internal_id: str) -> None:
        """`fn` listens to the event's name but its trigger expression said no."""
        name = str(event.get("name", ""))
        if name.startswith("inngest/"):
            return  # lifecycle events filtered by failure handlers: noise, not news
        self._record(fn, [internal_id], NO_MATCH, "the trigger expression did not match")

    def _rate_allows(
        self,
        fn: FunctionConfig,
        rate: dict[str, JSON],
        event: dict[str, JSON],
        internal_id: str,
        now: int,
    ) -> bool:
        hashed = key_hash(option_str(rate.get("key")), event, on_error="invalid")
        limit = rate.get("limit")
        period = option_ms(rate.get("period"))
        if hashed is None or not isinstance(limit, int) or limit < 1 or period <= 0:
            return True
        result = self.flow.rate_limit(
            fn.id, hashed, internal_id, now, period_ms=period, limit=limit, burst=limit // 10
        )
        if result.admitted:
            return True
        message = (
            f"rate limit of {limit} per {format_duration(period)} reached; "
            f"the next run is admitted in {max(0, result.retry_at - now)} ms"
        )
        self._record(fn, [internal_id], RATE_LIMITED, message, retry_at=result.retry_at)
        return False

    def _debounce(
        self,
        fn: FunctionConfig,
        debounce: dict[str, JSON],
        event: dict[str, JSON],
        internal_id: str,
        now: int,
    ) -> Decision:
        hashed = key_hash(option_str(debounce.get("key")), event, on_error="invalid") or NO_KEY
        period = max(option_ms(debounce.get("period")), DEBOUNCE_MIN_PERIOD_MS)
        result = self.flow.debounce(
            fn.id,
            hashed,
            internal_id,
            _wire(event),
            now,
            period_ms=period,
            timeout_ms=option_ms(debounce.get("timeout")),
            new_id=new_ulid(now),
        )
        message = {
            "created": "held in a new debounce",
            "updated": "held in the debounce; replaces the earlier event",
            "ignored": "held in the debounce, which already has a later event",
        }[result.code]
        self._record(
            fn,
            [internal_id],
            DEBOUNCED,
            f"{message}; the run starts in {max(0, result.due - now)} ms unless another "
            "event arrives",
            debounce_id=result.debounce_id,
            due_at=result.due,
        )
        return Decision("hold", DEBOUNCED)

    @staticmethod
    def _batches(batch: dict[str, JSON], event: dict[str, JSON]) -> bool:
        size = batch.get("maxSize")
        if not isinstance(size, int) or size < 2:
            return False  # a batch of one is no batch (Inngest: IsEnabled)
        condition = option_str(batch.get("if"))
        return condition is None or expressions.evaluate(condition, {"event": event})

    def _batch(
        self,
        fn: FunctionConfig,
        batch: dict[str, JSON],
        event: dict[str, JSON],
        internal_id: str,
        now: int,
    ) -> Decision:
        size = min(int(batch.get("maxSize") or 1), BATCH_MAX_SIZE)
        hashed = key_hash(option_str(batch.get("key")), event, on_error="invalid") or NO_KEY
        result = self.flow.append_batch(
            fn.id,
            hashed,
            internal_id,
            _wire(event),
            now,
            max_size=size,
            max_bytes=BATCH_MAX_BYTES,
            timeout_ms=option_ms(batch.get("timeout"), BATCH_DEFAULT_TIMEOUT_MS),
            new_id=new_ulid(now),
            full_send_by=self._queue.resend_deadline(now),
        )
        if result.full_job is not None:
            self._queue.dispatch(result.full_job)
        if result.code != "duplicate":
            self._record(
                fn,
                [internal_id],
                BATCHED,
                f"event {result.size} of at most {size} in batch {result.batch_id}",
                batch_id=result.batch_id,
            )
        return Decision("hold", BATCHED)

    def _prepare(
        self,
        fn: FunctionConfig,
        event: dict[str, JSON],
        event_ids: list[str],
        schedule_key: str,
        now: int,
        *,
        correlation_id: str | None = None,
        idempotency: bool = True,
        default_key: str | None = None,
    ) -> Decision:
        """The last checks before a run is created: idempotency key, then singleton."""
        idem = self._idempotency_key(fn, event) if idempotency else None
        key = idem or default_key
        start = Decision("start", idempotency_key=key, correlation_id=correlation_id)
        singleton = fn.options.get("singleton")
        if not isinstance(singleton, dict):
            return start
        hashed = key_hash(option_str(singleton.get("key")), event, on_error="off")
        if hashed is None:
            return start  # not a singleton for this event (false, or the key failed)
        if idem is not None and self.flow.idempotency_holder(f"{fn.id}:{idem}") is not None:
            return start  # the run exists already: schedule answers it, no lock is needed
        mode: Literal["skip", "cancel"] = "cancel" if singleton.get("mode") == "cancel" else "skip"
        decided = self.flow.acquire_singleton(fn.id, hashed, schedule_key, new_ulid(now), mode, now)
        if decided.code == "skip":
            message = f"run {decided.other} of this singleton has not finished"
            self._record(fn, event_ids, SINGLETON_SKIPPED, message, run_id=decided.other)
            if correlation_id:
                reason = SINGLETON_SKIPPED
                self._fail_invoker(fn.id, event, event_ids[0], correlation_id, now, reason)
            return Decision("skip", SINGLETON_SKIPPED)
        if decided.other:
            error = {
                "name": "FunctionCancelled",
                "message": f"replaced by run {decided.run_id} (singleton mode cancel)",
            }
            if self._cancel_run(decided.other, error, now):
                log.info(
                    "singleton replaced run_id=%s function=%s by=%s",
                    decided.other,
                    fn.id,
                    decided.run_id,
                )
        return Decision(
            "start", run_id=decided.run_id, idempotency_key=key, correlation_id=correlation_id
        )

    @staticmethod
    def _idempotency_key(fn: FunctionConfig, event: dict[str, JSON]) -> str | None:
        expr = option_str(fn.options.get("idempotency"))
        if expr is None:
            return None
        hashed = key_hash(expr, event, on_error="off")
        return None if hashed is None else f"idem:{hashed}"

    # --- after the run is created -----------------------------------------------------------
    def on_scheduled(
        self,
        fn: FunctionConfig,
        decision: Decision,
        run_id: str,
        created: bool,
        events: list[dict[str, JSON]],
        event_ids: list[str],
        now: int,
        *,
        batched: bool = False,
    ) -> bool:
        """After `runner.schedule`: True if `run_id` is this schedule's run (new, or created
        by an earlier attempt of the same schedule), False if an idempotency key gave back
        another schedule's run. Saves the cancellation pauses and queues the timeout jobs
        (again on a repeat: both are idempotent)."""
        if decision.run_id is not None and decision.run_id != run_id:
            self.flow.release_singleton(decision.run_id)  # never created: free its lock
        if not created and event_ids and run_id not in self._store.event_run_ids(event_ids[0]):
            message = f"the idempotency key is taken by run {run_id}"
            self._record(fn, event_ids, IDEMPOTENT, message, run_id=run_id)
            correlation = decision.correlation_id
            if correlation and events:
                self._fail_invoker(fn.id, events[0], event_ids[0], correlation, now, IDEMPOTENT)
            return False
        if not AFTER_SCHEDULE_OPTIONS.intersection(fn.options):
            return True
        if not batched and events:
            self._cancel_pauses(fn, run_id, events[0], event_ids[0] if event_ids else "", now)
        self._timeout_jobs(fn, run_id, now, batched=batched)
        return True

    def _cancel_pauses(
        self, fn: FunctionConfig, run_id: str, trigger: dict[str, JSON], trigger_id: str, now: int
    ) -> None:
        clauses = fn.options.get("cancel")
        if not isinstance(clauses, list):
            return
        wire = _wire(trigger)
        for index, clause in enumerate(clauses[:MAX_CANCELS]):
            if not isinstance(clause, dict) or not option_str(clause.get("event")):
                continue
            try:
                prepared = expressions.prepare_pause(option_str(clause.get("if")), wire)
            except BadRequest as exc:
                log.warning("cancel[%d] of %s not saved: %s", index, fn.id, exc.message)
                continue
            if prepared.expression is not None and prepared.expression.strip() == "false":
                continue  # can never match (Inngest saves no pause either)
            step = f"cancel-{index}"
            pause = Pause(
                id=str(uuid.uuid5(CANCEL_NAMESPACE, f"{run_id}:{step}")),
                run_id=run_id,
                step=step,
                step_name=f"cancel[{index}]",
                kind="Cancel",
                event=str(clause["event"]),
                expression=prepared.expression,
                index_path=prepared.index_path,
                index_value=prepared.index_value,
                trigger_event=wire,
                trigger_event_id=trigger_id,
                expires_at=_cancel_expiry(clause.get("timeout"), now),
                created_at=now,
            )
            self._store.save_pause(pause)

    def _timeout_jobs(self, fn: FunctionConfig, run_id: str, now: int, *, batched: bool) -> None:
        limits = fn.options.get("timeouts")
        if not isinstance(limits, dict):
            return
        try:
            created = ulid_ms(run_id)
        except ValueError:
            created = now
        for which in ("start", "finish"):
            limit = option_ms(limits.get(which))
            if limit <= 0 or (which == "start" and batched):
                continue  # Inngest: batched runs get no start timeout
            job = _timeout_job(run_id, which, 0)
            self._queue.enqueue(job, created + limit, now)

    # --- timer jobs -------------------------------------------------------------------------
    def run_debounce(self, job: Job) -> None:
        """A DEBOUNCE job: start the debounced run with the last event, or re-arm."""
        now = self.clock()
        debounce_id = flow_item_id(job.id)
        fired = self.flow.fire_debounce(debounce_id, now)
        if fired.code != "fired" or fired.event is None:
            return
        fn = self._registry.get(fired.function_id)
        if fn is None:
            log.warning("debounced function is gone function=%s", fired.function_id)
            return
        key = f"debounce:{debounce_id}"
        self._schedule_held(fn, [fired.event], [fired.event_id], key, now, batched=False)

    def run_batch(self, job: Job) -> None:
        """A BATCH job (timeout or full): start one run with the batch's events."""
        now = self.clock()
        batch_id = flow_item_id(job.id)
        batch = self.flow.start_batch(batch_id)
        if batch is None:
            return
        fn = self._registry.get(batch.function_id)
        if fn is None:
            log.warning("batched function is gone function=%s", batch.function_id)
        elif batch.events:
            key = f"batch:{batch_id}"
            self._schedule_held(fn, batch.events, batch.event_ids, key, now, batched=True)
        self.flow.drop_batch(batch_id)

    def _schedule_held(
        self,
        fn: FunctionConfig,
        events: list[dict[str, JSON]],
        event_ids: list[str],
        schedule_key: str,
        now: int,
        *,
        batched: bool,
    ) -> str | None:
        decision = self._prepare(
            fn,
            events[0],
            event_ids,
            schedule_key,
            now,
            idempotency=not batched,  # Inngest: batches bypass rate limits (idempotency too)
            default_key=schedule_key,
        )
        if not decision.start:
            return None
        run_id, created = self._runner.schedule(
            fn,
            events,
            event_ids,
            now,
            idempotency_key=decision.idempotency_key,
            run_id=decision.run_id,
        )
        if not self.on_scheduled(
            fn, decision, run_id, created, events, event_ids, now, batched=batched
        ):
            return None
        log.info(
            "held run scheduled run_id=%s function=%s from=%s events=%d",
            run_id,
            fn.id,
            schedule_key,
            len(events),
        )
        return run_id

    def run_timeout(self, job: Job) -> None:
        """A CANCEL job: cancel the run if it has not started (`timeouts.start`) or finished
        (`timeouts.finish`) in time; re-arm if its deadline moved (the config is read again)."""
        now = self.clock()
        state = self._store.load_run(job.run_id)
        if state is None or RunStatus(state.status).ended:
            return
        fn = self._registry.get(state.function_id)
        limits = fn.options.get("timeouts") if fn is not None else None
        limit = option_ms(limits.get(job.step)) if isinstance(limits, dict) else 0
        if limit <= 0:
            return  # the timeout was removed from the function
        if job.step == "start":
            if state.started_at is not None:
                return
            deadline = state.created_at + limit
        elif state.started_at is None:
            self._rearm(job, now + limit, now)  # finish counts from the start: not yet
            return
        else:
            deadline = state.started_at + limit
        if now < deadline:
            self._rearm(job, deadline, now)
            return
        error = {
            "name": "FunctionTimeout",
            "message": f"run did not {job.step} within {format_duration(limit)}",
        }
        if self._lifecycle.finish(state, RunStatus.CANCELLED, None, error, now):
            log.info(
                "run timed out run_id=%s function=%s timeout=%s",
                state.run_id,
                state.function_id,
                job.step,
            )

    def _rearm(self, job: Job, due: int, now: int) -> None:
        self._queue.enqueue(_timeout_job(job.run_id, job.step, job.attempt + 1), due, now)

    # --- run endings and cancellation -------------------------------------------------------
    def on_finish(self, state: RunState, status: RunStatus, now: int) -> None:
        """Called by `Lifecycle.finish` once a run has ended: free its singleton lock."""
        del status, now
        fn = self._registry.get(state.function_id)
        if fn is not None and "singleton" in fn.options:
            self.flow.release_singleton(state.run_id)

    def bulk_cancel(
        self,
        function_id: str,
        started_after_ms: int | None,
        started_before_ms: int | None,
        now: int,
        *,
        if_expr: str | None = None,
        page_size: int = 200,
    ) -> int:
        """Cancel the function's queued and running runs created in [after, before) (ms,
        None: unbounded); with `if_expr`, only those whose trigger event matches it (CEL over
        `event`). Reads the function's Queued and Running indexes in pages of `page_size`.
        Returns how many runs this call cancelled. Raises BadRequest for a bad expression."""
        if if_expr:
            expressions.compile_expression(if_expr)
        error = {"name": "FunctionCancelled", "message": "cancelled by a bulk cancellation"}
        cancelled = 0
        for status in (RunStatus.QUEUED, RunStatus.RUNNING):
            position = None
            while True:
                page = self._store.page_runs(
                    page_size,
                    function_id=function_id,
                    status=status.value,
                    created_after=started_after_ms,
                    created_before=started_before_ms,
                    after=position,
                )
                for view in page.items:
                    if if_expr and not self._run_matches(view.run_id, if_expr):
                        continue
                    cancelled += int(self._cancel_run(view.run_id, error, now))
                if page.next is None:
                    break
                position = page.next
        return cancelled

    def _run_matches(self, run_id: str, expr: str) -> bool:
        state = self._store.load_run(run_id)
        if state is None or not state.events:
            return False
        return expressions.evaluate(expr, {"event": state.events[0]})

    def _cancel_run(self, run_id: str, error: JSON, now: int) -> bool:
        state = self._store.load_run(run_id)
        if state is None or RunStatus(state.status).ended:
            return False
        return self._lifecycle.finish(state, RunStatus.CANCELLED, None, error, now)

    # --- records ----------------------------------------------------------------------------
    def _record(
        self, fn: FunctionConfig, event_ids: list[str], outcome: str, message: str, **extra: JSON
    ) -> None:
        now = self.clock()
        for event_id in event_ids:
            record: dict[str, JSON] = {
                "function_id": fn.id,
                "outcome": outcome,
                "message": message,
                "at": now,
                **extra,
            }
            self.flow.record_outcome(event_id, fn.id, record)
        log.info(
            "event %s function=%s event_id=%s: %s",
            outcome,
            fn.id,
            ",".join(event_ids),
            message,
            extra={"function_id": fn.id, "event_ids": event_ids, "outcome": outcome},
        )

    def _fail_invoker(
        self,
        fn_id: str,
        event: dict[str, JSON],
        internal_id: str,
        correlation_id: str,
        now: int,
        reason: str,
    ) -> None:
        """An invoked run was not started: finish the invoke with an error right away."""
        messages = {
            RATE_LIMITED: "invoked function is rate limited",
            SINGLETON_SKIPPED: "invoked function was skipped: a singleton run is in progress",
            IDEMPOTENT: "invoked function was skipped: its idempotency key was already used",
        }
        error = {"name": "Error", "message": messages.get(reason, f"invoked function {reason}")}
        finished: dict[str, JSON] = {
            "name": FINISHED,
            "id": f"{internal_id}:{reason}",
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
        self._runner.ingest([finished], now, internal=True)


def _timeout_job(run_id: str, which: str, generation: int) -> Job:
    return Job(
        id=f"{run_id}:timeout:{which}:{generation}",
        kind=JobKind.CANCEL,
        run_id=run_id,
        step=which,
        attempt=generation,
    )


def _cancel_expiry(timeout: JSON, now: int) -> int:
    if isinstance(timeout, str) and looks_like_time(timeout):
        try:
            return parse_time_ms(timeout)
        except BadRequest:
            return now + CANCEL_DEFAULT_TIMEOUT_MS
    return now + (option_ms(timeout) or CANCEL_DEFAULT_TIMEOUT_MS)


def _wire(event: dict[str, JSON]) -> dict[str, JSON]:
    return wire_event(event)


__all__ = [
    "BATCHED",
    "DEBOUNCED",
    "IDEMPOTENT",
    "NO_MATCH",
    "RATE_LIMITED",
    "SINGLETON_SKIPPED",
    "Admission",
    "Decision",
]
