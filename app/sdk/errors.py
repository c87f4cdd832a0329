"""Errors user code raises (or meets) inside a function, named as the official SDK names them.

    Error
    ├── NonRetriableError   raise it to fail the run now, without retries
    ├── RetryAfterError     raise it to retry no earlier than `retry_after`
    ├── StepError           a memoized step failed for good; raised where the step is called
    └── SendEventsError     sending events failed (`ids` holds those that were accepted)

Raised from a `step.run` body, NonRetriableError and RetryAfterError act on the whole function
(as in the official SDK); any other exception there is a step error, retried step by step.
"""

from __future__ import annotations

import datetime
import traceback

from app.models import JSON


class Error(Exception):
    """Base of the SDK's errors."""

    is_retriable: bool = True

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message if message is not None else "")

    @property
    def message(self) -> str:
        return str(self)

    @property
    def name(self) -> str:
        return type(self).__name__


class NonRetriableError(Error):
    """Fail the run at once: no further attempts."""

    is_retriable = False

    def __init__(self, message: str | None = None, quiet: bool = False) -> None:
        super().__init__(message)
        self.quiet = quiet


class RetryAfterError(Error):
    """Retry the run, but not before `retry_after` (ms from now, a timedelta, or a datetime)."""

    def __init__(
        self,
        message: str | None,
        retry_after: int | datetime.timedelta | datetime.datetime,
        quiet: bool = False,
    ) -> None:
        super().__init__(message)
        now = datetime.datetime.now(datetime.UTC)
        if isinstance(retry_after, datetime.datetime):
            at = retry_after
        elif isinstance(retry_after, datetime.timedelta):
            at = now + retry_after
        else:
            at = now + datetime.timedelta(milliseconds=retry_after)
        self.retry_after: datetime.datetime = at
        self.quiet = quiet

    @property
    def retry_at_ms(self) -> int:
        """The retry time in ms since the epoch (a naive datetime is taken as local time)."""
        return int(self.retry_after.timestamp() * 1000)


class StepError(Error):
    """A step failed after its last attempt; carries the original error's name, message, stack.

    Raised inside user code where the step is called, so it can be caught. Uncaught, it fails
    the run without retry.
    """

    is_retriable = False

    def __init__(self, message: str, name: str, stack: str | None) -> None:
        super().__init__(message)
        self._message = message
        self._name = name
        self._stack = stack

    @property
    def message(self) -> str:
        return self._message

    @property
    def name(self) -> str:
        return self._name

    @property
    def stack(self) -> str | None:
        return self._stack


class SendEventsError(Error):
    """Sending events failed; `ids` lists the events accepted before the failure."""

    def __init__(self, message: str, ids: list[str]) -> None:
        super().__init__(message)
        self.ids = ids


class SendSignalError(Error):
    """Sending a signal failed (not "no run is waiting", which `send_signal` answers None)."""


def error_json(err: BaseException) -> dict[str, JSON]:
    """`{name, message, stack}` of an error, as memoized and reported to the executor."""
    if isinstance(err, StepError):
        return {"name": err.name, "message": err.message, "stack": err.stack}
    stack = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    return {"name": type(err).__name__, "message": str(err), "stack": stack}
