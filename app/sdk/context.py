"""What a handler receives: `ContextSync` for `def` handlers, `Context` for `async def` ones."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

from app.sdk.event import Event
from app.sdk.steps import Group, GroupSync, Step, StepSync

T = TypeVar("T")

Logger: TypeAlias = logging.Logger | logging.LoggerAdapter[Any]


@dataclass
class Context:
    """Async execution context. `attempt` is 0-based; `events` holds the whole batch."""

    attempt: int
    event: Event
    events: list[Event]
    group: Group
    job_id: str | None
    logger: Logger
    request_id: str | None
    run_id: str
    step: Step


@dataclass
class ContextSync:
    """Sync execution context. `attempt` is 0-based; `events` holds the whole batch."""

    attempt: int
    event: Event
    events: list[Event]
    group: GroupSync
    job_id: str | None
    logger: Logger
    request_id: str | None
    run_id: str
    step: StepSync


FunctionHandlerSync: TypeAlias = Callable[[ContextSync], T]
FunctionHandlerAsync: TypeAlias = Callable[[Context], Awaitable[T]]
