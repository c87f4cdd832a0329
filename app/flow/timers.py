"""Debounce and batching: events held now, one run started later by a timer job.

    debounce     the event replaces the held one; a DEBOUNCE job starts the run with the last
                 event once `period` passes without another (or `timeout` since the first)
    batchEvents  the event joins its key's batch; a BATCH job starts one run with all of them
                 when the batch is full or `timeout` after its first event

Both timers live in Redis (`FlowStore`) and are released as Celery jobs by the queue. A held
run passes the last checks (`Gates.prepare`) when its timer fires and is handed back (`Held`)
for the runner to create: nothing here creates runs. Invoked functions are never held
(admission checks that before calling here).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from app import expressions
from app.flow.options import (
    BATCH_DEFAULT_TIMEOUT_MS,
    BATCH_MAX_BYTES,
    BATCH_MAX_SIZE,
    DEBOUNCE_MIN_PERIOD_MS,
    NO_KEY,
    key_hash,
    option_ms,
    option_str,
)
from app.flow.outcomes import BATCHED, DEBOUNCED, Decision, Held
from app.ids import new_ulid, ulid_ms
from app.models import JSON, FunctionConfig, Job
from app.runner import wire_event
from app.state.flow import flow_item_id

if TYPE_CHECKING:
    from app.flow.gates import Gates
    from app.flow.outcomes import Outcomes
    from app.queue import Queue
    from app.registry import Registry
    from app.state.flow import FlowStore

log = logging.getLogger("stepline.flow")


class Timers:
    """Holds events in debounces and batches, and starts their runs when the timers fire."""

    def __init__(
        self,
        flow: FlowStore,
        queue: Queue,
        registry: Registry,
        gates: Gates,
        outcomes: Outcomes,
    ) -> None:
        self._flow = flow
        self._queue = queue
        self._registry = registry
        self._gates = gates
        self._outcomes = outcomes

    # --- holding events ---------------------------------------------------------------------
    def debounce(
        self,
        fn: FunctionConfig,
        debounce: dict[str, JSON],
        event: dict[str, JSON],
        internal_id: str,
        now: int,
    ) -> Decision:
        report = self._outcomes.key_error(fn, [internal_id], "debounce.key")
        expr = option_str(debounce.get("key"))
        hashed = key_hash(expr, event, on_error="invalid", report=report) or NO_KEY
        period = max(option_ms(debounce.get("period")), DEBOUNCE_MIN_PERIOD_MS)
        result = self._flow.debounce(
            fn.id,
            hashed,
            internal_id,
            wire_event(event),
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
        self._outcomes.record(
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
    def batches(batch: dict[str, JSON], event: dict[str, JSON]) -> bool:
        """Whether `batchEvents` applies to the event (its `if`, and a size of 2 or more)."""
        size = batch.get("maxSize")
        if not isinstance(size, int) or size < 2:
            return False  # a batch of one is no batch (Inngest: IsEnabled)
        condition = option_str(batch.get("if"))
        return condition is None or expressions.evaluate(condition, {"event": event})

    def batch(
        self,
        fn: FunctionConfig,
        batch: dict[str, JSON],
        event: dict[str, JSON],
        internal_id: str,
        now: int,
    ) -> Decision:
        size = min(int(batch.get("maxSize") or 1), BATCH_MAX_SIZE)
        report = self._outcomes.key_error(fn, [internal_id], "batchEvents.key")
        expr = option_str(batch.get("key"))
        hashed = key_hash(expr, event, on_error="invalid", report=report) or NO_KEY
        timeout_ms = option_ms(batch.get("timeout"), BATCH_DEFAULT_TIMEOUT_MS)
        result = self._flow.append_batch(
            fn.id,
            hashed,
            internal_id,
            wire_event(event),
            now,
            max_size=size,
            max_bytes=BATCH_MAX_BYTES,
            timeout_ms=timeout_ms,
            new_id=new_ulid(now),
            full_send_by=self._queue.resend_deadline(now),
        )
        if result.full_job is not None:
            self._queue.dispatch(result.full_job)
        if result.code != "duplicate":
            self._outcomes.record(
                fn,
                [internal_id],
                BATCHED,
                f"event {result.size} of at most {size} in batch {result.batch_id}",
                batch_id=result.batch_id,
                closes_at=ulid_ms(result.batch_id) + timeout_ms,
                max_size=size,
            )
        return Decision("hold", BATCHED)

    # --- timer jobs -------------------------------------------------------------------------
    def run_debounce(self, job: Job, now: int) -> Held | None:
        """A DEBOUNCE job: the debounced run to start with the last event (None: re-armed,
        already fired, or the gates skipped it)."""
        debounce_id = flow_item_id(job.id)
        fired = self._flow.fire_debounce(debounce_id, now)
        if fired.code != "fired" or fired.event is None:
            return None
        fn = self._registry.get(fired.function_id)
        if fn is None:
            log.warning("debounced function is gone function=%s", fired.function_id)
            return None
        key = f"debounce:{debounce_id}"
        return self._held(fn, [fired.event], [fired.event_id], key, now, batched=False)

    def run_batch(self, job: Job, now: int) -> Held | None:
        """A BATCH job (timeout or full): the run to start with the batch's events. The batch
        is dropped once that run exists (`held_started`), or now when there is none."""
        batch_id = flow_item_id(job.id)
        batch = self._flow.start_batch(batch_id)
        if batch is None:
            return None
        fn = self._registry.get(batch.function_id)
        held = None
        if fn is None:
            log.warning("batched function is gone function=%s", batch.function_id)
        elif batch.events:
            key = f"batch:{batch_id}"
            held = self._held(fn, batch.events, batch.event_ids, key, now, batched=True)
        if held is None:
            self._flow.drop_batch(batch_id)
            return None
        return Held(held.fn, held.decision, held.events, held.event_ids, now, True, batch_id)

    def held_started(self, held: Held, run_id: str | None) -> None:
        """The runner created (or found) the held run: drop its batch, and log it."""
        if held.batch_id:
            self._flow.drop_batch(held.batch_id)
        if run_id is not None:
            log.info(
                "held run scheduled run_id=%s function=%s events=%d",
                run_id,
                held.fn.id,
                len(held.events),
            )

    def _held(
        self,
        fn: FunctionConfig,
        events: list[dict[str, JSON]],
        event_ids: list[str],
        schedule_key: str,
        now: int,
        *,
        batched: bool,
    ) -> Held | None:
        decision = self._gates.prepare(
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
        return Held(fn, decision, events, event_ids, now, batched)
