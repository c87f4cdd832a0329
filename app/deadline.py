"""A total deadline for an outbound HTTP call, however the other side paces its bytes.

httpx's timeouts bound each socket operation (connect, one read, one write), not a call: an app
that sends one byte every 299 s keeps a 300 s read timeout happy for ever. Within
`with call_deadline(seconds):`, every socket operation of connections made through
`app.netpolicy`'s transport waits at most the time left until the deadline, and fails with
httpcore's timeout error once it has passed, so the call ends at its deadline, give or take
one scheduler tick:

    with call_deadline(900):
        client.post(url, ...)      # raises httpx.TimeoutException at the latest after 900 s

The deadline lives in a context variable, so pooled connections reused by later calls (or by
other threads) follow each call's own deadline; outside any `call_deadline` nothing changes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import httpcore

WRITE_PIECE = 64 * 1024
DEADLINE_PASSED = "the call's total deadline passed"
"""The message of the timeout error raised once the deadline has passed."""

_deadline: ContextVar[float | None] = ContextVar("stepline_call_deadline", default=None)


@contextmanager
def call_deadline(seconds: float) -> Iterator[float]:
    """Bound every socket operation inside to `seconds` from now in total; yields the
    deadline (`time.monotonic()` clock)."""
    deadline = time.monotonic() + seconds
    token = _deadline.set(deadline)
    try:
        yield deadline
    finally:
        _deadline.reset(token)


def passed() -> bool:
    """Whether the current call's deadline has passed (False outside `call_deadline`)."""
    deadline = _deadline.get()
    return deadline is not None and time.monotonic() >= deadline


def bounded(timeout: float | None, error: type[Exception]) -> float | None:
    """`timeout` cut to the time left before the deadline; raises `error` once it passed."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise error(DEADLINE_PASSED)
    return left if timeout is None else min(timeout, left)


class DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every read and write honours the current call's deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        # In pieces: the inner stream waits up to `timeout` for each send of a large buffer.
        for start in range(0, len(buffer), WRITE_PIECE):
            piece = buffer[start : start + WRITE_PIECE]
            self._inner.write(piece, bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        wait = bounded(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, wait))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)
