"""`ctx.step` and `ctx.group`: what user code calls. The replay itself is the driver's.

Every step method asks the run's `StepReplay` to `start` the step: it answers with the
memoized value (decoded for the step's kind) or, for a `step.run` that must execute now,
an empty handle; every other outcome (report an opcode, skip, stop) is a `BaseException`
raised by the replay, so a user's `except Exception` cannot swallow it. The body of a
`step.run` is the only thing the SDK executes itself, then hands back with `finish`/`fail`.

`Step` (for `async def` handlers) is a thin async face over `StepSync`: only `run` (which
may await its body) and `send_event` (which awaits `client.send`) differ.
"""

from __future__ import annotations

import datetime
import inspect
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NoReturn, Protocol, TypeVar, cast, overload

from app.models import JSON, StepKind
from app.sdk.ai import AI, AISync
from app.sdk.event import Event
from app.sdk.options import ParallelMode, duration_ms
from app.sdk.serializer import NO_TYPE

if TYPE_CHECKING:
    from app.sdk.client import Inngest
    from app.sdk.function import Function

T = TypeVar("T")
LOOKBACK_MAX_MS = 86_400_000
"""The longest `wait_for_event(lookback=...)` (the engine's recent-events index reaches 24 h)."""


@dataclass
class Started:
    """A step met by the replay. `memoized`: `value` is its recorded result, decoded."""

    hashed: str
    name: str
    kind: StepKind
    opts: dict[str, JSON] = field(default_factory=dict)
    memoized: bool = False
    value: Any = None


class ParallelItems(Protocol):
    def item(self) -> AbstractContextManager[None]:
        """Run one callable of the group; a step it reports is collected, not raised."""
        ...


class StepReplay(Protocol):
    """What the steps need of the driver running the function (see app/drivers/inprocess)."""

    @property
    def replaying(self) -> bool:
        """True while memoized steps remain ahead (the logger stays quiet)."""
        ...

    def start(self, kind: StepKind, step_id: str, opts: dict[str, JSON] | None = None) -> Started:
        """The step's memo, or (step.run only) a handle to execute it; else raises."""
        ...

    def finish(self, step: Started, output: object) -> object:
        """A step.run body returned `output`: persist it, return the stored value."""
        ...

    def fail(self, step: Started, err: Exception) -> BaseException:
        """A step.run body raised `err`: what to raise instead."""
        ...

    def parallel(self, mode: ParallelMode) -> AbstractContextManager[ParallelItems]:
        """Steps inside are planned together; on exit their opcodes are reported at once."""
        ...

    def unsupported(self, op: str, step_id: str, opts: dict[str, JSON]) -> NoReturn:
        """A step whose opcode (`op`, with `opts` as the official SDK builds them) the engine
        does not implement yet: fail the run at once, naming the feature."""
        ...


def _iso_utc(value: datetime.datetime) -> str:
    """ISO-8601 UTC with milliseconds and `Z`; a naive datetime is local time."""
    utc = value.astimezone(datetime.UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="milliseconds") + "Z"  # no strftime: it reads the TZ


def _seconds_str(timeout: int | datetime.timedelta) -> str:
    """A step timeout as "<n>s" (ms or timedelta, rounded up to a whole second, at least 1)."""
    seconds = duration_ms(timeout) / 1000
    if seconds < 0:
        raise ValueError(f"timeout must not be negative, got {timeout!r}")
    return f"{max(1, math.ceil(seconds))}s"


class StepSync:
    """Step methods for synchronous handlers (`ctx.step`)."""

    def __init__(self, client: Inngest, replay: StepReplay) -> None:
        self._client = client
        self._replay = replay
        self.ai = AISync(replay)

    def run(
        self,
        step_id: str,
        handler: Callable[..., T],
        *handler_args: Any,
        output_type: object = NO_TYPE,
    ) -> T:
        """Run `handler(*handler_args)` once; later replays return its memoized output.

        `output_type`: with a client `serializer`, the output is stored as JSON and returned
        as this type (app/sdk/serializer.py)."""
        step = self._replay.start(StepKind.RUN, step_id)
        if step.memoized:
            return cast(T, self._client._deserialize(step.value, output_type))
        try:
            output = self._client._serialize(handler(*handler_args), output_type)
        except Exception as err:
            raise self._replay.fail(step, err) from None
        stored = self._replay.finish(step, output)
        return cast(T, self._client._deserialize(stored, output_type))

    def sleep(self, step_id: str, duration: int | datetime.timedelta) -> None:
        """Sleep for `duration` (ms or timedelta)."""
        if isinstance(duration, int):
            duration = datetime.timedelta(milliseconds=duration)
        self.sleep_until(step_id, datetime.datetime.now(datetime.UTC) + duration)

    def sleep_until(self, step_id: str, until: datetime.datetime) -> None:
        """Sleep until `until` (a naive datetime is local time)."""
        self._replay.start(StepKind.SLEEP, step_id, {"until": _iso_utc(until)})

    def wait_for_event(
        self,
        step_id: str,
        *,
        event: str,
        if_exp: str | None = None,
        timeout: int | datetime.timedelta,
        lookback: int | datetime.timedelta | None = None,
    ) -> Event | None:
        """Wait for an event named `event` matching `if_exp`; None when `timeout` passes.

        `lookback` (Stepline only; ms or timedelta, at most 24 h): also accept a matching event
        received up to that long before the wait, so one sent between the run's start and
        this step is not missed (app/lookback.py). The oldest such event wins."""
        opts: dict[str, JSON] = {"event": event, "if": if_exp, "timeout": _seconds_str(timeout)}
        if lookback is not None:
            back_ms = duration_ms(lookback)
            if not 0 < back_ms <= LOOKBACK_MAX_MS:
                raise ValueError(
                    f"lookback must be more than 0 and at most 24 hours, got {lookback!r}"
                )
            opts["lookback"] = f"{back_ms}ms"
        step = self._replay.start(StepKind.WAIT_FOR_EVENT, step_id, opts)
        return cast(Event | None, step.value)

    def invoke(
        self,
        step_id: str,
        *,
        function: Function[T],
        data: Mapping[str, object] | None = None,
        timeout: int | datetime.timedelta | None = None,
        v: str | None = None,
    ) -> T:
        """Run `function` with `data` as its event data; return its output (StepError if it
        failed)."""
        output = self.invoke_by_id(
            step_id,
            app_id=function.app_id,
            function_id=function.id,
            data=data,
            timeout=timeout,
            v=v,
        )
        return cast(T, output)

    def invoke_by_id(
        self,
        step_id: str,
        *,
        app_id: str | None = None,
        function_id: str,
        data: Mapping[str, object] | None = None,
        timeout: int | datetime.timedelta | None = None,
        v: str | None = None,
    ) -> object:
        """Like `invoke`, naming the function by (app id, local function id)."""
        opts: dict[str, JSON] = {
            "function_id": f"{app_id or self._client.app_id}-{function_id}",
            "payload": {"data": dict(data or {}), "v": v},
            "timeout": None if timeout is None else _seconds_str(timeout),
        }
        return self._replay.start(StepKind.INVOKE, step_id, opts).value

    def send_event(self, step_id: str, events: Event | list[Event]) -> list[str]:
        """Send events as a memoized step; returns their ids."""
        return self.run(step_id, self._client.send_sync, events)

    def wait_for_signal(
        self,
        step_id: str,
        *,
        signal: str,
        timeout: int | datetime.timedelta,
        on_conflict: Literal["fail", "replace"] = "fail",
    ) -> dict[str, object] | None:
        """Wait until `client.send_signal(signal, data)`: `{"signal": signal, "data": data}`,
        or None when `timeout` passes. Signal names are unique among pending waits: if another
        run waits for `signal`, this step fails (`StepError` "SignalConflictError") unless
        `on_conflict="replace"`, which takes the name over (the other wait then only times
        out), as the TypeScript SDK's `step.waitForSignal`."""
        if not isinstance(signal, str) or not signal:
            raise ValueError(f"signal must be a non-empty string, got {signal!r}")
        if on_conflict not in ("fail", "replace"):
            raise ValueError(f"on_conflict must be 'fail' or 'replace', got {on_conflict!r}")
        opts: dict[str, JSON] = {
            "signal": signal,
            "timeout": _seconds_str(timeout),
            "conflict": on_conflict,
        }
        step = self._replay.start(StepKind.WAIT_FOR_SIGNAL, step_id, opts)
        return cast(dict[str, object] | None, step.value)


class Step:
    """Step methods for `async def` handlers (`ctx.step`): `await ctx.step.run(...)`."""

    def __init__(self, client: Inngest, replay: StepReplay) -> None:
        self._client = client
        self._replay = replay
        self._sync = StepSync(client, replay)
        self.ai = AI(replay)

    @overload
    async def run(
        self,
        step_id: str,
        handler: Callable[..., Awaitable[T]],
        *handler_args: Any,
        output_type: object = NO_TYPE,
    ) -> T: ...

    @overload
    async def run(
        self,
        step_id: str,
        handler: Callable[..., T],
        *handler_args: Any,
        output_type: object = NO_TYPE,
    ) -> T: ...

    async def run(
        self,
        step_id: str,
        handler: Callable[..., Any],
        *handler_args: Any,
        output_type: object = NO_TYPE,
    ) -> Any:
        """Run `handler` (sync or async) once; later replays return its memoized output."""
        step = self._replay.start(StepKind.RUN, step_id)
        if step.memoized:
            return self._client._deserialize(step.value, output_type)
        try:
            output = handler(*handler_args)
            if inspect.isawaitable(output):
                output = await output
            output = self._client._serialize(output, output_type)
        except Exception as err:
            raise self._replay.fail(step, err) from None
        return self._client._deserialize(self._replay.finish(step, output), output_type)

    async def sleep(self, step_id: str, duration: int | datetime.timedelta) -> None:
        self._sync.sleep(step_id, duration)

    async def sleep_until(self, step_id: str, until: datetime.datetime) -> None:
        self._sync.sleep_until(step_id, until)

    async def wait_for_event(
        self,
        step_id: str,
        *,
        event: str,
        if_exp: str | None = None,
        timeout: int | datetime.timedelta,
        lookback: int | datetime.timedelta | None = None,
    ) -> Event | None:
        return self._sync.wait_for_event(
            step_id, event=event, if_exp=if_exp, timeout=timeout, lookback=lookback
        )

    async def invoke(
        self,
        step_id: str,
        *,
        function: Function[T],
        data: Mapping[str, object] | None = None,
        timeout: int | datetime.timedelta | None = None,
        v: str | None = None,
    ) -> T:
        return self._sync.invoke(step_id, function=function, data=data, timeout=timeout, v=v)

    async def invoke_by_id(
        self,
        step_id: str,
        *,
        app_id: str | None = None,
        function_id: str,
        data: Mapping[str, object] | None = None,
        timeout: int | datetime.timedelta | None = None,
        v: str | None = None,
    ) -> object:
        return self._sync.invoke_by_id(
            step_id, app_id=app_id, function_id=function_id, data=data, timeout=timeout, v=v
        )

    async def send_event(self, step_id: str, events: Event | list[Event]) -> list[str]:
        ids: list[str] = await self.run(step_id, self._client.send, events)
        return ids

    async def wait_for_signal(
        self,
        step_id: str,
        *,
        signal: str,
        timeout: int | datetime.timedelta,
        on_conflict: Literal["fail", "replace"] = "fail",
    ) -> dict[str, object] | None:
        return self._sync.wait_for_signal(
            step_id, signal=signal, timeout=timeout, on_conflict=on_conflict
        )


class GroupSync:
    """`ctx.group` for synchronous handlers."""

    def __init__(self, replay: StepReplay) -> None:
        self._replay = replay

    def parallel(
        self,
        callables: Iterable[Callable[[], T]],
        parallel_mode: ParallelMode = ParallelMode.WAIT,
    ) -> tuple[T, ...]:
        """Run the steps of `callables` in parallel (e.g. `lambda: ctx.step.run(...)`)."""
        outputs: list[T] = []
        with self._replay.parallel(parallel_mode) as group:
            for callable_ in callables:
                with group.item():
                    outputs.append(callable_())
        return tuple(outputs)


class Group:
    """`ctx.group` for `async def` handlers: `await ctx.group.parallel(...)`."""

    def __init__(self, replay: StepReplay) -> None:
        self._replay = replay

    async def parallel(
        self,
        callables: Iterable[Callable[[], Awaitable[T]]],
        parallel_mode: ParallelMode = ParallelMode.WAIT,
    ) -> tuple[T, ...]:
        outputs: list[T] = []
        with self._replay.parallel(parallel_mode) as group:
            for callable_ in callables:
                with group.item():
                    outputs.append(await callable_())
        return tuple(outputs)
