"""`Inngest`: the client user code creates functions with and sends events through.

Events go through the sender the engine installs (`set_sender`) in worker and API processes;
without one they are POSTed to the event API, `{origin}/e/{event key}`, as the official SDK
does. The client records every function it creates, so `app.functions` can find them.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import logging
import os
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from app import strictjson
from app.drivers import signing
from app.errors import InvalidFunction
from app.models import JSON
from app.sdk.errors import SendEventsError, SendSignalError
from app.sdk.event import Event
from app.sdk.function import Function, Handler
from app.sdk.options import (
    Batch,
    Cancel,
    Concurrency,
    Debounce,
    Priority,
    RateLimit,
    Singleton,
    Throttle,
    Timeouts,
    TriggerCron,
    TriggerEvent,
)
from app.sdk.serializer import NO_TYPE, Serializer

T = TypeVar("T")

EventSender = Callable[[list[dict[str, JSON]]], list[str]]
"""Takes events in wire form, returns their ids (the engine's ingest)."""
SignalSender = Callable[[str, JSON], str | None]
"""Takes a signal name and its data, returns the resumed run's id or None (`app.signals`)."""

DEFAULT_ORIGIN = "http://127.0.0.1:8288"
DEV_EVENT_KEY = "NO_EVENT_KEY_SET"
MAX_SEND_ATTEMPTS = 5


def _is_truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() not in ("", "0", "false")


def _event_origin(explicit: str | None) -> str:
    dev = os.environ.get("INNGEST_DEV", "")
    candidates = [
        explicit,
        os.environ.get("INNGEST_EVENT_API_BASE_URL"),
        os.environ.get("INNGEST_BASE_URL"),
        dev if ("." in dev or ":" in dev) else None,
    ]
    origin = next((c for c in candidates if c), DEFAULT_ORIGIN)
    return origin if "://" in origin else f"http://{origin}"


def _api_origin(explicit: str | None) -> str:
    dev = os.environ.get("INNGEST_DEV", "")
    candidates = [
        explicit,
        os.environ.get("INNGEST_API_BASE_URL"),
        os.environ.get("INNGEST_BASE_URL"),
        dev if ("." in dev or ":" in dev) else None,
    ]
    origin = next((c for c in candidates if c), DEFAULT_ORIGIN)
    return origin if "://" in origin else f"http://{origin}"


def refuse_middleware(middleware: list[object] | None, where: str) -> None:
    """`middleware=` cannot be honoured in-process: refuse it rather than skip it silently
    (an encryption middleware skipped would leave data in plaintext)."""
    if not middleware:
        return
    names = ", ".join(
        getattr(item, "__qualname__", None) or type(item).__qualname__ for item in middleware
    )
    raise InvalidFunction(
        f"{where}: middleware is not supported for in-process functions (got {names}). "
        "Stepline runs no SDK middleware inside its workers, so it would be skipped and, for "
        "example, data meant to be encrypted would be stored in plaintext. Remove middleware=, "
        "or serve these functions with the official inngest SDK (over HTTP or Connect), where "
        "its middleware runs.",
        field="middleware",
    )


class Inngest:
    """Create functions with `create_function`; send events with `send_sync` / `send`.

    Official constructor arguments Stepline has no use for (signing key, env, app version ...)
    are accepted, so the same code runs on both. `serializer` works as in the official SDK
    (app/sdk/serializer.py). `middleware` is refused with an `InvalidFunction` naming it:
    in-process functions run no SDK middleware, and skipping it silently could store data its
    middleware should have encrypted.
    """

    def __init__(
        self,
        *,
        app_id: str,
        api_base_url: str | None = None,
        app_version: str | None = None,
        env: str | None = None,
        event_api_base_url: str | None = None,
        event_key: str | None = None,
        is_production: bool | None = None,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
        middleware: list[object] | None = None,
        request_timeout: int | datetime.timedelta | None = None,
        serializer: Serializer | None = None,
        signing_key: str | None = None,
    ) -> None:
        if not isinstance(app_id, str) or not app_id or any(c.isspace() for c in app_id):
            raise InvalidFunction(
                f"app_id must be a non-empty string without spaces, got {app_id!r}", field="app_id"
            )
        refuse_middleware(middleware, f"Inngest(app_id={app_id!r})")
        self.app_id = app_id
        self._serializer = serializer
        self.logger = logger or logging.getLogger("stepline.functions")
        if is_production is None:
            is_production = not _is_truthy(os.environ.get("INNGEST_DEV"))
        self.is_production = is_production
        self._event_url = urllib.parse.urljoin(
            _event_origin(event_api_base_url),
            f"/e/{event_key or os.environ.get('INNGEST_EVENT_KEY') or DEV_EVENT_KEY}",
        )
        if isinstance(request_timeout, datetime.timedelta):
            self._timeout = request_timeout.total_seconds()
        else:
            self._timeout = 30.0 if request_timeout is None else request_timeout / 1000
        self._sender: EventSender | None = None
        self._signal_sender: SignalSender | None = None
        self._signal_url = urllib.parse.urljoin(_api_origin(api_base_url), "/v1/signals")
        self._signing_key = signing_key or os.environ.get("INNGEST_SIGNING_KEY")
        self._functions: list[Function[Any]] = []

    # --- functions --------------------------------------------------------------------
    def create_function(
        self,
        *,
        fn_id: str,
        trigger: TriggerEvent | TriggerCron | list[TriggerEvent | TriggerCron],
        name: str | None = None,
        retries: int | None = None,
        on_failure: Handler | None = None,
        batch_events: Batch | None = None,
        cancel: list[Cancel] | None = None,
        concurrency: list[Concurrency] | None = None,
        debounce: Debounce | None = None,
        idempotency: str | None = None,
        priority: Priority | None = None,
        rate_limit: RateLimit | None = None,
        throttle: Throttle | None = None,
        timeouts: Timeouts | None = None,
        singleton: Singleton | None = None,
        middleware: list[object] | None = None,
        output_type: object = NO_TYPE,
    ) -> Callable[[Callable[..., T]], Function[T]]:
        """Decorate a handler (`def f(ctx: ContextSync)` or `async def f(ctx: Context)`).

        `output_type`: with a client `serializer`, the return value is stored as JSON."""
        refuse_middleware(middleware, f"function '{self.app_id}-{fn_id}'")

        def decorator(handler: Callable[..., T]) -> Function[T]:
            function: Function[T] = Function(
                self,
                fn_id=fn_id,
                handler=handler,
                trigger=trigger,
                name=name,
                retries=retries,
                on_failure=on_failure,
                batch_events=batch_events,
                cancel=cancel,
                concurrency=concurrency,
                debounce=debounce,
                idempotency=idempotency,
                priority=priority,
                rate_limit=rate_limit,
                throttle=throttle,
                timeouts=timeouts,
                singleton=singleton,
                output_type=output_type,
            )
            self._functions.append(function)
            return function

        return decorator

    @property
    def functions(self) -> list[Function[Any]]:
        """Every function created with this client, in creation order."""
        return list(self._functions)

    # --- outputs that are not plain JSON (app/sdk/serializer.py) ---------------------------
    def _serialize(self, obj: object, typ: object) -> object:
        if self._serializer is None or typ is NO_TYPE:
            return obj
        return self._serializer.serialize(obj, typ)

    def _deserialize(self, obj: object, typ: object) -> object:
        if self._serializer is None or typ is NO_TYPE:
            return obj
        return self._serializer.deserialize(obj, typ)

    # --- events -------------------------------------------------------------------------
    def set_sender(self, sender: EventSender | None) -> None:
        """Route `send`/`send_sync`/`step.send_event` through `sender` (None: back to HTTP)."""
        self._sender = sender

    def send_sync(self, events: Event | list[Event]) -> list[str]:
        """Send one or more events; returns their ids."""
        body = self._wire(events)
        if self._sender is not None:
            return self._sender(body)
        return self._post(body)

    async def send(self, events: Event | list[Event]) -> list[str]:
        """Send one or more events; returns their ids."""
        body = self._wire(events)
        if self._sender is not None:
            return self._sender(body)
        return await asyncio.to_thread(self._post, body)

    # --- signals (as the TypeScript SDK's `inngest.sendSignal`) ------------------------------
    def set_signal_sender(self, sender: SignalSender | None) -> None:
        """Route `send_signal` through `sender` (None: POST to the API's /v1/signals)."""
        self._signal_sender = sender

    def send_signal_sync(self, signal: str, data: object = None) -> str | None:
        """Resume the run waiting in `step.wait_for_signal` for `signal`, handing it `data`;
        the run's id, or None when no run is waiting (none, already resumed, expired)."""
        if not isinstance(signal, str) or not signal:
            raise ValueError(f"signal must be a non-empty string, got {signal!r}")
        try:
            payload = strictjson.cleaned(data)
        except strictjson.JSONRejected as exc:
            raise ValueError(f"signal data: {exc.problem}") from None
        if self._signal_sender is not None:
            return self._signal_sender(signal, payload)
        return self._post_signal(signal, payload)

    async def send_signal(self, signal: str, data: object = None) -> str | None:
        """`send_signal_sync` for async code."""
        if self._signal_sender is not None:
            return self.send_signal_sync(signal, data)
        return await asyncio.to_thread(self.send_signal_sync, signal, data)

    def _post_signal(self, signal: str, data: JSON) -> str | None:
        headers = {"user-agent": "stepline-py"}
        if self._signing_key:
            headers["authorization"] = signing.bearer_value(self._signing_key)
        response = httpx.post(
            self._signal_url,
            json={"signal": signal, "data": data},
            headers=headers,
            timeout=self._timeout,
        )
        if response.status_code == 404:
            return None
        try:
            run_id = response.json()["data"]["run_id"]
        except (ValueError, KeyError, TypeError):
            run_id = None
        if response.status_code >= 300 or not isinstance(run_id, str):
            raise SendSignalError(
                f"sending signal {signal!r} failed ({response.status_code}): {response.text[:200]}"
            )
        return run_id

    def _wire(self, events: Event | list[Event]) -> list[dict[str, JSON]]:
        """The events as sent; strict JSON as the event API wants it, checked here too
        because an in-process sender hands them to the engine directly."""
        items = events if isinstance(events, list) else [events]
        body = [(e if isinstance(e, Event) else Event.model_validate(e)).to_dict() for e in items]
        try:
            strictjson.check(body)
        except strictjson.JSONRejected as exc:
            field = strictjson.render_path(exc.path, "events")
            raise SendEventsError(f"{field}: {exc.problem}", []) from None
        return body

    def _post(self, body: list[dict[str, JSON]]) -> list[str]:
        seed = f"{int(time.time() * 1000)},{base64.b64encode(os.urandom(10)).decode()}"
        headers = {"x-inngest-event-id-seed": seed, "user-agent": "stepline-py"}
        response: httpx.Response | None = None
        for attempt in range(MAX_SEND_ATTEMPTS):
            try:
                response = httpx.post(
                    self._event_url, json=body, headers=headers, timeout=self._timeout
                )
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code < 500:
                break
            if attempt + 1 < MAX_SEND_ATTEMPTS:
                time.sleep(0.1 * 2**attempt)
        if response is None:
            raise SendEventsError(f"no response from {self._event_url}", [])
        try:
            answer = response.json()
        except ValueError:
            answer = {"error": response.text}
        ids = [str(i) for i in answer.get("ids") or []] if isinstance(answer, dict) else []
        error = answer.get("error") if isinstance(answer, dict) else None
        if response.status_code >= 400 or error:
            raise SendEventsError(
                f"sending events failed ({response.status_code}): {error or response.text}", ids
            )
        return ids
