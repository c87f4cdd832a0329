"""The in-process driver: runs a function of this process by replay.

Each call runs the handler from the top. Steps are identified by the user's step id hashed
with a per-call counter (`app.ids.StepCounter`: repeats hash as `id:n`). What a step does:

| step met                    | memoized            | not memoized                           |
|-----------------------------|---------------------|----------------------------------------|
| step.run, sequential        | return memo (error  | run body; checkpoint `StepRun`; go on  |
|                             | memo: raise         | with the stored value (or stop when    |
|                             | StepError)          | told to); body raised: `StepError`, or |
|                             |                     | `StepFailed` on the last attempt       |
| step.run, planning mode (1) | same                | report `StepPlanned`                   |
| sleep / wait / invoke /     | same (decoded)      | report `Sleep` / `WaitForEvent` /      |
| wait for signal / ai.infer  |                     | `InvokeFunction` / `WaitForSignal` /   |
|                             |                     | `AIGateway` (the engine calls the AI)  |
| any step, call targets      | same                | the target: run it, report `StepRun`   |
| another step                |                     | (no checkpoint); others: skip inside   |
|                             |                     | a parallel group, else nondeterminism  |

(1) inside `group.parallel` (every unmemoized step of the group is reported together), or
with `disable_immediate_execution` and no target.

A step whose opcode the engine does not implement fails the run at once with
`UnsupportedOpcodeError`, as the same op from an SDK app does (`StepReplay.unsupported`).

Nondeterminism: an unmemoized step met while recorded steps were never reached (outside a
parallel group), a step whose recorded kind (`CallRequest.kinds`, from the run's history)
differs from the kind met, or a recorded result that cannot belong to that kind, fails the
run (`NonDeterminismError`, not retried). Reporting and stopping are `BaseException`s
(`_Suspend`, `_Skip`, `_Abort`) so a user's `except Exception` cannot swallow them.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import sys
import time
import traceback
from collections.abc import Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, NoReturn

from app import strictjson, tracing
from app.drivers.base import (
    MAX_CALL_LOG_LINES,
    MAX_LOG_LINE_CHARS,
    CallRequest,
    CallResult,
    Checkpoint,
    Op,
    OpName,
    unsupported_op,
)
from app.functions import FunctionSet, LocalFunction
from app.ids import StepCounter
from app.models import JSON, StepKind
from app.sdk.context import Context, ContextSync
from app.sdk.errors import Error, NonRetriableError, RetryAfterError, StepError, error_json
from app.sdk.event import Event
from app.sdk.options import ParallelMode
from app.sdk.steps import Group, GroupSync, Started, Step, StepSync

_OPS: dict[StepKind, OpName] = {
    StepKind.RUN: "StepRun",
    StepKind.SLEEP: "Sleep",
    StepKind.WAIT_FOR_EVENT: "WaitForEvent",
    StepKind.INVOKE: "InvokeFunction",
    StepKind.WAIT_FOR_SIGNAL: "WaitForSignal",
    StepKind.AI_GATEWAY: "AIGateway",
}


class _Suspend(BaseException):
    """Stop the call and report `ops`."""

    def __init__(self, ops: list[Op]) -> None:
        super().__init__(ops)
        self.ops = ops


class _Skip(BaseException):
    """A targeted call met a parallel step that is not its target."""


class _Abort(BaseException):
    """Fail the run now, without retry."""

    def __init__(self, name: str, message: str, error: dict[str, JSON] | None = None) -> None:
        super().__init__(message)
        fallback: dict[str, JSON] = {"name": name, "message": message, "stack": None}
        # Stored as strict JSON: a message may quote a step id or an exception's text.
        self.error: dict[str, JSON] = strictjson.cleaned(error or fallback)


def _error_json(err: BaseException) -> dict[str, JSON]:
    """`error_json`, stored as strict JSON: a lone surrogate in a message becomes U+FFFD."""
    cleaned: dict[str, JSON] = strictjson.cleaned(error_json(err))
    return cleaned


def _is_wrapper(memo: JSON) -> bool:
    """A `{"data": ...}` / `{"error": {...}}` memo (PROTOCOL.md 2.4)."""
    return (
        isinstance(memo, dict)
        and set(memo) <= {"data", "error"}
        and (memo.get("error") is None or isinstance(memo["error"], dict))
    )


def _step_error(error: dict[str, JSON]) -> StepError:
    stack = error.get("stack")
    return StepError(
        message=str(error.get("message") or ""),
        name=str(error.get("name") or "Error"),
        stack=stack if isinstance(stack, str) else None,
    )


def _to_json(value: object, what: str) -> JSON:
    """`value` as it will read back from storage (tuples become lists ...), or abort.

    It must be strict JSON (`app.strictjson`): NaN, infinities and nesting beyond
    `MAX_DEPTH` abort naming the step and the place; lone surrogates become U+FFFD, as
    Inngest reads an SDK's output.
    """
    try:
        data = json.loads(json.dumps(value))
    except (TypeError, ValueError, RecursionError) as err:
        raise _Abort(
            "OutputUnserializableError",
            f"{what} is not JSON-serialisable ({type(value).__name__}): {err}",
        ) from None
    try:
        return strictjson.cleaned(data)
    except strictjson.JSONRejected as err:
        raise _Abort("OutputUnserializableError", f"{what} is not valid JSON: {err}") from None


class _Group:
    """The items of one `group.parallel`: the steps they report are collected."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    @contextmanager
    def item(self) -> Iterator[None]:
        try:
            yield
        except _Suspend as suspend:
            self.ops.extend(suspend.ops)
        except _Skip:
            pass


class Replay:
    """One call's replay state: the memos not yet reached, the step counter, the target."""

    def __init__(self, request: CallRequest, checkpoint: Checkpoint) -> None:
        self._request = request
        self._checkpoint = checkpoint
        self._memos: dict[str, JSON] = dict(request.steps)
        self._order = [h for h in request.stack if h in self._memos]
        self._counter = StepCounter()
        self._target = request.target
        self._parallel = 0
        self._running: Started | None = None
        self._span: tracing.StepSpan | None = None
        self.logs: list[dict[str, JSON]] = []
        """`ctx.logger` lines of this call (see `_ReplayLogger`)."""
        self.logs_dropped = 0

    def keep_log(self, level: int, message: str, ts: int) -> None:
        """Keep a `ctx.logger` line, with the step whose body logged it (None outside one)."""
        if len(self.logs) >= MAX_CALL_LOG_LINES:
            self.logs_dropped += 1
            return
        if len(message) > MAX_LOG_LINE_CHARS:
            message = message[: MAX_LOG_LINE_CHARS - 1] + "…"
        step = self._running
        self.logs.append(
            {
                "ts": ts,
                "level": logging.getLevelName(level).lower(),
                "message": strictjson.cleaned(message),
                "step": step.name if step is not None else None,
                "step_id": step.hashed if step is not None else None,
            }
        )

    def collected_logs(self) -> list[dict[str, JSON]]:
        if not self.logs_dropped:
            return self.logs
        more = {**self.logs[-1], "level": "warning", "step": None, "step_id": None}
        more["message"] = f"{self.logs_dropped} more lines of this call were not kept"
        return [*self.logs, more]

    @property
    def replaying(self) -> bool:
        return bool(self._memos)

    def start(self, kind: StepKind, step_id: str, opts: dict[str, JSON] | None = None) -> Started:
        if self._running is not None:
            raise _Abort(
                "NestedStepError",
                f"step '{step_id}' was called inside step '{self._running.name}'; "
                "steps cannot be nested",
            )
        hashed, _ = self._counter.next(step_id)
        opts = _to_json(opts or {}, f"the options of step '{step_id}'")
        step = Started(hashed, step_id, kind, opts)
        if hashed in self._memos:
            memo = self._memos.pop(hashed)
            recorded = self._request.kinds.get(hashed)
            if recorded is not None and recorded != _OPS[kind]:
                raise _Abort(
                    "NonDeterminismError",
                    f"step '{step_id}' ({hashed}) was recorded as a {recorded} step but the "
                    f"function now makes it a {_OPS[kind]} step: the function's steps changed "
                    "between calls",
                )
            if hashed == self._target and kind is StepKind.RUN:
                # A stale targeted call: report the recorded result again (first write wins).
                raise _Suspend([self._recorded_op(step, memo)])
            step.memoized = True
            step.value = self._decode(step, memo)
            return step
        if self._parallel == 0 and self._memos:
            expected = next((h for h in self._order if h in self._memos), next(iter(self._memos)))
            raise _Abort(
                "NonDeterminismError",
                f"expected step '{expected}' (recorded) but the function reached '{step_id}' "
                f"({hashed}), which has no recorded result: the function's steps changed "
                "between calls",
            )
        if self._target is not None and hashed != self._target:
            if self._parallel:
                raise _Skip()
            raise _Abort(
                "NonDeterminismError",
                f"this call targets step '{self._target}' but the function reached "
                f"'{step_id}' ({hashed}), which is neither recorded nor the target",
            )
        op = Op(_OPS[kind], hashed, step_id, opts=step.opts)
        if kind is not StepKind.RUN:
            raise _Suspend([op])
        planning = self._parallel > 0 or self._request.disable_immediate_execution
        if self._target is None and planning:
            op.op = "StepPlanned"
            raise _Suspend([op])
        self._running = step
        self._span = tracing.StepSpan(step_id, hashed, self._request.run_id)
        return step

    def _end_span(self, error: str | None = None) -> None:
        span, self._span = self._span, None
        if span is not None:
            span.end(error)

    def finish(self, step: Started, output: object) -> object:
        self._running = None
        self._end_span()
        data = _to_json(output, f"the output of step '{step.name}'")
        op = Op("StepRun", step.hashed, step.name, data=data)
        if self._target is not None:
            raise _Suspend([op])
        result = self._checkpoint(op)
        if not result.proceed:
            raise _Suspend([op])
        memo = result.memo
        if memo is None:
            return data
        if _is_wrapper(memo):
            if memo.get("error") is not None:
                raise _step_error(memo["error"])
            return memo.get("data")
        return memo

    def fail(self, step: Started, err: Exception) -> BaseException:
        self._running = None
        self._end_span(f"{type(err).__name__}: {err}")
        if isinstance(err, NonRetriableError | RetryAfterError):
            return err
        final = self._request.attempt + 1 >= self._request.max_attempts
        op: OpName = "StepFailed" if final else "StepError"
        return _Suspend([Op(op, step.hashed, step.name, error=_error_json(err))])

    @contextmanager
    def parallel(self, mode: ParallelMode) -> Iterator[_Group]:
        group = _Group()
        self._parallel += 1
        try:
            yield group
        finally:
            self._parallel -= 1
        if group.ops:
            if mode is ParallelMode.RACE:
                for op in group.ops:
                    op.opts["parallelMode"] = mode.value
            raise _Suspend(group.ops)

    def unsupported(self, op: str, step_id: str, opts: dict[str, JSON]) -> NoReturn:
        self._counter.next(step_id)  # it is a step all the same: later ids stay as the SDK's
        _to_json(opts, f"the options of step '{step_id}'")
        error = unsupported_op(op, "app.sdk").error or {}
        raise _Abort(str(error.get("name")), str(error.get("message")), error)

    def _decode(self, step: Started, memo: JSON) -> object:
        """A recorded result as the step returns it; raises StepError for a failure."""
        if step.kind is StepKind.SLEEP or (step.kind is StepKind.WAIT_FOR_SIGNAL and memo is None):
            return None  # a signal wait that timed out is memoized as null
        if _is_wrapper(memo) and memo.get("error") is not None:
            raise _step_error(memo["error"])
        if step.kind is StepKind.WAIT_FOR_EVENT:
            event = memo.get("data") if _is_wrapper(memo) else memo
            if event is None:
                return None
            if isinstance(event, dict) and "name" in event:
                return Event.model_validate(event)
        elif _is_wrapper(memo):
            return memo.get("data")
        raise _Abort(
            "NonDeterminismError",
            f"step '{step.name}' ({step.hashed}) is a {_OPS[step.kind]} step but its recorded "
            f"result {json.dumps(memo)[:200]} is not: the function's steps changed between calls",
        )

    def _recorded_op(self, step: Started, memo: JSON) -> Op:
        if not _is_wrapper(memo):
            self._decode(step, memo)  # raises the nondeterminism error
        if memo.get("error") is not None:
            return Op("StepFailed", step.hashed, step.name, error=memo["error"])
        return Op("StepRun", step.hashed, step.name, data=memo.get("data"))


class _ReplayLogger(logging.LoggerAdapter[Any]):
    """`ctx.logger`: quiet while the call replays memoized steps; every line it lets through
    is also kept with the run (`Replay.keep_log`, shown in the run's timeline)."""

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter[Any], replay: Replay) -> None:
        super().__init__(logger, {})
        self._replay = replay

    def isEnabledFor(self, level: int) -> bool:
        return not self._replay.replaying and self.logger.isEnabledFor(level)

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        """Keep lines of INFO and above with the run whatever the Python logger's level (the
        timeline shows them); pass each on to the logger when it is enabled for it."""
        if self._replay.replaying:
            return
        enabled = self.logger.isEnabledFor(level)
        if level >= logging.INFO or enabled:
            self._replay.keep_log(level, _log_text(msg, args, kwargs), int(time.time() * 1000))
        if enabled:
            super().log(level, msg, *args, **kwargs)

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        return msg, kwargs


def _log_text(msg: object, args: tuple[Any, ...], kwargs: MutableMapping[str, Any]) -> str:
    """The line as `logging` would render its message, with the traceback of `exc_info`."""
    try:
        text = str(msg) % args if args else str(msg)
    except (TypeError, ValueError):
        text = f"{msg} {args}"
    info = kwargs.get("exc_info")
    if info:
        if info is True:
            info = sys.exc_info()
        elif isinstance(info, BaseException):
            info = (type(info), info, info.__traceback__)
        if isinstance(info, tuple) and info[0] is not None:
            text += "\n" + "".join(traceback.format_exception(*info)).rstrip()
    return text


def _run_coroutine(coroutine: Any) -> object:
    """Run an async handler to completion (in a helper thread if a loop already runs here)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _run_handler(local: LocalFunction, replay: Replay, request: CallRequest) -> object:
    client = local.client
    event = Event.model_validate(request.event)
    events = [Event.model_validate(e) for e in request.events] or [event]
    logger = _ReplayLogger(client.logger, replay)
    if inspect.iscoroutinefunction(local.handler):
        ctx = Context(
            attempt=request.attempt,
            event=event,
            events=events,
            group=Group(replay),
            job_id=None,
            logger=logger,
            request_id=None,
            run_id=request.run_id,
            step=Step(client, replay),
        )
        return _run_coroutine(local.handler(ctx))
    ctx_sync = ContextSync(
        attempt=request.attempt,
        event=event,
        events=events,
        group=GroupSync(replay),
        job_id=None,
        logger=logger,
        request_id=None,
        run_id=request.run_id,
        step=StepSync(client, replay),
    )
    return local.handler(ctx_sync)


class InProcessDriver:
    """Runs the functions of a `FunctionSet` (see the table above)."""

    def __init__(self, functions: FunctionSet) -> None:
        self._functions = functions

    def call(self, request: CallRequest, checkpoint: Checkpoint) -> CallResult:
        local = self._functions.get(request.function.id)
        if local is None:
            message = f"function '{request.function.id}' is not loaded in this process"
            return CallResult(
                "error", error={"name": "FunctionNotFound", "message": message, "stack": None}
            )
        replay = Replay(request, checkpoint)
        try:
            result = self._call(local, replay, request)
        finally:
            replay._end_span("the step did not finish")  # a step left by a BaseException
        result.logs = replay.collected_logs()
        return result

    def _call(self, local: LocalFunction, replay: Replay, request: CallRequest) -> CallResult:
        try:
            output = _to_json(_run_handler(local, replay, request), "the function's output")
        except _Suspend as suspend:
            return CallResult("ops", ops=suspend.ops)
        except _Abort as abort:
            return CallResult("error", error=abort.error, retriable=False)
        except _Skip:  # only raised inside parallel groups, which catch it
            return CallResult(
                "error",
                error={"name": "NonDeterminismError", "message": "unexpected skip", "stack": None},
                retriable=False,
            )
        except RetryAfterError as err:
            return CallResult("error", error=_error_json(err), retry_at_ms=err.retry_at_ms)
        except Exception as err:
            retriable = not (isinstance(err, Error) and not err.is_retriable)
            return CallResult("error", error=_error_json(err), retriable=retriable)
        return CallResult("complete", output=output)
