"""Cancellation once a run exists: `cancel` pauses, `timeouts` jobs, bulk cancellation.

cancel     each clause becomes a Cancel pause of the new run (its event name, its `if`
           expression, an expiry from its `timeout`)
timeouts   `start` / `finish` each queue a CANCEL job at created + limit; the job cancels
           the run if it has not started / finished by then, or re-arms if the deadline
           moved (the function's config is read again when the job runs)
bulk       the function's queued and running runs in a time range, optionally filtered by
           a CEL expression over the trigger event
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

from app import expressions
from app.durations import format_duration, parse_time_ms
from app.errors import BadRequest
from app.flow.options import (
    CANCEL_DEFAULT_TIMEOUT_MS,
    MAX_CANCELS,
    looks_like_time,
    option_ms,
    option_str,
)
from app.ids import ulid_ms
from app.models import JSON, FunctionConfig, Job, JobKind, Pause, RunStatus
from app.runner import wire_event
from app.state.records import RunCriteria

if TYPE_CHECKING:
    from app.lifecycle import Lifecycle
    from app.queue import Queue
    from app.registry import Registry
    from app.state.store import Store

log = logging.getLogger("stepline.flow")

CANCEL_NAMESPACE = uuid.UUID("0f4c7f0e-3f0e-4b8a-9a57-7c1d2f5e9b31")


class Cancellation:
    """Saves a new run's cancellation pauses and timeout jobs; cancels runs."""

    def __init__(
        self, store: Store, queue: Queue, registry: Registry, lifecycle: Lifecycle
    ) -> None:
        self._store = store
        self._queue = queue
        self._registry = registry
        self._lifecycle = lifecycle

    # --- after the run is created -----------------------------------------------------------
    def save_pauses(
        self, fn: FunctionConfig, run_id: str, trigger: dict[str, JSON], trigger_id: str, now: int
    ) -> None:
        """One Cancel pause per usable `cancel` clause (at most MAX_CANCELS)."""
        clauses = fn.options.get("cancel")
        if not isinstance(clauses, list):
            return
        wire = wire_event(trigger)
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

    def queue_timeouts(self, fn: FunctionConfig, run_id: str, now: int, *, batched: bool) -> None:
        """A CANCEL job per `timeouts` limit, due at the run's creation + the limit."""
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
    def run_timeout(self, job: Job, now: int) -> None:
        """A CANCEL job: cancel the run if it missed its deadline, re-arm if that moved."""
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

    # --- cancelling runs --------------------------------------------------------------------
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
        """See `Admission.bulk_cancel`."""
        if if_expr:
            expressions.compile_expression(if_expr)
        error = {"name": "FunctionCancelled", "message": "cancelled by a bulk cancellation"}
        cancelled = 0
        for status in (RunStatus.QUEUED, RunStatus.RUNNING):
            position = None
            while True:
                where = RunCriteria(function_id, status.value, started_after_ms, started_before_ms)
                page = self._store.page_runs(page_size, where, after=position)
                for view in page.items:
                    if if_expr and not self._run_matches(view.run_id, if_expr):
                        continue
                    cancelled += int(self.cancel_run(view.run_id, error, now))
                if page.next is None:
                    break
                position = page.next
        return cancelled

    def _run_matches(self, run_id: str, expr: str) -> bool:
        state = self._store.load_run(run_id)
        if state is None or not state.events:
            return False
        return expressions.evaluate(expr, {"event": state.events[0]})

    def cancel_run(self, run_id: str, error: JSON, now: int) -> bool:
        """Cancel the run unless it has ended; True if this call cancelled it."""
        state = self._store.load_run(run_id)
        if state is None or RunStatus(state.status).ended:
            return False
        return self._lifecycle.finish(state, RunStatus.CANCELLED, None, error, now)


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
