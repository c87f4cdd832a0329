"""The HTTP driver: call a function served by an official Inngest SDK app over HTTP.

One `call` is one POST to the URL the app registered (`?fnId=<slug>&stepId=step`), with
`stepId` set to the targeted step's hash or `step` (discovery). The body is the protocol's call
request (PROTOCOL.md 1.3, 8), sent JCS-canonical and, in production mode, signed. The reply is
turned into a `CallResult` (PROTOCOL.md 2, ENGINE.md 1.4):

    206  -> "ops"       opcodes, normalised (Sleep wake time into opts, WaitForEvent event ...)
    200  -> "complete"  the body is the function's return value
    201  -> unwrapped   streaming envelope {status, body, headers}; then as above
    4xx/5xx -> "error"  retriable unless `X-Inngest-No-Retry: true`; `Retry-After` honoured

Whatever goes wrong on the way (app down, timeout, a proxy's HTML page, a body over 4 MiB, a
bad signature, an opcode we do not know) comes back as a retriable "error" result with a
message naming the app URL: `call` never raises. `checkpoint` is not used: an SDK reports each
finished step as an op.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import cast

import httpx

from app.config import Settings
from app.drivers import signing
from app.drivers.base import CallRequest, CallResult, Checkpoint, Op, OpName
from app.durations import iso_ms, parse_duration_ms, parse_time_ms
from app.errors import BadRequest
from app.models import JSON

log = logging.getLogger("stepline.drivers.http")

DEFAULT_READ_TIMEOUT_S = 300.0
CONNECT_TIMEOUT_S = 10.0
MAX_CALL_S = 7200.0
"""A call never lasts longer than this, even if the app keeps streaming keepalive bytes."""
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
MAX_REQUEST_BYTES = 4 * 1024 * 1024
"""A call whose body would be larger is sent without events and steps, with `use_api`: the SDK
then fetches them from `/v0/runs/<id>/batch` and `/actions` (PROTOCOL.md 1.3)."""
MAX_OPS = 1000
REQUEST_VERSION = -1
"""Body `version`: -1 lets each SDK pick its preferred execution version (TS refuses 0;
Python ignores it). Go sends -1 until an SDK has announced one; every current SDK picks 2."""
MIN_RETRY_MS = 1_000
MAX_RETRY_MS = 86_400_000
_SNIPPET = 500

_OPS: dict[str, OpName | None] = {
    "steprun": "StepRun",
    "step": "StepRun",
    "steperror": "StepError",
    "stepfailed": "StepFailed",
    "stepplanned": "StepPlanned",
    "sleep": "Sleep",
    "waitforevent": "WaitForEvent",
    "invokefunction": "InvokeFunction",
    "none": None,
}
"""Opcode names, matched case-insensitively as Go does; `None` ops are dropped."""


class _Failure(Exception):
    """A call that produced no usable answer; becomes an error `CallResult`."""

    def __init__(self, code: str, message: str, *, retriable: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retriable = retriable

    def result(self) -> CallResult:
        error: dict[str, JSON] = {
            "name": "SteplineHttpError",
            "message": self.message,
            "stack": None,
            "code": self.code,
        }
        return CallResult("error", error=error, retriable=self.retriable)


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
            # Settings may grow an `http_timeout_seconds`; until then the default applies.
            configured = getattr(settings, "http_timeout_seconds", DEFAULT_READ_TIMEOUT_S)
            read_timeout_s = float(configured)
        self._timeout = httpx.Timeout(read_timeout_s, connect=CONNECT_TIMEOUT_S)
        self._clock = clock
        self._client: httpx.Client | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def call(self, request: CallRequest, checkpoint: Checkpoint) -> CallResult:
        try:
            return self._call(request)
        except Exception as exc:  # a bug here must not escape into the executor as a crash
            log.exception("HTTP driver failed function=%s", request.function.id)
            return _Failure("driver_error", f"HTTP driver error: {exc!r}").result()

    def _call(self, request: CallRequest) -> CallResult:
        registered = request.function.url
        if not registered:
            return _Failure(
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
            return _Failure(
                "unencodable", f"run state cannot be sent to {url}: {exc}", retriable=False
            ).result()
        try:
            status, headers, raw = self._post(url, body, self._headers(request, signed))
        except _Failure as failure:
            return failure.result()
        return interpret_response(
            url,
            status,
            headers,
            raw,
            now_ms=int(self._clock() * 1000),
            signing_keys=self._signing_keys(),
        )

    # --- transport ---------------------------------------------------------------------

    def _signing_keys(self) -> list[str]:
        """Keys a reply may be signed with: ours, and while rotating the fallback (an app
        still on the old key signs with it)."""
        if not self._settings.signing_key:
            return []
        return [self._settings.signing_key, self._settings.signing_key_fallback or ""]

    def _headers(self, request: CallRequest, signed: bytes) -> dict[str, str]:
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
            headers[signing.SIGNATURE_HEADER] = signing.sign(signed, key, int(self._clock()))
        return headers

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                # After a fork the parent's pooled connections are not ours to use or close.
                self._client = httpx.Client(timeout=self._timeout, follow_redirects=False)
                self._pid = os.getpid()
            return self._client

    def _post(
        self, url: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        deadline = time.monotonic() + MAX_CALL_S
        try:
            with self._http().stream("POST", url, content=body, headers=headers) as response:
                resp_headers = {k.lower(): v for k, v in response.headers.items()}
                declared = resp_headers.get("content-length", "")
                if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
                    raise _too_large(url, response.status_code)
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > MAX_RESPONSE_BYTES:
                        raise _too_large(url, response.status_code)
                    if time.monotonic() > deadline:
                        raise _Failure("timeout", f"app at {url} took over {MAX_CALL_S:.0f} s")
                    chunks.append(chunk)
                return response.status_code, resp_headers, b"".join(chunks)
        except httpx.TimeoutException as exc:
            raise _Failure(
                "timeout", f"app at {url} did not answer in time ({type(exc).__name__})"
            ) from exc
        except httpx.ConnectError as exc:
            raise _Failure("unreachable", f"app at {url} is unreachable: {exc}") from exc
        except httpx.HTTPError as exc:
            raise _Failure(
                "transport_error", f"call to app at {url} failed ({type(exc).__name__}): {exc}"
            ) from exc


def _too_large(url: str, status: int) -> _Failure:
    return _Failure(
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

    No `ctx.fn_id`: it would switch the TS SDK into checkpointing. `events` is never empty:
    the Python SDK fails without it, unless `use_api` tells it to fetch events and steps from
    the API (done when the run's state is too large to send).
    """
    events = [] if use_api else (request.events or [request.event])
    step = request.target or "step"
    return {
        "version": REQUEST_VERSION,
        "event": _wire_event(request.event),
        "events": [_wire_event(event) for event in events],
        "steps": {} if use_api else request.steps,
        "ctx": {
            "run_id": request.run_id,
            "attempt": request.attempt,
            "max_attempts": request.max_attempts,
            "disable_immediate_execution": request.disable_immediate_execution,
            "use_api": use_api,
            "stack": {"stack": list(request.stack), "current": len(request.stack)},
            "step_id": step,
        },
        "use_api": use_api,
    }


# --- response --------------------------------------------------------------------------


def interpret_response(
    url: str,
    status: int,
    headers: Mapping[str, str],
    raw: bytes,
    *,
    now_ms: int,
    signing_keys: list[str],
) -> CallResult:
    """Turn an app's reply into a `CallResult`; unusable replies become retriable errors."""
    try:
        return _interpret(url, status, headers, raw, now_ms, signing_keys)
    except _Failure as failure:
        return failure.result()


def _interpret(
    url: str,
    status: int,
    headers: Mapping[str, str],
    raw: bytes,
    now_ms: int,
    signing_keys: list[str],
) -> CallResult:
    headers = {k.lower(): v for k, v in headers.items()}
    if not any(key.startswith("x-inngest-") for key in headers):
        raise _Failure(
            "not_sdk",
            f"app at {url} returned HTTP {status} (not an Inngest SDK response): {_snippet(raw)}",
        )
    if status == 201:
        status, headers, raw = _unwrap_stream(url, headers, raw)
    if signing_keys:
        if status == 401:
            raise _Failure(
                "unauthorized",
                f"app at {url} refused our signature (HTTP 401): its INNGEST_SIGNING_KEY must "
                f"match STEPLINE_SIGNING_KEY; it said: {_snippet(raw)}",
            )
        if not signing.verify(raw, headers.get("x-inngest-signature"), signing_keys):
            raise _Failure(
                "signature_invalid",
                f"app at {url} returned HTTP {status} without a valid X-Inngest-Signature "
                "(is it running in production mode with the same signing key?)",
            )
    no_retry = headers.get("x-inngest-no-retry", "").strip().lower() == "true"
    retry_at = parse_retry_after(headers.get("retry-after"), now_ms)
    if status == 206:
        return _ops_result(url, _json(url, status, raw), no_retry, retry_at)
    if 200 <= status < 300:
        return CallResult("complete", output=_json(url, status, raw) if raw.strip() else None)
    retriable = headers.get("x-inngest-no-retry", "").strip().lower() != "true"
    return CallResult(
        "error",
        error=_error_body(url, status, raw),
        retriable=retriable,
        retry_at_ms=retry_at,
    )


def _snippet(raw: bytes) -> str:
    text = raw[: _SNIPPET * 4].decode("utf-8", errors="replace").strip()
    return text[:_SNIPPET] or "(empty body)"


def _json(url: str, status: int, raw: bytes) -> JSON:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise _Failure(
            "invalid_response",
            f"app at {url} returned HTTP {status} with a body that is not JSON: {_snippet(raw)}",
        ) from exc


def _unwrap_stream(
    url: str, headers: dict[str, str], raw: bytes
) -> tuple[int, dict[str, str], bytes]:
    """A 201 streaming envelope `{status, body, headers}` after keepalive spaces."""
    envelope = _json(url, 201, raw.strip())
    if not isinstance(envelope, dict) or not isinstance(envelope.get("status"), int):
        raise _Failure("invalid_response", f"app at {url} sent a malformed streaming envelope")
    if envelope.get("error"):
        raise _Failure("stream_error", f"app at {url} reported: {envelope['error']}")
    inner = envelope.get("body")
    body = inner.encode("utf-8") if isinstance(inner, str) else json.dumps(inner).encode("utf-8")
    merged = dict(headers)
    merged.pop("x-inngest-signature", None)
    extra = envelope.get("headers")
    if isinstance(extra, dict):
        merged.update({str(k).lower(): str(v) for k, v in extra.items()})
    if envelope.get("noRetry") is True:
        merged["x-inngest-no-retry"] = "true"
    status = int(envelope["status"])
    if status == 201:
        raise _Failure("invalid_response", f"app at {url} sent a nested streaming envelope")
    return status, merged, body


def parse_retry_after(value: str | None, now_ms: int) -> int | None:
    """`Retry-After` as an absolute time (ms), clamped to [now + 1 s, now + 24 h].

    Integer seconds (up to 7 characters, as Go reads it) or a date: ISO-8601 (Python SDK) or
    RFC 1123 (HTTP). Unparseable values are ignored.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    at: int | None = None
    if len(text) <= 7 and text.lstrip("-").isdigit():
        at = now_ms + int(text) * 1000
    else:
        try:
            at = parse_time_ms(text)
        except BadRequest:
            try:
                at = int(email.utils.parsedate_to_datetime(text).timestamp() * 1000)
            except (TypeError, ValueError):
                return None
    return min(max(at, now_ms + MIN_RETRY_MS), now_ms + MAX_RETRY_MS)


def _error_body(url: str, status: int, raw: bytes) -> dict[str, JSON]:
    try:
        parsed: JSON = json.loads(raw) if raw.strip() else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and (parsed.get("message") or parsed.get("name")):
        stack = parsed.get("stack")
        return {
            "name": str(parsed.get("name") or "Error"),
            "message": str(parsed.get("message") or ""),
            "stack": stack if isinstance(stack, str) else None,
        }
    return {
        "name": "Error",
        "message": f"app at {url} returned HTTP {status}: {_snippet(raw)}",
        "stack": None,
    }


def _ops_result(url: str, body: JSON, no_retry: bool, retry_at: int | None) -> CallResult:
    items = body if isinstance(body, list) else [body]
    if len(items) > MAX_OPS:
        raise _Failure(
            "too_many_ops", f"app at {url} reported {len(items)} ops at once", retriable=False
        )
    ops: list[Op] = []
    for item in items:
        if not isinstance(item, dict):
            raise _Failure("invalid_response", f"app at {url} sent an op that is not an object")
        kind = str(item.get("op", ""))
        if kind.lower() == "runcomplete":
            # Only checkpointing SDKs send it (we never ask for that), but it means what it says.
            return CallResult("complete", output=item.get("data"))
        op = _op(url, item, no_retry, retry_at)
        if op is not None:
            ops.append(op)
    return CallResult("ops", ops=ops)


def _op(url: str, item: dict[str, JSON], no_retry: bool, retry_at: int | None) -> Op | None:
    raw_kind = str(item.get("op", ""))
    if raw_kind.lower() not in _OPS:
        raise _Failure(
            "unknown_opcode",
            f"app at {url} reported opcode {raw_kind!r}, which Stepline does not support",
        )
    kind = _OPS[raw_kind.lower()]
    if kind is None:
        return None
    step_id = item.get("id")
    if not isinstance(step_id, str) or not step_id:
        raise _Failure("invalid_response", f"app at {url} sent a {kind} op without an id")
    opts_in = item.get("opts")
    opts: dict[str, JSON] = dict(opts_in) if isinstance(opts_in, dict) else {}
    userland = item.get("userland")
    user_id = userland.get("id") if isinstance(userland, dict) else None
    # Sleep and WaitForEvent carry data in `name` (a time, an event name): never a label.
    label_sources = [item.get("displayName"), user_id]
    if kind not in ("Sleep", "WaitForEvent"):
        label_sources.insert(1, item.get("name"))
    name = next((str(s) for s in label_sources if isinstance(s, str) and s), step_id)
    op = Op(kind, step_id, name, opts=opts, data=item.get("data"))
    if kind == "Sleep":
        _sleep_opts(url, item, opts)
    elif kind == "WaitForEvent":
        event = opts.get("event") or item.get("name")
        if not isinstance(event, str) or not event:
            raise _Failure("invalid_response", f"app at {url} sent a WaitForEvent without event")
        opts["event"] = event
        opts.setdefault("if", None)
        opts.setdefault("timeout", None)
    elif kind in ("StepError", "StepFailed"):
        error = item.get("error")
        op.error = (
            cast(dict[str, JSON], error)
            if isinstance(error, dict)
            else {
                "name": "Error",
                "message": f"step {name!r} failed",
                "stack": None,
            }
        )
        op.data = None
        op.no_retry = no_retry or kind == "StepFailed"
        op.retry_at_ms = retry_at
    return op


def _sleep_opts(url: str, item: dict[str, JSON], opts: dict[str, JSON]) -> None:
    """Sleep's wake-up into `opts["until"]` (ISO) or `opts["duration"]` (duration string).

    Python sends an ISO time in `name`, TS a duration ("2s") in `name`; Go-era SDKs sent
    `opts.duration` holding either form.
    """
    if isinstance(opts.get("until"), str):
        return
    raw = opts.pop("duration", None) or item.get("name")
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        opts["duration"] = f"{int(raw * 1000)}ms"
        return
    if isinstance(raw, str) and raw.strip():
        try:
            parse_duration_ms(raw)
            opts["duration"] = raw.strip()
            return
        except BadRequest:
            pass
        try:
            opts["until"] = iso_ms(parse_time_ms(raw))
            return
        except (BadRequest, OverflowError, OSError):
            pass
    raise _Failure("invalid_response", f"app at {url} sent a Sleep without a usable time: {raw!r}")
