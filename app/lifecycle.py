"""Run endings and the lifecycle events the engine emits, as Inngest emits them.

    finish(run) ─► inngest/function.finished  (always; resumes an invoking parent)
                ─► inngest/function.failed    (Failed: triggers on_failure handlers)
                ─► inngest/function.cancelled (Cancelled)

Events are stored (with their processing jobs) before the run is marked ended, with ids
derived from the run id, so a worker that dies in between re-emits the same ids on
redelivery and the event dedupe drops the copies: the finish event, which a parent run may
be waiting on, is never lost. Inside a worker they are then processed in the same task.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from app.models import JSON, RunStatus
from app.state.store import RunState, Store

log = logging.getLogger("stepline.runs")

LIFECYCLE_EVENTS = (
    "inngest/function.finished",
    "inngest/function.failed",
    "inngest/function.cancelled",
)


class EventSink(Protocol):
    def ingest(
        self,
        events: list[dict[str, JSON]],
        now: int,
        *,
        internal: bool = False,
        inline: bool = False,
        before_inline: Callable[[], None] | None = None,
    ) -> list[str]: ...


class Lifecycle:
    def __init__(self, store: Store, sink: EventSink) -> None:
        self._store = store
        self._sink = sink
        self.on_finish: Callable[[RunState, RunStatus, int], None] | None = None
        """Set by `Engine.create`: told once a run has ended (flow control frees its locks)."""

    def finish(
        self, state: RunState, status: RunStatus, output: JSON, error: JSON, now: int
    ) -> bool:
        """End the run with `status`; True for the call that ended it."""
        trigger = state.events[0] if state.events else {}
        outcome: dict[str, bool] = {}

        def end() -> None:
            ended = self._store.finish_run(state.run_id, status.value, output, error, now)
            outcome["ended"] = ended
            if ended:
                took = now - (state.started_at or state.created_at)
                log.info(
                    "run %s run_id=%s function=%s duration_ms=%d%s",
                    status.value.lower(),
                    state.run_id,
                    state.function_id,
                    took,
                    f" error={_message(error)!r}" if error else "",
                    extra={
                        "run_id": state.run_id,
                        "function": state.function_id,
                        "status": status.value,
                        "duration_ms": took,
                    },
                )
                if self.on_finish is not None:
                    self.on_finish(state, status, now)

        if str(trigger.get("name", "")) in LIFECYCLE_EVENTS[:2]:
            end()
        else:
            events = self._events(state, status, output, error, now)
            self._sink.ingest(events, now, internal=True, inline=True, before_inline=end)
        return outcome.get("ended", False)

    def _events(
        self, state: RunState, status: RunStatus, output: JSON, error: JSON, now: int
    ) -> list[dict[str, JSON]]:
        data: dict[str, JSON] = {
            "function_id": state.function_id,
            "run_id": state.run_id,
            "event": state.events[0] if state.events else {},
            "events": state.events,
            "_inngest": {"status": status.value},
        }
        if status is RunStatus.COMPLETED:
            data["result"] = output
        elif status is RunStatus.FAILED:
            data["error"] = error
        else:
            data["error"] = {"name": "FunctionCancelled", "message": "run was cancelled"}
        if state.correlation_id:
            data["correlation_id"] = state.correlation_id
        events: list[dict[str, JSON]] = [
            {
                "name": "inngest/function.finished",
                "id": f"{state.run_id}:finished",
                "data": data,
                "ts": now,
            },
        ]
        if status is RunStatus.FAILED:
            events.append(
                {"name": "inngest/function.failed", "id": state.run_id, "data": data, "ts": now}
            )
        elif status is RunStatus.CANCELLED:
            events.append(
                {"name": "inngest/function.cancelled", "id": state.run_id, "data": data, "ts": now}
            )
        return events

    def emit_invoke(
        self,
        state: RunState,
        function_id: str,
        payload: dict[str, JSON],
        correlation_id: str,
        expires_at: int,
        now: int,
    ) -> None:
        """Send the `inngest/function.invoked` event that starts the invoked function."""
        data = payload.get("data")
        body: dict[str, JSON] = dict(data) if isinstance(data, dict) else {}
        body["_inngest"] = {
            "fn_id": function_id,
            "correlation_id": correlation_id,
            "source_fn_id": state.function_id,
            "source_run_id": state.run_id,
            "expire": expires_at,
        }
        event: dict[str, JSON] = {
            "name": "inngest/function.invoked",
            "id": f"invoke:{correlation_id}",
            "data": body,
            "ts": now,
        }
        if isinstance(payload.get("v"), str):
            event["v"] = payload["v"]
        self._sink.ingest([event], now, internal=True, inline=True)


def _message(error: JSON) -> str:
    if isinstance(error, dict):
        return str(error.get("message", ""))
    return str(error)
