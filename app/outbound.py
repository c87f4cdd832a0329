"""Outbound HTTP calls made on a function's behalf: `step.fetch` (opcode `Gateway`) and
`step.ai.infer` / `step.ai.wrap` (opcode `AIGateway`), PROTOCOL.md 10.3.

The SDK does not make these requests itself: it reports the op, the executor calls `perform`,
and the outcome is memoized as the step's result, so a replay never repeats the request.

    Gateway    {url, method, headers, body}      any HTTP answer is a result:
               -> {"data": {url, headers: {name: "v1,v2"}, body: <text>, status_code}}
               transport failure -> retriable GatewayError
    AIGateway  {url, headers, auth_key, format, body}   POST body as JSON, the key placed as
               the provider wants it (openai-chat and others: Bearer; anthropic: x-api-key;
               gemini: ?key=; bedrock: Authorization as is), then `headers`
               2xx -> {"data": <provider JSON>}; else retriable AIGatewayError

Targets follow the outbound address policy of app URLs (`app.netpolicy`): link-local never,
private and loopback addresses only in dev mode or when STEPLINE_ALLOWED_APP_HOSTS covers them.
A refused address is not retried. Redirects are not followed; bodies are capped.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass

import httpx

from app import strictjson
from app.config import Settings
from app.drivers.base import Op
from app.models import JSON
from app.netpolicy import (
    AddressPolicy,
    AddressRefused,
    AddressUnresolved,
    ProcessClient,
    read_capped,
)

MAX_RESPONSE_BYTES = 4 * 1024 * 1024
TIMEOUT_S = 300.0
CONNECT_TIMEOUT_S = 10.0
_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}


@dataclass
class Outcome:
    """`memo` to store for the step, or `error` ({name, message}); `retriable` errors are
    retried with the step's backoff while attempts remain."""

    memo: JSON = None
    error: dict[str, JSON] | None = None
    retriable: bool = True


class _Failure(Exception):
    def __init__(self, message: str, retriable: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.retriable = retriable


class Outbound:
    """One pooled client per process (re-created after a fork), through the address policy."""

    def __init__(self, settings: Settings) -> None:
        timeout = httpx.Timeout(TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
        self._client = ProcessClient(AddressPolicy.for_apps(settings), timeout)

    def perform(self, op: Op) -> Outcome:
        name = "AIGatewayError" if op.op == "AIGateway" else "GatewayError"
        try:
            if op.op == "AIGateway":
                return self._infer(op.opts)
            return self._fetch(op.opts)
        except _Failure as failure:
            error: dict[str, JSON] = {"name": name, "message": strictjson.cleaned(failure.message)}
            return Outcome(error=error, retriable=failure.retriable)

    # --- the two kinds ----------------------------------------------------------------

    def _fetch(self, opts: dict[str, JSON]) -> Outcome:
        url = _url(opts)
        method = str(opts.get("method") or "GET").upper()
        if method not in _METHODS:
            raise _Failure(f"step.fetch: unsupported method {method!r}", retriable=False)
        body = opts.get("body")
        content = body.encode("utf-8") if isinstance(body, str) else None
        status, headers, raw = self._send(method, url, _headers(opts.get("headers")), content)
        merged: dict[str, JSON] = {}
        for key, value in headers:
            previous = merged.get(key)
            merged[key] = f"{previous},{value}" if isinstance(previous, str) else value
        text = raw.decode("utf-8", errors="replace")
        memo: JSON = {"url": url, "headers": merged, "body": text, "status_code": status}
        return Outcome(memo={"data": memo})

    def _infer(self, opts: dict[str, JSON]) -> Outcome:
        url = _url(opts)
        key = opts.get("auth_key")
        key = key if isinstance(key, str) else ""
        fmt = str(opts.get("format") or "")
        headers = {"Content-Type": "application/json"}
        if key:
            if fmt == "anthropic":
                headers["x-api-key"] = key
            elif fmt == "gemini":
                url = _with_query(url, "key", key)
            elif fmt == "bedrock":
                headers["Authorization"] = key
            else:
                headers["Authorization"] = f"Bearer {key}"
        headers.update(_headers(opts.get("headers")))
        content = json.dumps(opts.get("body"), separators=(",", ":")).encode("utf-8")
        status, _, raw = self._send("POST", url, headers, content)
        if not 200 <= status < 300:
            text = raw[:500].decode("utf-8", errors="replace")
            raise _Failure(f"step.ai.infer: {_origin(url)} answered HTTP {status}: {text}")
        try:
            parsed = strictjson.cleaned(json.loads(raw))
        except (ValueError, RecursionError, strictjson.JSONRejected) as exc:
            raise _Failure(f"step.ai.infer: {_origin(url)} answered with invalid JSON") from exc
        return Outcome(memo={"data": parsed})

    # --- transport --------------------------------------------------------------------

    def _send(
        self, method: str, url: str, headers: dict[str, str], content: bytes | None
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        origin = _origin(url)
        try:
            client = self._client.get()
            with client.stream(method, url, headers=headers, content=content) as response:
                body = read_capped(response, MAX_RESPONSE_BYTES)
                if body is None:
                    raise _Failure(f"{origin} answered more than {MAX_RESPONSE_BYTES} bytes")
                pairs = [(k.lower(), v) for k, v in response.headers.multi_items()]
                return response.status_code, pairs, body
        except AddressRefused as exc:
            raise _Failure(f"{origin} not called: {exc.message}", retriable=False) from exc
        except AddressUnresolved as exc:
            raise _Failure(f"{origin} is unreachable: {exc.message}") from exc
        except httpx.HTTPError as exc:
            raise _Failure(f"request to {origin} failed ({type(exc).__name__}): {exc}") from exc


def _url(opts: dict[str, JSON]) -> str:
    url = opts.get("url")
    if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise _Failure(f"the step's url {url!r} is not an http(s) URL", retriable=False)
    return url


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def _headers(raw: JSON) -> dict[str, str]:
    if not isinstance(raw, dict):
        return {}
    return {str(k): str(v) for k, v in raw.items() if isinstance(v, str | int | float)}


def _with_query(url: str, key: str, value: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = [*urllib.parse.parse_qsl(parts.query, keep_blank_values=True), (key, value)]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
