"""Run endings and the lifecycle events the engine emits, as Inngest emits them.

    finish(run) ─► inngest/function.finished  (always; resumes an invoking parent)
                ─► inngest/function.failed    (Failed: triggers on_failure handlers)
                ─► inngest/function.cancelled (Cancelled)

The run's end and its events (with the job that processes them, when something listens:
a parent waiting on the invoke, an `on_failure` handler, a trigger) are one script call
(lua/finish_run.lua), so no crash can end a run without its events. Their ids (`id` in the
event) are derived from the run id; they are not deduplicated against user events (the run
ends once, so they are stored once). Inside a worker their job then runs in the same task.
The function's last unsaved steps go with the end too, and the ends made by the jobs of one
message of due timers are written together (`batched`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Protocol

from app import tracing
from app.ids import new_ulid
from app.models import JSON, Job, RunStatus
from app.runner import must_process, new_event, normalize_event
from app.state.records import SlotRelease
from app.state.runs import Ended
from app.state.store import NewEvent, RunEnd, RunState, Store

Released = Callable[[Sequence[Job] | None], None]
"""Told what became of the slots an end was to give back (`Lifecycle.finish`): the waiters
the call that ended the run woke (its slots are given back), or None (not given back: the
end was not written by this call; the caller gives them back itself)."""

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
    ) -> list[str]: ...

    def send_by(self, now: int) -> int: ...


class JobSender(Protocol):
    def dispatch(self, job: Job, countdown_ms: int = 0) -> None: ...


class Lifecycle:
    def __init__(self, store: Store, sink: EventSink, queue: JobSender) -> None:
        self._store = store
        self._sink = sink
        self._queue = queue
        self.on_finish: Callable[[RunState, RunStatus, int], None] | None = None
        """Set by `Engine.create`: told once a run has ended (flow control frees its locks)."""
        self._batch: list[tuple[RunState, RunEnd, Released | None]] | None = None
        """Ends kept to be written together (`batched`)."""

    def finish(
        self,
        state: RunState,
        status: RunStatus,
        output: JSON,
        error: JSON,
        now: int,
        *,
        job_id: str | None = None,
        steps: Sequence[tuple[str, JSON, dict[str, JSON]]] = (),
        observed: Sequence[tuple[str, float] | None] = (),
        release: SlotRelease | None = None,
        released: Released | None = None,
    ) -> bool:
        """End the run with `status`; True for the call that ended it. `job_id`: the run's
        job this call runs in, likely its only one (the script drops it with the run's
        other jobs, so the caller need not finish it). `steps`: the function's last steps
        not saved yet (step, memo, info; each duration in `observed`), saved by the same
        script call (`Store.end_run`); when one already had another memo, nothing is
        written (False).

        `release` (with `job_id`): the concurrency slots that job holds, given back by the
        call that ends the run; `released` is then told what became of them, once written.

        Inside `batched`, an end from its own job (`job_id`) is only kept, and True
        answered: the batch's ends are written together when it closes."""
        end = self._end(state, status, output, error, now, job_id or "", steps, observed)
        if job_id is not None and release is not None:
            end = replace(end, release=release)
        if self._batch is not None and job_id is not None:
            self._batch.append((state, end, released))
            return True
        try:
            result = self._end_alone(end, guess=job_id is not None)
        except Exception:
            if released is not None and end.release is not None:
                released(None)  # not given back: the caller does
            raise
        self._ended(state, status, now, error, result.code == "finished", result.job)
        _tell(released, end, result)
        return result.code == "finished"

    @property
    def deferring(self) -> bool:
        """Inside `batched`: an end made by its own job is written when the batch closes."""
        return self._batch is not None

    @contextmanager
    def batched(self) -> Iterator[None]:
        """Ends made by their own jobs in here (`finish` with a `job_id`) are written when it
        closes, in one round trip for all (`Store.end_runs`). An end whose guess was wrong
        (the run had other jobs or pauses) is then made alone; one that did not end its run
        (it had ended, or another execution's memo won) finishes its job, which `finish`
        answered as gone with the run."""
        self._batch = []
        try:
            yield
        finally:
            batch, self._batch = self._batch, None
            if batch:
                self._write(batch)

    def _write(self, batch: list[tuple[RunState, RunEnd, Released | None]]) -> None:
        told: set[int] = set()
        try:
            self._write_all(batch, told)
        finally:
            for index, (_, end, released) in enumerate(batch):
                if index not in told and released is not None and end.release is not None:
                    released(None)  # not written: the caller gives the slots back

    def _write_all(
        self, batch: list[tuple[RunState, RunEnd, Released | None]], told: set[int]
    ) -> None:
        results = self._store.end_runs([end for _, end, _ in batch])
        unfinished: list[str] = []
        for index, ((state, end, released), result) in enumerate(zip(batch, results, strict=True)):
            status = RunStatus(end.status)
            if result.code == "changed":
                result = self._end_alone(end, guess=False)
            ended = result.code == "finished"
            if not ended:
                unfinished.append(end.job_id)
            told.add(index)
            _tell(released, end, result)
            self._ended(state, status, end.now, end.error, ended, result.job)
        self._store.finish_jobs(unfinished)

    def _end_alone(self, end: RunEnd, *, guess: bool) -> Ended:
        """Write one end in its own call (`Store.end_alone`); with `guess`, its job first
        guessed as the run's only one."""
        return self._store.end_alone(end, guess=guess)

    def _end(
        self,
        state: RunState,
        status: RunStatus,
        output: JSON,
        error: JSON,
        now: int,
        job_id: str,
        steps: Sequence[tuple[str, JSON, dict[str, JSON]]],
        observed: Sequence[tuple[str, float] | None],
    ) -> RunEnd:
        trigger = state.events[0] if state.events else {}
        events: list[NewEvent] = []
        if str(trigger.get("name", "")) not in LIFECYCLE_EVENTS[:2]:
            # A run started by a lifecycle event (on_failure) emits none: no loops.
            raws = self._events(state, status, output, error, now)
            events = [lifecycle_event(raw, new_ulid(now), now) for raw in raws]
        return RunEnd(
            state.run_id,
            state.function_id,
            job_id,
            status.value,
            output,
            error,
            now,
            events,
            self._sink.send_by(now),
            steps,
            observed,
        )

    def _ended(
        self,
        state: RunState,
        status: RunStatus,
        now: int,
        error: JSON,
        ended: bool,
        job: Job | None,
    ) -> None:
        """After the end was written: log it, trace it, free its flow-control holds, send
        its events' job."""
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
            tracing.run_ended(
                state.run_id,
                state.function_id,
                status.value,
                state.created_at,
                now,
                _message(error) if error else "",
            )
            if self.on_finish is not None:
                self.on_finish(state, status, now)
        if job is not None:
            self._queue.dispatch(job)

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
        """Send the `inngest/function.invoked` event that starts the invoked function (an
        invoke among parallel steps; a run that stops on an invoke stores it with its
        suspend: `invoke_event`)."""
        raw = _invoke_raw(state, function_id, payload, correlation_id, expires_at, now)
        self._sink.ingest([raw], now, internal=True)

    @staticmethod
    def invoke_event(
        state: RunState,
        function_id: str,
        payload: dict[str, JSON],
        correlation_id: str,
        expires_at: int,
        now: int,
    ) -> NewEvent:
        """The `inngest/function.invoked` event as the run's suspend stores it
        (lua/suspend.lua): deduplicated on its id in the engine's namespace, as `emit_invoke`
        stores it, so an invoke replayed within the dedupe window starts one run."""
        raw = _invoke_raw(state, function_id, payload, correlation_id, expires_at, now)
        return new_event(raw, new_ulid(now), now, internal=True)


def _invoke_raw(
    state: RunState,
    function_id: str,
    payload: dict[str, JSON],
    correlation_id: str,
    expires_at: int,
    now: int,
) -> dict[str, JSON]:
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
    return event


def _message(error: JSON) -> str:
    if isinstance(error, dict):
        return str(error.get("message", ""))
    return str(error)


def lifecycle_event(raw: dict[str, JSON], internal_id: str, now: int) -> NewEvent:
    """A lifecycle event as finish_run.lua stores it: not deduplicated (stored once, with
    the run's end), and always processed when an invoking parent waits for it."""
    event = normalize_event(raw, internal_id, now, internal=True)
    return NewEvent(internal_id, event, "", must_process(event))


def _tell(released: Released | None, end: RunEnd, result: Ended) -> None:
    """Tell `released` what became of `end`'s slots (given back by its call, or not)."""
    if released is not None and end.release is not None:
        released(result.woken if result.released else None)
