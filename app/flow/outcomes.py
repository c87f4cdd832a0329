"""What admission decides for one (function, event), and the record each skip or hold leaves.

Every skip and hold is recorded per event and function (`FlowStore.event_outcomes`) and
logged, so "why did my function not run?" has an answer. An invoked function (`step.invoke`)
whose run is not started fails the invoking step at once (`Outcomes.fail_invoker`) instead of
leaving it waiting for its timeout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from app.models import JSON, FunctionConfig

if TYPE_CHECKING:
    from app.state.flow import FlowStore

log = logging.getLogger("stepline.flow")

# --- outcomes, as recorded per event and function -------------------------------------------
RATE_LIMITED = "rate_limited"
DEBOUNCED = "debounced"
BATCHED = "batched"
IDEMPOTENT = "idempotent"
SINGLETON_SKIPPED = "singleton_skipped"
NO_MATCH = "no_match"
KEY_ERROR = "key_error"
"""A key expression failed for the event: it went to the shared `<invalid>` bucket, or the
option was off for it. Recorded beside the function's decision, not in its place."""

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
    other: str | None = None
    """singleton_skipped: the run holding the singleton lock."""

    @property
    def start(self) -> bool:
        return self.action == "start"


class EventSink(Protocol):
    """Where engine events go: stored with their job, which is sent (`Runner.ingest`)."""

    def ingest(
        self, events: list[dict[str, JSON]], now: int, *, internal: bool = False
    ) -> list[str]: ...


@dataclass(frozen=True)
class Held:
    """A held run whose timer fired and that passed its last checks: what admission hands
    back for the runner to create (`Runner.start_held`). Admission never creates it."""

    fn: FunctionConfig
    decision: Decision
    events: list[dict[str, JSON]]
    event_ids: list[str]
    now: int
    batched: bool
    batch_id: str = ""
    """A batch's id: dropped only once its run exists (`Admission.held_started`)."""


class Outcomes:
    """Records why events did not start runs, and answers invokers whose run was not started.

    `clock` is read at each record (the admission's clock, which tests pin).
    """

    def __init__(self, flow: FlowStore, events: EventSink, clock: Clock) -> None:
        self._flow = flow
        self._events = events
        self._clock = clock

    def record(
        self, fn: FunctionConfig, event_ids: list[str], outcome: str, message: str, **extra: JSON
    ) -> None:
        now = self._clock()
        # One record per function and event; a key error has its own, so that the skip or
        # hold that follows it (rate limited in the `<invalid>` bucket) does not replace it.
        field = f"{fn.id}#{KEY_ERROR}" if outcome == KEY_ERROR else fn.id
        for event_id in event_ids:
            record: dict[str, JSON] = {
                "function_id": fn.id,
                "outcome": outcome,
                "message": message,
                "at": now,
                **extra,
            }
            self._flow.record_outcome(event_id, field, record)
        log.info(
            "event %s function=%s event_id=%s: %s",
            outcome,
            fn.id,
            ",".join(event_ids),
            message,
            extra={"function_id": fn.id, "event_ids": event_ids, "outcome": outcome},
        )

    def key_error(
        self, fn: FunctionConfig, event_ids: list[str], option: str
    ) -> Callable[[str], None]:
        """Where `key_hash` reports a key that failed: a `key_error` record per event."""
        return lambda message: self.record(fn, event_ids, KEY_ERROR, f"{option}: {message}")

    def fail_invoker(
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
        self._events.ingest([finished], now, internal=True)  # stored, its job sent
