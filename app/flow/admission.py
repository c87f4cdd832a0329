"""Admission: which events start runs, and when. Decided before any run state exists.

    runner.process_event ─► admit(fn, event) ─► start   → runner.schedule → on_scheduled
                                            ├─► skip    rate_limited | singleton_skipped
                                            └─► hold    debounced | batched (a timer job
                                                        hands back a `Held` run later:
                                                        runner.start_held creates it)

Admission returns decisions and never creates runs itself: it holds no runner.

Order of checks, as Inngest's `schedule()`: batching (bypasses the rest until its batch
closes) → rate limit → debounce (the run starts at the timer, with the last event) →
idempotency key → singleton → create the run → cancellation pauses and timeout jobs.
Invoked functions (`step.invoke`) are never debounced or batched; a skip fails the invoking
step at once instead of leaving it waiting for its timeout. Reruns and replays (`admit_copy`)
take only the singleton check, then get their pauses and timeouts like any new run.

Every skip and hold is recorded per event and function (`FlowStore.event_outcomes`) and
logged, so "why did my function not run?" has an answer. A retry is never a new schedule:
admission runs once per event, debounce or batch, and repeats of it are answered from what
was recorded (rate-limit `seen` key, singleton decision, idempotency key).

The option families live in modules of their own; `Admission` composes them:

    gates         rate limit, idempotency key, singleton: the checks that may skip an event
    timers        debounce and batching: hold events, start the run when the timer job fires
    cancellation  `cancel` pauses and `timeouts` jobs of a new run, bulk cancellation
    outcomes      the `Decision`, and the record each skip or hold leaves
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.flow.cancellation import Cancellation
from app.flow.gates import Gates
from app.flow.outcomes import (
    BATCHED,
    DEBOUNCED,
    IDEMPOTENT,
    NO_MATCH,
    RATE_LIMITED,
    SINGLETON_SKIPPED,
    Clock,
    Decision,
    EventSink,
    Held,
    Outcomes,
    wall_clock_ms,
)
from app.flow.timers import Timers
from app.models import JSON, FunctionConfig, Job, RunStatus

if TYPE_CHECKING:
    from app.lifecycle import Lifecycle
    from app.queue import Queue
    from app.registry import Registry
    from app.state.flow import FlowStore
    from app.state.store import RunState, Store

ADMISSION_OPTIONS = frozenset({"rateLimit", "idempotency", "debounce", "batchEvents", "singleton"})
AFTER_SCHEDULE_OPTIONS = frozenset({"cancel", "timeouts"})


class Admission:
    """The admission half of flow control, wired by `Engine.create`."""

    def __init__(
        self,
        flow: FlowStore,
        store: Store,
        queue: Queue,
        registry: Registry,
        events: EventSink,
        lifecycle: Lifecycle,
        clock: Clock = wall_clock_ms,
    ) -> None:
        self.flow = flow
        self._store = store
        self._registry = registry
        self.clock = clock
        self._outcomes = Outcomes(flow, events, self._now)
        self._cancellation = Cancellation(store, queue, registry, lifecycle)
        self._gates = Gates(flow, self._outcomes, self._cancellation.cancel_run)
        self._timers = Timers(flow, queue, registry, self._gates, self._outcomes)

    def _now(self) -> int:
        return self.clock()  # read at each use: `clock` may be replaced (tests pin it)

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
        if not invoked and isinstance(batch, dict) and self._timers.batches(batch, event):
            return self._timers.batch(fn, batch, event, internal_id, now)
        rate = options.get("rateLimit")
        if isinstance(rate, dict) and not self._gates.rate_allows(
            fn, rate, event, internal_id, now
        ):
            if correlation_id:
                self._outcomes.fail_invoker(
                    fn.id, event, internal_id, correlation_id, now, RATE_LIMITED
                )
            return Decision("skip", RATE_LIMITED)
        debounce = options.get("debounce")
        if not invoked and isinstance(debounce, dict):
            return self._timers.debounce(fn, debounce, event, internal_id, now)
        return self._gates.prepare(
            fn, event, [internal_id], internal_id, now, correlation_id=correlation_id
        )

    def admit_copy(
        self, fn: FunctionConfig, trigger: dict[str, JSON], run_id: str, now: int
    ) -> Decision:
        """A rerun or replay (`run_id`, the new run's id) asked for by an operator: its event
        was admitted once already, so batching, debounce, the rate limit and the idempotency
        key (which would answer the original run) do not apply; the singleton lock does, as
        for any new run (skip: another run holds it; cancel: that run is replaced). After the
        run is created, `on_scheduled` saves its cancellation pauses and timeout jobs."""
        return self._gates.prepare(fn, trigger, [], f"copy:{run_id}", now, idempotency=False)

    def no_match(self, fn: FunctionConfig, event: dict[str, JSON], internal_id: str) -> None:
        """`fn` listens to the event's name but its trigger expression said no."""
        name = str(event.get("name", ""))
        if name.startswith("inngest/"):
            return  # lifecycle events filtered by failure handlers: noise, not news
        self._outcomes.record(fn, [internal_id], NO_MATCH, "the trigger expression did not match")

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
            self._outcomes.record(fn, event_ids, IDEMPOTENT, message, run_id=run_id)
            correlation = decision.correlation_id
            if correlation and events:
                self._outcomes.fail_invoker(
                    fn.id, events[0], event_ids[0], correlation, now, IDEMPOTENT
                )
            return False
        if not AFTER_SCHEDULE_OPTIONS.intersection(fn.options):
            return True
        if not batched and events:
            trigger_id = event_ids[0] if event_ids else ""
            self._cancellation.save_pauses(fn, run_id, events[0], trigger_id, now)
        self._cancellation.queue_timeouts(fn, run_id, now, batched=batched)
        return True

    # --- timer jobs -------------------------------------------------------------------------
    def run_debounce(self, job: Job) -> Held | None:
        """A DEBOUNCE job: the debounced run to start with the last event (for
        `Runner.start_held`), or None (re-armed, already fired, skipped)."""
        return self._timers.run_debounce(job, self.clock())

    def run_batch(self, job: Job) -> Held | None:
        """A BATCH job (timeout or full): the one run to start with the batch's events (for
        `Runner.start_held`), or None."""
        return self._timers.run_batch(job, self.clock())

    def held_started(self, held: Held, run_id: str | None) -> None:
        """The runner created the held run (`run_id`; None: an idempotency key gave back
        another schedule's run): what admission still holds for it goes (a batch)."""
        self._timers.held_started(held, run_id)

    def run_timeout(self, job: Job) -> None:
        """A CANCEL job: cancel the run if it has not started (`timeouts.start`) or finished
        (`timeouts.finish`) in time; re-arm if its deadline moved (the config is read again)."""
        self._cancellation.run_timeout(job, self.clock())

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
        return self._cancellation.bulk_cancel(
            function_id,
            started_after_ms,
            started_before_ms,
            now,
            if_expr=if_expr,
            page_size=page_size,
        )


__all__ = [
    "BATCHED",
    "DEBOUNCED",
    "IDEMPOTENT",
    "NO_MATCH",
    "RATE_LIMITED",
    "SINGLETON_SKIPPED",
    "Admission",
    "Decision",
    "Held",
]
