"""Registration: parsing what the official SDKs send, asking apps to sync (the /fn/register API
itself is tested in tests/api/test_register.py)."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from app.config import Settings
from app.drivers import signing
from app.errors import BadRequest, InvalidFunction
from app.models import Trigger
from app.sync import SyncError, parse_registration, sync_app, sync_apps_forever
from tests.sdk_apps.captures import CLOUD_SIGNING_KEY, PY_REGISTER, TS_REGISTER
from tests.sdk_apps.harness import CannedServer, Reply, free_port

if TYPE_CHECKING:
    pass

SDK = {"content-type": "application/json", "x-inngest-sdk": "inngest-py:v0.5.19"}


def parse(body: dict[str, Any]) -> Any:
    return parse_registration(body, headers={})


# --- parse_registration ---------------------------------------------------------------------


def test_python_registration() -> None:
    app_id, url, fns = parse(PY_REGISTER["body"])
    assert (app_id, url) == ("cap", "http://localhost/api/inngest")
    by_id = {fn.id: fn for fn in fns}
    assert list(by_id) == [
        "cap-three",
        "cap-ops",
        "cap-par",
        "cap-fail",
        "cap-fail-failure",
        "cap-nr",
        "cap-ra",
        "cap-dup",
    ]
    three = by_id["cap-three"]
    assert (three.name, three.app_id, three.retries, three.driver) == ("three", "cap", 2, "http")
    assert three.url == "http://localhost/api/inngest?fnId=cap-three&stepId=step"
    assert three.triggers == [Trigger(event="cap/three")]
    assert by_id["cap-ops"].retries == 4, "absent retries -> the default"
    assert by_id["cap-ops"].triggers == [
        Trigger(event="cap/ops", expression="event.data.x > 1"),
        Trigger(cron="*/5 * * * *"),
    ]
    failure = by_id["cap-fail-failure"]
    assert failure.retries == 0
    assert failure.options == {}, "empty cancel/concurrency lists carry nothing"
    assert by_id["cap-dup"].options == {
        "concurrency": [{"key": "event.data.k", "limit": 1}],
        "rateLimit": {"limit": 1, "period": "10s"},
        "debounce": {"period": "2s"},
        "idempotency": "event.data.key",
        "cancel": [{"event": "cap/cancel", "if": "event.data.id == async.data.id"}],
    }


def test_typescript_registration() -> None:
    app_id, url, fns = parse(TS_REGISTER["body"])
    assert app_id == "cap"
    assert url.startswith("http://127.0.0.1:")
    by_id = {fn.id: fn for fn in fns}
    assert len(by_id) == 8
    assert by_id["cap-fail-failure"].retries == 1
    assert by_id["cap-fail-failure"].triggers == [
        Trigger(
            event="inngest/function.failed",
            expression="event.data.function_id == 'cap-fail'",
        )
    ]
    # TS registers one concurrency object, not a list.
    assert by_id["cap-dup"].options["concurrency"] == [{"limit": 1, "key": "event.data.k"}]


def test_key_spellings_and_unknown_keys() -> None:
    body = {
        "app_name": "x",
        "DeployType": "ping",
        "url": "http://a:1/api/inngest",
        "someday": {"new": "key"},
        "functions": [
            {
                "id": "x-f",
                "triggers": [{"event": "e"}],
                "steps": {"step": {"runtime": {"url": "http://a:1/api/inngest?fnId=x-f"}}},
                "future": True,
            }
        ],
    }
    app_id, _, [fn] = parse(body)
    assert (app_id, fn.name, fn.url) == ("x", "x-f", "http://a:1/api/inngest?fnId=x-f")


def test_missing_runtime_url_is_built_from_the_app_url() -> None:
    body = {
        "appName": "x",
        "url": "http://a:1/api/inngest",
        "functions": [{"id": "x-f", "triggers": [{"event": "e"}], "retries": 7}],
    }
    _, _, [fn] = parse(body)
    assert fn.url == "http://a:1/api/inngest?fnId=x-f&stepId=step"
    assert fn.retries == 7


def with_function(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = copy.deepcopy(PY_REGISTER["body"])
    body["functions"][1].update(changes)
    return body


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"triggers": [{"cron": "every day"}]}, "functions[1].triggers[0].cron", "cron"),
        (
            {"triggers": [{"cron": "TZ=Mars/Olympus 0 * * * *"}]},
            "functions[1].triggers[0].cron",
            "cron",
        ),
        (
            {"triggers": [{"event": "e", "expression": "event.data.x >"}]},
            "functions[1].triggers[0].expression",
            "invalid expression",
        ),
        (
            {"triggers": [{"event": "e", "cron": "* * * * *"}]},
            "functions[1].triggers[0]",
            "exactly one",
        ),
        ({"triggers": [{"evnt": "e"}]}, "functions[1].triggers[0]", "exactly one"),
        ({"triggers": []}, "functions[1].triggers", "at least one"),
        ({"triggers": ["e"]}, "functions[1].triggers[0]", "object"),
        ({"debounce": {"period": "2 seconds"}}, "functions[1].debounce.period", "duration"),
        ({"debounce": {"key": "event.data.k"}}, "functions[1].debounce.period", "required"),
        ({"rateLimit": {"limit": 0, "period": "1m"}}, "functions[1].rateLimit.limit", ">= 1"),
        (
            {"throttle": {"limit": 1, "period": "1m", "key": "event.data."}},
            "functions[1].throttle.key",
            "invalid expression",
        ),
        (
            {"batchEvents": {"maxSize": 10, "timeout": "5x"}},
            "functions[1].batchEvents.timeout",
            "duration",
        ),
        (
            {"cancel": [{"event": "x", "timeout": "forever"}]},
            "functions[1].cancel[0].timeout",
            "duration",
        ),
        ({"cancel": [{"if": "true"}]}, "functions[1].cancel[0].event", "required"),
        ({"concurrency": [{"limit": "5"}]}, "functions[1].concurrency[0].limit", "integer"),
        (
            {"concurrency": [{"limit": 5, "scope": "galaxy"}]},
            "functions[1].concurrency[0].scope",
            "'fn'",
        ),
        ({"idempotency": "event.data.("}, "functions[1].idempotency", "invalid expression"),
        (
            {"priority": {"run": "event.data.p +"}},
            "functions[1].priority.run",
            "invalid expression",
        ),
        ({"timeouts": {"finish": "1 hour"}}, "functions[1].timeouts.finish", "duration"),
        ({"singleton": {"mode": "maybe"}}, "functions[1].singleton.mode", "'skip'"),
        (
            {"steps": {"step": {"retries": {"attempts": 99}}}},
            "functions[1].steps.step.retries.attempts",
            "between 0 and 30",
        ),
        (
            {"steps": {"step": {"retries": {"attempts": True}}}},
            "functions[1].steps.step.retries.attempts",
            "integer",
        ),
        (
            {"steps": {"step": {"runtime": {"type": "ws", "url": "wss://x"}}}},
            "functions[1].steps.step.runtime.type",
            "not supported",
        ),
        (
            {"steps": {"step": {"runtime": {"url": "ftp://x"}}}},
            "functions[1].steps.step.runtime.url",
            "http(s)",
        ),
        ({"id": ""}, "functions[1].id", "non-empty"),
        ({"id": "cap-three"}, "functions[1].id", "twice"),
    ],
)
def test_invalid_functions_name_function_and_field(
    changes: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(InvalidFunction) as caught:
        parse(with_function(**changes))
    assert caught.value.field == field
    assert words in caught.value.message
    if changes.get("id") is None:
        assert "'cap-ops'" in caught.value.message


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "http://a/api"}, "appName"),
        ({"appName": "a"}, "url"),
        ({"appName": "a", "url": "not a url"}, "url"),
        ({"appName": "a", "url": "http://a/api", "deployType": "connect"}, "deployType"),
        ({"appName": "a", "url": "http://a/api", "functions": {}}, "functions"),
    ],
)
def test_malformed_registrations(body: dict[str, Any], field: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse(body)
    assert caught.value.field == field


def test_valid_options_pass() -> None:
    body = with_function(
        throttle={"limit": 2, "period": "1m", "burst": 1, "key": "event.data.org"},
        batchEvents={"maxSize": 10, "timeout": "5s", "key": "event.data.k", "if": "true"},
        priority={"run": "event.data.tier == 'vip' ? 120 : 0"},
        timeouts={"start": "10s", "finish": "1h"},
        singleton={"key": "event.data.u", "mode": "skip"},
        concurrency=3,
        triggers=[{"cron": "TZ=Europe/Paris 0 9 * * MON-FRI", "jitter": "30s"}, {"event": "a/*"}],
    )
    _, _, fns = parse(body)
    assert fns[1].options["concurrency"] == [{"limit": 3}]
    assert set(fns[1].options) == {
        "throttle",
        "batchEvents",
        "priority",
        "timeouts",
        "singleton",
        "concurrency",
    }


# --- asking apps to sync ---------------------------------------------------------------------


@pytest.fixture
def app_server() -> Iterator[CannedServer]:
    server = CannedServer()
    yield server
    server.close()


def test_sync_app_puts_the_serve_url(app_server: CannedServer) -> None:
    app_server.queue(Reply(200, SDK, {"ok": True, "modified": True}))
    url = f"{app_server.url}/api/inngest"
    assert sync_app(url, Settings()) == {"ok": True, "modified": True}
    sent = app_server.received[0]
    assert (sent.method, sent.path) == ("PUT", "/api/inngest")
    assert sent.headers["x-inngest-server-kind"] == "dev"
    assert sent.json() == {"url": url}
    assert "x-inngest-signature" not in sent.headers


def test_sync_app_signs_in_production(app_server: CannedServer) -> None:
    app_server.queue(Reply(200, SDK, {"message": "Successfully registered", "modified": False}))
    production = Settings(signing_key=CLOUD_SIGNING_KEY, allowed_app_hosts=["127.0.0.1"])
    sync_app(f"{app_server.url}/api/inngest", production)
    sent = app_server.received[0]
    assert sent.headers["x-inngest-server-kind"] == "cloud"
    assert signing.verify(sent.body, sent.headers["x-inngest-signature"], [CLOUD_SIGNING_KEY])


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (Reply(500, SDK, {"message": "Failed to register", "modified": False}), "HTTP 500"),
        (Reply(200, SDK, {"error": "bad cron", "code": "invalid_function"}), "bad cron"),
        (Reply(400, SDK, {"code": "server_kind_mismatch", "message": "Sync rejected"}), "rejected"),
        (Reply(404, {}, "<html>not found</html>"), "no JSON object"),
    ],
)
def test_sync_app_failures(app_server: CannedServer, reply: Reply, words: str) -> None:
    app_server.queue(reply)
    with pytest.raises(SyncError) as caught:
        sync_app(f"{app_server.url}/api/inngest", Settings())
    assert words in caught.value.message


def test_sync_app_unreachable() -> None:
    with pytest.raises(SyncError, match="unreachable"):
        sync_app(f"http://127.0.0.1:{free_port()}/api/inngest", Settings(), timeout_s=2)


def test_sync_apps_forever_retries_until_the_app_answers(app_server: CannedServer) -> None:
    down = f"http://127.0.0.1:{free_port()}/api/inngest"
    up = f"{app_server.url}/api/inngest"
    app_server.queue(
        Reply(500, SDK, {"message": "Stepline is restarting"}),
        Reply(200, SDK, {"ok": True, "modified": True}),
    )
    attempts: list[str] = []

    def sync(url: str, settings: Settings) -> dict[str, Any]:
        attempts.append(url)
        if url == down and attempts.count(down) < 3:
            return sync_app(url, settings, timeout_s=1)
        if url == down:
            return {"ok": True, "modified": True}
        return sync_app(url, settings)

    started = time.monotonic()
    sync_apps_forever([down, up, up], Settings(), retry_s=0.05, max_retry_s=0.1, sync=sync)
    assert time.monotonic() - started < 5
    assert attempts.count(down) == 3
    assert attempts.count(up) == 2
    assert len(app_server.received) == 2


def test_sync_apps_forever_resyncs_until_stopped(app_server: CannedServer) -> None:
    calls: list[float] = []
    stop = threading.Event()

    def sync(url: str, settings: Settings) -> dict[str, Any]:
        calls.append(time.monotonic())
        if len(calls) == 3:
            stop.set()
        return {"ok": True}

    thread = threading.Thread(
        target=sync_apps_forever,
        args=(["http://app/api/inngest"], Settings()),
        kwargs={"stop": stop, "resync_s": 0.05, "sync": sync},
    )
    thread.start()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert len(calls) == 3
