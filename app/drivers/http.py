"""The HTTP driver: call a function served by an official Inngest SDK app over HTTP.

One `call` is one POST to the URL the app registered (`?fnId=<slug>&stepId=step`), with
`stepId` set to the targeted step's hash or `step` (discovery). The body is the protocol's call
request (PROTOCOL.md 1.3, 8), sent JCS-canonical and, in production mode, signed. The reply is
turned into a `CallResult` by `app.drivers.http_reply` (PROTOCOL.md 2, ENGINE.md 1.4).

Whatever goes wrong on the way (app down, timeout, a proxy's HTML page, a body over 4 MiB, a
bad signature, an opcode we do not know) comes back as a retriable "error" result with a
message naming the app URL: `call` never raises. `checkpoint` is not used: an SDK reports each
finished step as an op.

Connections go through the outbound address policy (`app.netpolicy`): each new connection
resolves the app's host once, refuses link-local addresses (and, in production mode, private
and loopback ones not in STEPLINE_ALLOWED_APP_HOSTS) before connecting, and connects to the
address it checked. Redirects are not followed; proxy variables are ignored.
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections.abc import Callable, Mapping

import httpx

from app import tracing
from app.config import Settings
from app.deadline import call_deadline
from app.drivers import signing
from app.drivers.base import CallRequest, CallResult, Checkpoint
from app.drivers.http_reply import (
    MAX_OPS,
    MAX_RETRY_MS,
    MIN_RETRY_MS,
    CallFailure,
    interpret_response,
    parse_retry_after,
)
from app.models import JSON
from app.netpolicy import (
    AddressPolicy,
    AddressRefused,
    AddressUnresolved,
    ProcessClient,
    read_capped,
)

log = logging.getLogger("stepline.drivers.http")

DEFAULT_READ_TIMEOUT_S = 300.0
CONNECT_TIMEOUT_S = 10.0
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
MAX_REQUEST_BYTES = 4 * 1024 * 1024
"""A call whose body would be larger is sent without events and steps, with `use_api`: the SDK
then fetches them from `/v0/runs/<id>/batch` and `/actions` (PROTOCOL.md 1.3)."""
REQUEST_VERSION = -1
"""Body `version`: -1 lets each SDK pick its preferred execution version (TS refuses 0;
Python ignores it). Go sends -1 until an SDK has announced one; every current SDK picks 2."""

__all__ = [
    "CONNECT_TIMEOUT_S",
    "DEFAULT_READ_TIMEOUT_S",
    "MAX_OPS",
    "MAX_REQUEST_BYTES",
    "MAX_RESPONSE_BYTES",
    "MAX_RETRY_MS",
    "MIN_RETRY_MS",
    "REQUEST_VERSION",
    "HttpDriver",
    "interpret_response",
    "parse_retry_after",
    "request_body",
    "step_url",
]


class HttpDriver:
    """Implements `Driver` for functions registered by SDK apps (`FunctionConfig.driver="http"`).

    One pooled `httpx.Client` per process (re-created after a fork, since Celery's prefork pool
    forks after the engine is built).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        read_timeout_s: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        if read_timeout_s is None:
            read_timeout_s = settings.http_timeout_seconds
        self._timeout = httpx.Timeout(read_timeout_s, connect=CONNECT_TIMEOUT_S)
        self._deadline_s = settings.http_call_deadline_seconds
        """The most one call may take in total (`app.deadline`), however the app paces it."""
        self._clock = clock
        self._client = ProcessClient(AddressPolicy.for_apps(settings), self._timeout)

    def close(self) -> None:
        self._client.close()

    def call(self, request: CallRequest, checkpoint: Checkpoint) -> CallResult:
        try:
            return self._call(request)
        except Exception as exc:  # a bug here must not escape into the executor as a crash
            log.exception("HTTP driver failed function=%s", request.function.id)
            return CallFailure("driver_error", f"HTTP driver error: {exc!r}").result()

    def _call(self, request: CallRequest) -> CallResult:
        registered = request.function.url
        if not registered:
            return CallFailure(
                "no_url",
                f"function {request.function.id!r} has no URL: sync its app again",
                retriable=False,
            ).result()
        url = step_url(registered, request.target or "step")
        signed_mode = bool(self._settings.signing_key)
        try:
            body, signed = signing.request_json(request_body(request), signed=signed_mode)
            if len(body) > MAX_REQUEST_BYTES:
                body, signed = signing.request_json(
                    request_body(request, use_api=True), signed=signed_mode
                )
        except ValueError as exc:
            # The run's state will not change by retrying: fail the run with the reason.
            return CallFailure(
                "unencodable", f"run state cannot be sent to {url}: {exc}", retriable=False
            ).result()
        sent_s = int(self._clock())
        try:
            status, headers, raw = self._post(url, body, self._headers(request, signed, sent_s))
        except CallFailure as failure:
            return failure.result()
        return interpret_response(
            url,
            status,
            headers,
            raw,
            now_ms=int(self._clock() * 1000),
            signing_keys=self._signing_keys(),
            sent_ms=sent_s * 1000,
        )

    # --- transport ---------------------------------------------------------------------

    def _signing_keys(self) -> list[str]:
        """Keys a reply may be signed with: ours, and while rotating the fallback (an app
        still on the old key signs with it)."""
        if not self._settings.signing_key:
            return []
        return [self._settings.signing_key, self._settings.signing_key_fallback or ""]

    def _headers(self, request: CallRequest, signed: bytes, now_s: int) -> dict[str, str]:
        """`signed`: the body's JCS form, which the SDKs check the signature over."""
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "stepline",
            "X-Inngest-Server-Kind": signing.server_kind(self._settings.signing_key),
            "X-Inngest-Req-Version": str(REQUEST_VERSION),
            "X-Run-ID": request.run_id,
            "X-Inngest-Step-ID": request.target or "step",
        }
        key = self._settings.signing_key
        if key:
            headers[signing.SIGNATURE_HEADER] = signing.sign(signed, key, now_s)
        tracing.inject(headers)  # traceparent: the call's span, when tracing is on
        return headers

    def _post(
        self, url: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        started = time.monotonic()
        try:
            with (
                call_deadline(self._deadline_s),
                self._client.get().stream("POST", url, content=body, headers=headers) as response,
            ):
                resp_headers = {k.lower(): v for k, v in response.headers.items()}
                declared = resp_headers.get("content-length", "")
                if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
                    raise _too_large(url, response.status_code)
                content = read_capped(response, MAX_RESPONSE_BYTES)
                if content is None:
                    raise _too_large(url, response.status_code)
                return response.status_code, resp_headers, content
        except AddressRefused as exc:
            raise CallFailure("address_refused", f"app at {url} not called: {exc.message}") from exc
        except AddressUnresolved as exc:
            raise CallFailure("unreachable", f"app at {url} is unreachable: {exc.message}") from exc
        except httpx.TimeoutException as exc:
            if time.monotonic() - started >= self._deadline_s:
                raise CallFailure(
                    "timeout",
                    f"app at {url} did not finish its answer within the call deadline of "
                    f"{self._deadline_s:g} s (STEPLINE_HTTP_CALL_DEADLINE_SECONDS)",
                ) from exc
            raise CallFailure(
                "timeout", f"app at {url} did not answer in time ({type(exc).__name__})"
            ) from exc
        except httpx.ConnectError as exc:
            raise CallFailure("unreachable", f"app at {url} is unreachable: {exc}") from exc
        except httpx.HTTPError as exc:
            raise CallFailure(
                "transport_error", f"call to app at {url} failed ({type(exc).__name__}): {exc}"
            ) from exc


def _too_large(url: str, status: int) -> CallFailure:
    return CallFailure(
        "output_too_large",
        f"app at {url} returned HTTP {status} with a body over {MAX_RESPONSE_BYTES} bytes",
    )


# --- request ---------------------------------------------------------------------------


def step_url(registered: str, step: str) -> str:
    """The registered URL with `stepId` set to `step` (added if absent); `fnId` untouched."""
    parts = urllib.parse.urlsplit(registered)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    replaced = [(k, step if k == "stepId" else v) for k, v in query]
    if not any(k == "stepId" for k, _ in query):
        replaced.append(("stepId", step))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(replaced)))


def _wire_event(event: Mapping[str, JSON]) -> dict[str, JSON]:
    out = dict(event)
    if not isinstance(out.get("data"), dict):
        out["data"] = {}
    if not isinstance(out.get("user"), dict):
        out["user"] = {}
    return out


def request_body(request: CallRequest, *, use_api: bool = False) -> dict[str, JSON]:
    """The call request body both SDKs accept (PROTOCOL.md 8).

    `ctx.fn_id` and `ctx.qi_id` only with `request.checkpoint_id`: they switch the TS SDK into
    checkpointing (PROTOCOL.md 10.2), where it runs steps on and reports each one to
    `/v1/checkpoint/<run>/async` (`app.checkpoint`). `events` is never empty:
    the Python SDK fails without it, unless `use_api` tells it to fetch events and steps from
    the API (done when the run's state is too large to send).
    """
    events = [] if use_api else (request.events or [request.event])
    step = request.target or "step"
    ctx: dict[str, JSON] = {
        "run_id": request.run_id,
        "attempt": request.attempt,
        "max_attempts": request.max_attempts,
        "disable_immediate_execution": request.disable_immediate_execution,
        "use_api": use_api,
        "stack": {"stack": list(request.stack), "current": len(request.stack)},
        "step_id": step,
    }
    if request.checkpoint_id:
        ctx["fn_id"] = request.function.id
        ctx["qi_id"] = request.checkpoint_id
    return {
        "version": REQUEST_VERSION,
        "event": _wire_event(request.event),
        "events": [_wire_event(event) for event in events],
        "steps": {} if use_api else request.steps,
        "ctx": ctx,
        "use_api": use_api,
    }
