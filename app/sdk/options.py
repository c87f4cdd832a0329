"""Triggers and flow-control options, with the official SDK's field names.

Each model knows its registration JSON key (PROTOCOL.md 3.2) and which of its fields are
durations; `Function` turns them into `FunctionConfig.options` and checks them there, so an
error can name the function and the field.
"""

from __future__ import annotations

import datetime
import enum
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

Duration = int | datetime.timedelta
"""Milliseconds, or a timedelta, as in the official SDK."""


class _Option(BaseModel):
    # strict: an int is milliseconds, never coerced from a float or a string.
    model_config = ConfigDict(strict=True, extra="forbid")

    durations: ClassVar[tuple[str, ...]] = ()
    """Fields holding a `Duration`, registered as strings such as "10s" or "2m"."""


class TriggerEvent(_Option):
    event: str
    expression: str | None = None


class TriggerCron(_Option):
    cron: str
    jitter: str | None = None


class Batch(_Option):
    durations = ("timeout",)
    max_size: int = Field(serialization_alias="maxSize")
    timeout: Duration | None = None
    key: str | None = None
    if_exp: str | None = Field(default=None, serialization_alias="if")


class Cancel(_Option):
    durations = ("timeout",)
    event: str
    if_exp: str | None = Field(default=None, serialization_alias="if")
    timeout: Duration | None = None


class Concurrency(_Option):
    key: str | None = None
    limit: int
    scope: Literal["account", "env", "fn"] | None = None


class Debounce(_Option):
    durations = ("period", "timeout")
    key: str | None = None
    period: Duration
    timeout: Duration | None = None


class Priority(_Option):
    run: str


class RateLimit(_Option):
    durations = ("period",)
    key: str | None = None
    limit: int
    period: Duration


class Throttle(_Option):
    durations = ("period",)
    key: str | None = None
    limit: int
    period: Duration
    burst: int | None = 1


class Timeouts(_Option):
    durations = ("start", "finish")
    start: Duration | None = None
    finish: Duration | None = None


class Singleton(_Option):
    key: str | None = None
    mode: Literal["skip", "cancel"]


class ParallelMode(enum.Enum):
    """How `group.parallel` resumes: after every item (WAIT) or after the first (RACE)."""

    WAIT = "wait"
    RACE = "race"


def duration_ms(value: Duration) -> int:
    if isinstance(value, datetime.timedelta):
        return round(value.total_seconds() * 1000)
    return value


def duration_str(ms: int) -> str:
    """Whole seconds as the registration JSON writes them: the largest exact unit ("2m")."""
    seconds = ms // 1000
    for unit, suffix in ((604_800, "w"), (86_400, "d"), (3_600, "h"), (60, "m")):
        if seconds % unit == 0:
            return f"{seconds // unit}{suffix}"
    return f"{seconds}s"
