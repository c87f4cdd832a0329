"""The Connect driver: call a function served by an SDK worker connected over WebSocket.

Apps that dial out to Stepline (`inngest.connect` in Python, `connect()` in TypeScript) hold a
WebSocket to a gateway process (`app.gateway`). One `call` here, in an executor (a Celery
worker), is:

    submit(request, lease) ──► Redis queue of the app ──► a gateway claims it for a worker
    wait_reply (BLPOP) ◄─────── reply stored by the gateway (or by POST /v0/connect/flush)

The request body is the HTTP driver's (`request_body`), and the worker's reply is read by the
same code as an HTTP reply (`interpret_response`), so both transports behave alike. The driver
waits while the worker renews its lease; if the lease runs out unanswered (the worker crashed,
or no worker of the app took the call), the call fails retriably and the executor retries the
step with backoff. Request ids are deterministic per call (run, steps done, target, attempt),
so a redelivered executor job gets the first submission's reply instead of a second run of the
step. `call` never raises. The channel (`app.state.connect.ConnectStore`) is handed in: drivers
never touch Redis themselves.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from typing import Protocol

from ulid import ULID

from app.config import Settings
from app.drivers.base import CallRequest, CallResult, Checkpoint
from app.drivers.http import MAX_REQUEST_BYTES, request_body
from app.drivers.http_reply import interpret_response
from app.models import JSON, ConnectReply, ConnectRequest

log = logging.getLogger("stepline.drivers.connect")

POLL_S = 1.0
"""How long one wait for the reply blocks before the lease is looked at again."""
STATUS_CODES = {"done": 200, "not_completed": 206, "error": 500}
"""SDKResponse statuses as the HTTP statuses they stand for (the SDKs map them so)."""
NON_RETRIABLE_STATUS = 400
"""The TS SDK answers a NonRetriableError with HTTP 400, which its Connect code leaves as
status DONE (it maps only 200, 206 and 500) with `no_retry`: a DONE that says "do not retry"
is that failure, never a result."""


class Submission(Protocol):
    @property
    def state(self) -> str: ...

    @property
    def reply(self) -> ConnectReply | None: ...


class Status(Protocol):
    @property
    def lease_until(self) -> int: ...

    @property
    def claimed_by(self) -> str: ...

    @property
    def reply(self) -> ConnectReply | None: ...


class ConnectChannel(Protocol):
    """What the driver needs of the state (implemented by `app.state.connect.ConnectStore`)."""

    def submit(
        self, request: ConnectRequest, lease_id: str, now: int, lease_ms: int
    ) -> Submission: ...

    def wait_reply(self, request_id: str, timeout_s: float) -> ConnectReply | None: ...

    def status(self, request_id: str) -> Status | None: ...


def lease_ms(settings: Settings) -> int:
    return int(settings.connect_lease_seconds * 1000)


def grace_ms(settings: Settings) -> int:
    """How long after a lease ran out a reply is still waited for (one renewal interval)."""
    return max(1000, lease_ms(settings) // 4)


def request_id(request: CallRequest) -> str:
    """The same for the same call: run, function, target, attempt and steps done."""
    key = [
        request.run_id,
        request.function.id,
        request.target or "step",
        request.attempt,
        request.disable_immediate_execution,
        request.stack,
    ]
    return hashlib.sha1(json.dumps(key).encode("utf-8")).hexdigest()


class ConnectDriver:
    """Implements `Driver` for functions of Connect apps (`FunctionConfig.driver="connect"`)."""

    def __init__(
        self,
        channel: ConnectChannel,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        poll_s: float = POLL_S,
    ) -> None:
        self._channel = channel
        self._settings = settings
        self._clock = clock
        self._poll_s = poll_s

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def call(self, request: CallRequest, checkpoint: Checkpoint) -> CallResult:
        try:
            return self._call(request)
        except Exception as exc:  # a bug or an outage here must not crash the executor
            log.exception("Connect driver failed function=%s", request.function.id)
            return _failure("driver_error", f"Connect driver error: {exc!r}")

    def _call(self, request: CallRequest) -> CallResult:
        app = request.function.app_id
        payload = json.dumps(request_body(request), separators=(",", ":"))
        if len(payload) > MAX_REQUEST_BYTES:  # the SDK fetches events and steps from /v0/runs
            payload = json.dumps(request_body(request, use_api=True), separators=(",", ":"))
        outgoing = ConnectRequest(
            request_id=request_id(request),
            app_id=app,
            function_slug=request.function.id,
            step_id=request.target or "step",
            run_id=request.run_id,
            payload=payload,
        )
        lease = lease_ms(self._settings)
        submitted = self._channel.submit(outgoing, str(ULID()), self._now_ms(), lease)
        if submitted.reply is not None:
            return self._result(app, submitted.reply)
        deadline = time.monotonic() + self._settings.http_timeout_seconds
        while True:
            reply = self._channel.wait_reply(outgoing.request_id, self._poll_s)
            if reply is not None:
                return self._result(app, reply)
            status = self._channel.status(outgoing.request_id)
            if status is None:
                return _failure("request_lost", f"the call to Connect app {app!r} expired")
            if status.reply is not None:  # another executor waiting on it took the wake-up
                return self._result(app, status.reply)
            if self._now_ms() > status.lease_until + grace_ms(self._settings):
                return _lease_lost(app, status.claimed_by, lease)
            if time.monotonic() > deadline:
                return _failure(
                    "timeout",
                    f"Connect worker {status.claimed_by} of app {app!r} did not answer within "
                    f"{self._settings.http_timeout_seconds:.0f} s",
                )

    def _result(self, app: str, reply: ConnectReply) -> CallResult:
        headers = {
            "x-inngest-sdk": reply.sdk_version or "connect",
            "x-inngest-no-retry": "true" if reply.no_retry else "false",
        }
        if reply.retry_after:
            headers["retry-after"] = reply.retry_after
        status = STATUS_CODES[reply.status]
        if reply.status == "done" and reply.no_retry:
            status = NON_RETRIABLE_STATUS
        return interpret_response(
            f"connect:{app}",
            status,
            headers,
            reply.body.encode("utf-8"),
            now_ms=self._now_ms(),
            signing_keys=[],  # the WebSocket is authenticated; replies carry no signature
        )


def _failure(code: str, message: str) -> CallResult:
    error: dict[str, JSON] = {
        "name": "SteplineConnectError",
        "message": message,
        "stack": None,
        "code": code,
    }
    return CallResult("error", error=error, retriable=True)


def _lease_lost(app: str, worker: str, lease: int) -> CallResult:
    if not worker:
        return _failure(
            "no_worker",
            f"no worker of Connect app {app!r} took the call within {lease / 1000:.0f} s: is "
            "one connected to the gateway? The step is retried.",
        )
    return _failure(
        "worker_lost",
        f"Connect worker {worker} of app {app!r} stopped renewing its lease on the call (it "
        "crashed or lost its connection); the step is retried.",
    )
