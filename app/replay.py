"""Rerun and replay: a new run made from an existing one.

    rerun(run)              new run, same function and events, from the start
    replay(run, from_step)  new run whose first steps are copied (memoized) from the run, so
                            execution resumes at the step that failed (or at `from_step`)

Both link the new run to the original (`original_run_id`) and go through flow control as an
event's run does (`Runner.start_copy`): a singleton function's lock (mode skip: 409 while
another run holds it; mode cancel: that run is cancelled), then the new run's cancellation
pauses and timeout jobs. Batching, debounce, the rate limit and the idempotency key, which
admitted the original's event already, do not apply. The run, the steps a replay copies and
its start job are written in one atomic step (`lua/create_run.lua`): a worker never sees a
replay without its memoized steps, and no crash leaves a Queued run that nothing starts. The
original is read wherever it is (`Reads`: Redis, or the history store once it has been
archived and dropped from Redis).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from app.errors import BadRequest, Conflict, NotFound
from app.history.reads import Reads
from app.ids import new_ulid
from app.models import FunctionConfig, RunStatus
from app.runner import Runner
from app.state.store import MemoizedSteps, NewRun, RunState

log = logging.getLogger("stepline.runs")

FAILED_STEP = "Failed"
"""The history status of a step that failed for good."""


@dataclass
class NewRunInfo:
    run_id: str
    original_run_id: str
    function_id: str
    from_step: str | None = None
    copied_steps: int = 0


def rerun(reads: Reads, runner: Runner, run_id: str, now: int) -> NewRunInfo:
    """Start `run_id`'s function again from the start with the same events."""
    state, fn = _original(reads, run_id)
    new_id = _create(reads, runner, state, fn, now, None)
    return NewRunInfo(new_id, run_id, state.function_id)


def replay(
    reads: Reads,
    runner: Runner,
    run_id: str,
    now: int,
    from_step: str | None = None,
    *,
    idempotency_key: str | None = None,
) -> NewRunInfo:
    """Start a new run of an ended run that keeps the steps memoized before `from_step` (by
    default the first step that failed; with none, every memoized step).

    With `idempotency_key` (a bulk replay), a second replay under the same key answers the
    run the first one made (and queues nothing new)."""
    state, fn = _original(reads, run_id)
    if not RunStatus(state.status).ended:
        raise Conflict(f"run {run_id} has not ended ({state.status}); cancel it first")
    memo = reads.memoized_steps(run_id)
    if memo is None:
        raise NotFound(f"run {run_id} not found", field="run_id")
    stop: str | None
    if from_step is not None:
        if from_step not in memo.stack:
            raise BadRequest(f"run {run_id} has no memoized step {from_step!r}", field="from_step")
        stop = from_step
    else:
        failed = [step for step in memo.stack if _failed(memo, step)]
        stop = failed[0] if failed else None
    kept = memo.stack if stop is None else memo.stack[: memo.stack.index(stop)]
    copy = MemoizedSteps(
        stack=kept,
        steps={step: memo.steps[step] for step in kept},
        history={
            step: {**memo.history[step], "order": order}
            for order, step in enumerate(kept)
            if step in memo.history
        },
    )
    new_id = _create(reads, runner, state, fn, now, copy, idempotency_key)
    return NewRunInfo(new_id, run_id, state.function_id, stop, len(kept))


def _failed(memo: MemoizedSteps, step: str) -> bool:
    record = memo.history.get(step) or {}
    if record.get("status") == FAILED_STEP:
        return True
    value = memo.steps.get(step)
    return isinstance(value, dict) and value.get("error") is not None


def _original(reads: Reads, run_id: str) -> tuple[RunState, FunctionConfig]:
    state = reads.load_run(run_id)
    if state is None:
        raise NotFound(f"run {run_id} not found", field="run_id")
    fn = reads.store.get_function(state.function_id)
    if fn is None:
        raise Conflict(f"function {state.function_id} of run {run_id} is no longer registered")
    return state, fn


def _create(
    reads: Reads,
    runner: Runner,
    state: RunState,
    fn: FunctionConfig,
    now: int,
    memo: MemoizedSteps | None,
    idempotency_key: str | None = None,
) -> str:
    view = reads.get_run(state.run_id)
    event_ids = view.event_ids if view is not None else []
    run = NewRun(
        run_id=new_ulid(now),
        function_id=state.function_id,
        events=state.events,
        event_ids=event_ids,
        created_at=now,
        original_run_id=state.run_id,
        memoized=memo,
        idempotency_key=(
            None if idempotency_key is None else f"{state.function_id}:{idempotency_key}"
        ),
    )
    new_id, holder = runner.start_copy(fn, run, now)
    if new_id is None:
        raise Conflict(
            f"function {fn.id} is a singleton and run {holder} has not finished; "
            "wait for it or cancel it first"
        )
    log.info(
        "run queued run_id=%s function=%s original_run_id=%s",
        new_id,
        state.function_id,
        state.run_id,
        extra={
            "run_id": new_id,
            "function": state.function_id,
            "status": RunStatus.QUEUED.value,
            "original_run_id": state.run_id,
            "replay": memo is not None,
        },
    )
    return new_id
