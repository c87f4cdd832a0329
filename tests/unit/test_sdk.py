"""The SDK's public surface, function configs, validation and event sending."""

from __future__ import annotations

import datetime
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import inngest as official
import pytest

import app.sdk as sdk
from app.errors import InvalidFunction
from app.models import JSON, Trigger

SUPPORTED = {
    "Batch",
    "Cancel",
    "Concurrency",
    "Context",
    "ContextSync",
    "Debounce",
    "Event",
    "Function",
    "Inngest",
    "JSON",
    "NonRetriableError",
    "ParallelMode",
    "Priority",
    "PydanticSerializer",
    "RateLimit",
    "RetryAfterError",
    "Serializer",
    "Singleton",
    "Step",
    "StepError",
    "StepSync",
    "Throttle",
    "Timeouts",
    "TriggerCron",
    "TriggerEvent",
}


def test_public_surface_matches_the_official_sdk() -> None:
    assert set(sdk.__all__) == SUPPORTED
    assert set(sdk.__all__) <= set(official.__all__)
    for name in sdk.__all__:
        assert getattr(sdk, name) is not None


STEPLINE_ONLY = {"wait_for_event": ["lookback"]}
"""Step method parameters the official SDK lacks (README: "No missed events ...")."""


def test_step_methods_match_the_official_signatures() -> None:
    import inspect

    for ours, theirs in ((sdk.StepSync, official.StepSync), (sdk.Step, official.Step)):
        for method in ("run", "sleep", "sleep_until", "wait_for_event", "invoke", "send_event"):
            our_params = list(inspect.signature(getattr(ours, method)).parameters)
            their_params = list(inspect.signature(getattr(theirs, method)).parameters)
            # Stepline-only additions come last and are optional, so official calls still fit.
            extras = STEPLINE_ONLY.get(method, [])
            assert our_params == their_params + extras, method
            for extra in extras:
                default = inspect.signature(getattr(ours, method)).parameters[extra].default
                assert default is None, (method, extra)
        assert hasattr(ours(sdk.Inngest(app_id="x"), None), "ai")  # type: ignore[arg-type]
    context_fields = {"attempt", "event", "events", "group", "logger", "run_id", "step"}
    assert context_fields <= set(sdk.ContextSync.__dataclass_fields__)
    assert context_fields <= set(sdk.Context.__dataclass_fields__)


client = sdk.Inngest(app_id="shop", is_production=False, signing_key="ignored", env="x")


def test_function_ids_and_config() -> None:
    @client.create_function(
        fn_id="send-receipt",
        name="Send receipt",
        trigger=[
            sdk.TriggerEvent(event="shop/paid", expression="event.data.total > 0"),
            sdk.TriggerCron(cron="0 * * * *"),
        ],
        retries=2,
        batch_events=sdk.Batch(max_size=10, timeout=datetime.timedelta(seconds=5), if_exp="x"),
        cancel=[sdk.Cancel(event="shop/refunded", if_exp="async.data.id == event.data.id")],
        concurrency=[sdk.Concurrency(limit=5, key="event.data.user", scope="fn")],
        debounce=sdk.Debounce(period=120_000, key="k", timeout=datetime.timedelta(hours=1)),
        idempotency="event.data.id",
        priority=sdk.Priority(run="event.data.prio"),
        rate_limit=sdk.RateLimit(limit=10, period=90_000),
        throttle=sdk.Throttle(limit=3, period=datetime.timedelta(days=1), burst=2),
        timeouts=sdk.Timeouts(start=10_000, finish=datetime.timedelta(weeks=1)),
        singleton=sdk.Singleton(key="event.data.user", mode="skip"),
    )
    def send_receipt(ctx: sdk.ContextSync) -> None:
        return None

    assert (send_receipt.id, send_receipt.slug, send_receipt.app_id) == (
        "send-receipt",
        "shop-send-receipt",
        "shop",
    )
    (config,) = send_receipt.config()
    assert config.id == "shop-send-receipt" and config.name == "Send receipt"
    assert config.app_id == "shop" and config.retries == 2 and config.driver == "inprocess"
    assert config.triggers == [
        Trigger(event="shop/paid", expression="event.data.total > 0"),
        Trigger(cron="0 * * * *"),
    ]
    assert config.options == {
        "batchEvents": {"maxSize": 10, "timeout": "5s", "if": "x"},
        "cancel": [{"event": "shop/refunded", "if": "async.data.id == event.data.id"}],
        "concurrency": [{"limit": 5, "key": "event.data.user", "scope": "fn"}],
        "debounce": {"period": "2m", "key": "k", "timeout": "1h"},
        "idempotency": "event.data.id",
        "priority": {"run": "event.data.prio"},
        "rateLimit": {"limit": 10, "period": "90s"},
        "throttle": {"limit": 3, "period": "1d", "burst": 2},
        "timeouts": {"start": "10s", "finish": "1w"},
        "singleton": {"key": "event.data.user", "mode": "skip"},
    }
    json.dumps([c.model_dump() for c in send_receipt.config()])


def test_defaults_and_the_failure_handler() -> None:
    def on_failure(ctx: sdk.ContextSync) -> None:
        return None

    @client.create_function(
        fn_id="charge", trigger=sdk.TriggerEvent(event="shop/order"), on_failure=on_failure
    )
    def charge(ctx: sdk.ContextSync) -> None:
        return None

    main, failure = charge.config()
    assert main.name == "charge" and main.retries == 4 and main.options == {}
    assert failure.id == "shop-charge-failure" and failure.name == "charge (failure)"
    assert failure.triggers == [
        Trigger(
            event="inngest/function.failed",
            expression="event.data.function_id == 'shop-charge'",
        )
    ]
    assert failure.retries == 0 and failure.driver == "inprocess" and failure.app_id == "shop"
    assert charge.on_failure_fn_id == "shop-charge-failure"
    assert charge.handlers() == {
        "shop-charge": charge.handler_for("shop-charge"),
        failure.id: on_failure,
    }
    assert charge in client.functions


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"trigger": sdk.TriggerCron(cron="not a cron")}, "trigger[0].cron"),
        (
            {"trigger": [sdk.TriggerEvent(event="a"), sdk.TriggerCron(cron="61 * * * *")]},
            "trigger[1].cron",
        ),
        ({"trigger": sdk.TriggerCron(cron="* * * * *", jitter="5 minutes")}, "trigger[0].jitter"),
        ({"trigger": []}, "trigger"),
        ({"trigger": "app/event"}, "trigger[0]"),
        ({"retries": -1}, "retries"),
        ({"retries": 21}, "retries"),
        ({"retries": True}, "retries"),
        ({"fn_id": ""}, "fn_id"),
        ({"fn_id": "has space"}, "fn_id"),
        ({"debounce": sdk.Debounce(period=500)}, "debounce.period"),
        ({"rate_limit": sdk.RateLimit(limit=1, period=1500)}, "rate_limit.period"),
        ({"concurrency": [sdk.Concurrency(limit=0)]}, "concurrency[0].limit"),
        ({"concurrency": [{"limit": "x"}]}, "concurrency[0].limit"),
        ({"batch_events": sdk.Batch(max_size=0)}, "batch_events.max_size"),
        ({"throttle": "10/s"}, "throttle"),
        ({"idempotency": ""}, "idempotency"),
    ],
)
def test_invalid_definitions_name_the_function_and_field(
    kwargs: dict[str, Any], field: str
) -> None:
    args: dict[str, Any] = {"fn_id": "bad", "trigger": sdk.TriggerEvent(event="app/e")} | kwargs
    with pytest.raises(InvalidFunction) as info:
        client.create_function(**args)(lambda ctx: None)
    assert info.value.field == field
    assert f"function 'shop-{args['fn_id']}'" in info.value.message
    assert field in info.value.message


def test_option_models_are_strict() -> None:
    with pytest.raises(ValueError):
        sdk.RateLimit(limit=1, period=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        sdk.Singleton(mode="never")  # type: ignore[arg-type]


def test_invalid_app_id() -> None:
    with pytest.raises(InvalidFunction) as info:
        sdk.Inngest(app_id="")
    assert info.value.field == "app_id"


def test_event_model() -> None:
    event = sdk.Event.model_validate({"name": "a", "data": None, "user": None, "extra": 1})
    assert (event.data, event.user, event.id, event.ts, event.v) == ({}, {}, "", 0, None)
    wire = sdk.Event(name="a", data={"x": 1}, v="2").to_dict()
    assert wire["name"] == "a" and wire["v"] == "2" and "id" not in wire
    assert isinstance(wire["ts"], int) and wire["ts"] > 0


def test_errors() -> None:
    assert not sdk.NonRetriableError("x").is_retriable
    assert sdk.NonRetriableError().message == ""
    err = sdk.RetryAfterError("later", 60_000)
    assert err.retry_after.tzinfo is not None
    delta = err.retry_after - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(seconds=50) < delta <= datetime.timedelta(seconds=60)
    step_error = sdk.StepError("m", "ValueError", "tb")
    assert (step_error.name, step_error.message, step_error.stack) == ("ValueError", "m", "tb")
    assert not step_error.is_retriable


# --- sending events -------------------------------------------------------------------------
def test_send_uses_the_installed_sender() -> None:
    local = sdk.Inngest(app_id="s")
    got: list[list[dict[str, JSON]]] = []

    def sender(events: list[dict[str, JSON]]) -> list[str]:
        got.append(events)
        return ["a", "b"]

    local.set_sender(sender)
    ids = local.send_sync([sdk.Event(name="x", id="dedupe"), sdk.Event(name="y", ts=5)])
    assert ids == ["a", "b"]
    assert got[0][0]["id"] == "dedupe" and got[0][1]["ts"] == 5


def test_send_refuses_what_the_event_api_would() -> None:
    """An in-process sender hands events to the engine directly: they are checked as strict
    JSON here, as `POST /e` checks them."""
    from app.sdk.errors import SendEventsError

    local = sdk.Inngest(app_id="s")
    got: list[list[dict[str, JSON]]] = []
    local.set_sender(lambda events: got.append(events) or [])
    for data, field in (
        ({"x": float("nan")}, "events[1].data.x"),
        ({"x": [float("inf")]}, "events[1].data.x[0]"),
        ({"x": "\ud800"}, "events[1].data.x"),
    ):
        with pytest.raises(SendEventsError, match=re.escape(field)):
            local.send_sync([sdk.Event(name="ok"), sdk.Event(name="bad", data=data)])
    assert got == []


class _EventAPI(BaseHTTPRequestHandler):
    received: list[tuple[str, Any, str | None]] = []
    status = 200

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).received.append((self.path, body, self.headers.get("x-inngest-event-id-seed")))
        answer: dict[str, Any] = {"ids": [f"id{i}" for i in range(len(body))], "status": 200}
        if type(self).status != 200:
            answer = {"ids": [], "status": type(self).status, "error": "rejected"}
        payload = json.dumps(answer).encode()
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def event_api() -> Iterator[str]:
    _EventAPI.received = []
    _EventAPI.status = 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EventAPI)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_send_posts_to_the_event_api(event_api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INNGEST_EVENT_API_BASE_URL", f"http://{event_api}/ignored/path")
    monkeypatch.setenv("INNGEST_EVENT_KEY", "key1")
    local = sdk.Inngest(app_id="s")
    assert local.send_sync(sdk.Event(name="app/x", data={"a": 1})) == ["id0"]
    path, body, seed = _EventAPI.received[0]
    assert path == "/e/key1" and body[0]["name"] == "app/x" and body[0]["data"] == {"a": 1}
    assert seed is not None and "," in seed


def test_send_defaults_and_async(event_api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("INNGEST_EVENT_API_BASE_URL", "INNGEST_BASE_URL", "INNGEST_EVENT_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("INNGEST_DEV", event_api)
    import asyncio

    local = sdk.Inngest(app_id="s")
    ids = asyncio.run(local.send([sdk.Event(name="a"), sdk.Event(name="b")]))
    assert ids == ["id0", "id1"] and _EventAPI.received[0][0] == "/e/NO_EVENT_KEY_SET"


def test_send_errors_raise(event_api: str) -> None:
    from app.sdk.errors import SendEventsError

    _EventAPI.status = 400
    local = sdk.Inngest(app_id="s", event_api_base_url=f"http://{event_api}", event_key="k")
    with pytest.raises(SendEventsError, match="rejected"):
        local.send_sync(sdk.Event(name="a"))
    assert len(_EventAPI.received) == 1  # 4xx is not retried
