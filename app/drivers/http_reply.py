"""The HTTP driver's reply side: an SDK app's answer turned into a `CallResult`.

How each reply maps (PROTOCOL.md 2, ENGINE.md 1.4):

    206  -> "ops"       opcodes, normalised (Sleep wake time into opts, WaitForEvent event ...)
    200  -> "complete"  the body is the function's return value
    201  -> unwrapped   streaming envelope {status, body, headers}; then as above
    4xx/5xx -> "error"  retriable unless `X-Inngest-No-Retry: true`; `Retry-After` honoured

A reply that cannot be used (a proxy's HTML page, a bad, stale or replayed signature) becomes a
`CallFailure`, which `interpret_response` turns into a retriable error result. Error messages
quote a reply's body only as a short `excerpt`: an app URL may lead to a service that is not an
SDK, and its answers must not surface in run history. An opcode Stepline does not implement
(`DeferAdd`, any name it does not know), wherever it sits in a 206 array, fails the run at once
(`app.drivers.base.unsupported_op`). `RunComplete` (checkpointing SDKs) ends the run with its
`data`, after the steps reported before it in the same array.
"""

from __future__ import annotations

import email.utils
import json
import re
from collections.abc import Mapping
from typing import cast

from app import strictjson
from app.drivers import signing
from app.drivers.base import CallResult, Op, OpName, unsupported_op
from app.durations import iso_ms, parse_duration_ms, parse_time_ms
from app.errors import BadRequest
from app.models import JSON

MAX_OPS = 1000
MIN_RETRY_MS = 1_000
MAX_RETRY_MS = 86_400_000
EXCERPT_CHARS = 120
_UNPRINTABLE = re.compile(r"[^\x20-\x7e\u00a0-\ud7ff\ue000-\ufffd]+")

_OPS: dict[str, OpName | None] = {
    "steprun": "StepRun",
    "step": "StepRun",
    "steperror": "StepError",
    "stepfailed": "StepFailed",
    "stepplanned": "StepPlanned",
    "sleep": "Sleep",
    "waitforevent": "WaitForEvent",
    "invokefunction": "InvokeFunction",
    "waitforsignal": "WaitForSignal",
    "gateway": "Gateway",
    "aigateway": "AIGateway",
    "none": None,
}
"""Opcode names, matched case-insensitively as Go does; `None` ops are dropped."""


class CallFailure(Exception):
    """A call that produced no usable answer, on the way (`app.drivers.http`'s transport) or
    in the reply; becomes an error `CallResult`."""

    def __init__(self, code: str, message: str, *, retriable: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retriable = retriable

    def result(self) -> CallResult:
        error: dict[str, JSON] = {
            "name": "SteplineHttpError",
            "message": strictjson.cleaned(self.message),  # it may quote what the app sent
            "stack": None,
            "code": self.code,
        }
        return CallResult("error", error=error, retriable=self.retriable)


def interpret_response(
    url: str,
    status: int,
    headers: Mapping[str, str],
    raw: bytes,
    *,
    now_ms: int,
    signing_keys: list[str],
    sent_ms: int | None = None,
) -> CallResult:
    """Turn an app's reply into a `CallResult`; unusable replies become retriable errors.

    With `signing_keys` (production mode) the reply must be signed with one of them and dated
    within the call: after `sent_ms` (when the request was signed; default `now_ms`) and before
    `now_ms` (when the reply arrived), give or take the signature window.
    """
    try:
        return _interpret(url, status, headers, raw, now_ms, signing_keys, sent_ms)
    except CallFailure as failure:
        return failure.result()


def _interpret(
    url: str,
    status: int,
    headers: Mapping[str, str],
    raw: bytes,
    now_ms: int,
    signing_keys: list[str],
    sent_ms: int | None,
) -> CallResult:
    headers = {k.lower(): v for k, v in headers.items()}
    if not any(key.startswith("x-inngest-") for key in headers):
        raise CallFailure(
            "not_sdk",
            f"app at {url} returned HTTP {status} (not an Inngest SDK response): {excerpt(raw)}",
        )
    if status == 201:
        status, headers, raw = _unwrap_stream(url, headers, raw)
    if signing_keys:
        if status == 401:
            raise CallFailure(
                "unauthorized",
                f"app at {url} refused our signature (HTTP 401): its INNGEST_SIGNING_KEY must "
                f"match STEPLINE_SIGNING_KEY; it said: {excerpt(raw)}",
            )
        problem = signing.reply_problem(
            raw,
            headers.get("x-inngest-signature"),
            signing_keys,
            sent_s=(now_ms if sent_ms is None else sent_ms) // 1000,
            received_s=now_ms // 1000,
        )
        if problem is not None:
            raise CallFailure(
                "signature_invalid",
                f"app at {url} returned HTTP {status} and {problem} (is it running in "
                "production mode with the same signing key?)",
            )
    no_retry = headers.get("x-inngest-no-retry", "").strip().lower() == "true"
    retry_at = parse_retry_after(headers.get("retry-after"), now_ms)
    if status == 206:
        sdk = headers.get("x-inngest-sdk")
        return _ops_result(url, _json(url, status, raw), no_retry, retry_at, sdk)
    if 200 <= status < 300:
        output = _json(url, status, raw) if raw.strip() else None
        return CallResult("complete", output=_checked(url, output, "a function output"))
    retriable = headers.get("x-inngest-no-retry", "").strip().lower() != "true"
    return CallResult(
        "error",
        error=_error_body(url, status, raw),
        retriable=retriable,
        retry_at_ms=retry_at,
    )


def excerpt(raw: bytes, limit: int = EXCERPT_CHARS) -> str:
    """At most `limit` characters of a body for an error message: decoded leniently, control
    and other unprintable characters (terminal escapes, newlines) replaced by one space."""
    text = raw[: limit * 4].decode("utf-8", errors="replace")
    text = " ".join(_UNPRINTABLE.sub(" ", text).split())
    if not text:
        return "(empty body)"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json(url: str, status: int, raw: bytes) -> JSON:
    """The body as JSON, leniently (`NaN` parses): `_checked` then names the step at fault."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise CallFailure(
            "invalid_response",
            f"app at {url} returned HTTP {status} with a body that is not JSON: {excerpt(raw)}",
        ) from exc


def _checked(url: str, value: JSON, what: str) -> JSON:
    """`value` as strict JSON (`app.strictjson`): lone surrogates become U+FFFD, as Go's
    decoder (hence Inngest) reads them; a non-finite number (the Python SDK writes `NaN`)
    or nesting beyond `MAX_DEPTH` fails the call, naming `what` and where, and it is retried
    like any unusable reply."""
    try:
        return strictjson.cleaned(value)
    except strictjson.JSONRejected as err:
        raise CallFailure(
            "invalid_json", f"app at {url} returned {what} that is not valid JSON: {err}"
        ) from None


def _unwrap_stream(
    url: str, headers: dict[str, str], raw: bytes
) -> tuple[int, dict[str, str], bytes]:
    """A 201 streaming envelope `{status, body, headers}` after keepalive spaces."""
    envelope = _json(url, 201, raw.strip())
    if not isinstance(envelope, dict) or not isinstance(envelope.get("status"), int):
        raise CallFailure("invalid_response", f"app at {url} sent a malformed streaming envelope")
    if envelope.get("error"):
        reported = excerpt(strictjson.cleaned(str(envelope["error"])).encode("utf-8"))
        raise CallFailure("stream_error", f"app at {url} reported: {reported}")
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
        raise CallFailure("invalid_response", f"app at {url} sent a nested streaming envelope")
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
    except (ValueError, RecursionError):
        parsed = None
    if isinstance(parsed, dict) and (parsed.get("message") or parsed.get("name")):
        stack = parsed.get("stack")
        return {
            "name": strictjson.cleaned(str(parsed.get("name") or "Error")),
            "message": strictjson.cleaned(str(parsed.get("message") or "")),
            "stack": strictjson.cleaned(stack) if isinstance(stack, str) else None,
        }
    return {
        "name": "Error",
        "message": f"app at {url} returned HTTP {status}: {excerpt(raw)}",
        "stack": None,
    }


def _ops_result(
    url: str, body: JSON, no_retry: bool, retry_at: int | None, sdk: str | None
) -> CallResult:
    return _read_ops(url, body if isinstance(body, list) else [body], no_retry, retry_at, sdk)


def read_ops(url: str, items: list[JSON], sdk: str | None = None) -> CallResult:
    """Opcode objects (the `steps` of a checkpoint, `url` naming who sent them) as a
    `CallResult`, read as a 206 array's; an unusable one gives an error result."""
    try:
        return _read_ops(url, items, False, None, sdk)
    except CallFailure as failure:
        return failure.result()


def _read_ops(
    url: str, raw_items: list[JSON], no_retry: bool, retry_at: int | None, sdk: str | None
) -> CallResult:
    """An unknown opcode anywhere fails the whole array (`unsupported_op`), before anything
    is applied."""
    if len(raw_items) > MAX_OPS:
        raise CallFailure(
            "too_many_ops", f"app at {url} reported {len(raw_items)} ops at once", retriable=False
        )
    items = [item for item in raw_items if isinstance(item, dict)]
    if len(items) != len(raw_items):
        raise CallFailure("invalid_response", f"app at {url} sent an op that is not an object")
    for item in items:  # before anything is applied: one of them fails the whole run
        name = str(item.get("op") or "")
        if not name:
            raise CallFailure("invalid_response", f"app at {url} sent an op without a name")
        if name.lower() not in _OPS and name.lower() != "runcomplete":
            return unsupported_op(strictjson.cleaned(name), sdk)  # the name is quoted
    ops: list[Op] = []
    for item in items:
        item = _checked(url, item, f"step {_label(item)!r}")
        kind = str(item.get("op", ""))
        if kind.lower() == "runcomplete":
            # A checkpointing SDK ends its call with it, after any steps not yet reported.
            return CallResult("complete", output=item.get("data"), ops=ops)
        op = _op(url, item, no_retry, retry_at)
        if op is not None:
            ops.append(op)
    return CallResult("ops", ops=ops)


def _label(item: dict[str, JSON]) -> str:
    """The step's name for an error message, before the op is read."""
    userland = item.get("userland")
    user_id = userland.get("id") if isinstance(userland, dict) else None
    for source in (item.get("displayName"), user_id, item.get("id")):
        if isinstance(source, str) and source:
            return source
    return "?"


def _op(url: str, item: dict[str, JSON], no_retry: bool, retry_at: int | None) -> Op | None:
    kind = _OPS[str(item.get("op", "")).lower()]
    if kind is None:
        return None
    step_id = item.get("id")
    if not isinstance(step_id, str) or not step_id:
        raise CallFailure("invalid_response", f"app at {url} sent a {kind} op without an id")
    opts_in = item.get("opts")
    opts: dict[str, JSON] = dict(opts_in) if isinstance(opts_in, dict) else {}
    userland = item.get("userland")
    user_id = userland.get("id") if isinstance(userland, dict) else None
    # Sleep and WaitForEvent carry data in `name` (a time, an event name): never a label.
    label_sources = [item.get("displayName"), user_id]
    if kind not in ("Sleep", "WaitForEvent", "WaitForSignal"):
        label_sources.insert(1, item.get("name"))
    name = next((str(s) for s in label_sources if isinstance(s, str) and s), step_id)
    op = Op(kind, step_id, name, opts=opts, data=item.get("data"))
    if kind == "Sleep":
        _sleep_opts(url, item, opts)
    elif kind == "WaitForEvent":
        event = opts.get("event") or item.get("name")
        if not isinstance(event, str) or not event:
            raise CallFailure("invalid_response", f"app at {url} sent a WaitForEvent without event")
        opts["event"] = event
        opts.setdefault("if", None)
        opts.setdefault("timeout", None)
    elif kind == "WaitForSignal":
        signal = opts.get("signal") or item.get("name")
        if not isinstance(signal, str) or not signal:
            raise CallFailure(
                "invalid_response", f"app at {url} sent a WaitForSignal without signal"
            )
        opts["signal"] = signal
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
    raise CallFailure(
        "invalid_response", f"app at {url} sent a Sleep without a usable time: {raw!r}"
    )
