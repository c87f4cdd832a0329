"""`POST /e/<key>` ahead of Flask (app.api.fast_events): it answers what the Flask route
accepts, byte for byte, and every other request gets the Flask route's own answer.

Each case sends the same request through the app as served (`api.client`: the fast path in
front) and through Flask's own `wsgi_app` alone (the route as it was), and compares status,
headers and body; `answered` says which requests the fast path answered itself."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from werkzeug.test import Client, TestResponse

from app.api.fast_events import FastEvents
from app.runner import MAX_START_AHEAD_MS, seeded_ids
from tests.api.conftest import Api

SEED = "1700000000000,AAECAwQFBgcICQ=="


def fast_path(api: Api) -> FastEvents:
    middleware = api.app.wsgi_app
    assert isinstance(middleware, FastEvents)
    return middleware


def both(api: Api, path: str, **request: Any) -> tuple[TestResponse, TestResponse]:
    """The answers to one request: through the served app, then through Flask alone."""
    request.setdefault("method", "POST")
    served = api.client.open(path, **request)
    flask_only = Client(fast_path(api).flask).open(path, **request)
    return served, flask_only


def assert_same(served: TestResponse, flask_only: TestResponse) -> None:
    assert served.status == flask_only.status
    assert sorted(served.headers.items()) == sorted(flask_only.headers.items())
    assert served.get_data() == flask_only.get_data()


def event_body(**event: Any) -> bytes:
    return json.dumps({"name": "shop/order.placed", "data": {"n": 1}, **event}).encode()


JSON = "application/json"


def test_an_accepted_request_is_answered_here_as_the_route_answers_it(api: Api) -> None:
    headers = {"x-inngest-event-id-seed": SEED}
    served, flask_only = both(api, "/e/key", data=event_body(), content_type=JSON, headers=headers)
    assert served.status_code == 200
    assert served.get_json() == {"ids": seeded_ids(SEED, 1), "status": 200}
    assert_same(served, flask_only)  # the retry dedupes to the same ids
    assert fast_path(api).answered == 1
    assert len(api.sender.job_ids("stepline.event")) == 1


def test_accepted_events_are_stored_and_processed(api: Api) -> None:
    served = api.client.post(
        "/e/key", data=b'[{"name": "a/b"}, {"name": "a/c"}]', content_type=JSON
    )
    ids = served.get_json()["ids"]
    assert [api.engine.store.get_event(event_id) is not None for event_id in ids] == [True, True]
    assert api.process_events() == 1
    assert fast_path(api).answered == 1


def _too_large() -> bytes:
    return json.dumps([{"name": "a/b", "data": {"blob": "x" * (200 * 1024)}}] * 16).encode()


REFUSED: dict[str, tuple[str, dict[str, Any], int]] = {
    "bad json": ("/e/key", {"data": b'{"name": ', "content_type": JSON}, 400),
    "not an event": ("/e/key", {"data": b"[1]", "content_type": JSON}, 400),
    "reserved name": ("/e/key", {"data": event_body(name="inngest/x"), "content_type": JSON}, 400),
    "ts too far ahead": (
        "/e/key",
        {"data": b"", "content_type": JSON},  # body set in the test (needs the clock)
        400,
    ),
    "empty body": ("/e/key", {"data": b"", "content_type": JSON}, 400),
    "event over 256 KiB": (
        "/e/key",
        {
            "data": json.dumps({"name": "a", "data": {"b": "x" * 262_144}}).encode(),
            "content_type": JSON,
        },
        413,
    ),
    "request over 3 MiB": ("/e/key", {"data": _too_large(), "content_type": JSON}, 413),
    "empty key": ("/e/%20", {"data": event_body(), "content_type": JSON}, 401),
    "no key": ("/e", {"data": event_body(), "content_type": JSON}, 401),
    "no key, slash": ("/e/", {"data": event_body(), "content_type": JSON}, 401),
    "two segments": ("/e/key/more", {"data": event_body(), "content_type": JSON}, 404),
    "wrong method": ("/e/key", {"method": "GET"}, 405),
    "wrong method with a body": ("/e/key", {"method": "PUT", "data": event_body()}, 405),
    "not declared json": ("/e/key", {"data": event_body(), "content_type": "text/plain"}, 415),
    "cross-site": (
        "/e/key",
        {"data": event_body(), "content_type": JSON, "headers": {"Sec-Fetch-Site": "cross-site"}},
        403,
    ),
    "other origin": (
        "/e/key",
        {"data": event_body(), "content_type": JSON, "headers": {"Origin": "https://evil.test"}},
        403,
    ),
    "rebinding host": (
        "/e/key",
        {"data": event_body(), "content_type": JSON, "headers": {"Host": "evil.test"}},
        403,
    ),
    "remote peer in dev mode": (
        "/e/key",
        {"data": event_body(), "content_type": JSON, "environ_base": {"REMOTE_ADDR": "10.1.2.3"}},
        403,
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_every_refusal_is_the_flask_routes_answer(api: Api, case: str) -> None:
    path, request, status = REFUSED[case]
    if case == "ts too far ahead":
        request = {**request, "data": event_body(ts=api.engine.now() + MAX_START_AHEAD_MS + 60_000)}
    served, flask_only = both(api, path, **request)
    assert served.status_code == status, served.get_data()
    assert_same(served, flask_only)
    if status != 405:
        assert served.get_json()["status"] == status
    assert fast_path(api).answered == 0
    assert api.sender.sent == []


def test_production_keys(api_factory: Callable[..., Api]) -> None:
    api = api_factory(event_keys=["k1", "k2"])
    for key, status in (("nope", 401), ("k1x", 401), ("%20", 401)):
        served, flask_only = both(api, f"/e/{key}", data=event_body(), content_type=JSON)
        assert served.status_code == status
        assert_same(served, flask_only)
    assert fast_path(api).answered == 0
    served = api.client.post("/e/k2", data=event_body(), content_type=JSON)
    assert served.status_code == 200
    assert fast_path(api).answered == 1
    # production mode serves any peer and Host: the key is the credential
    served = api.client.post(
        "/e/k1",
        data=event_body(),
        content_type=JSON,
        headers={"Host": "stepline.example.com"},
        environ_base={"REMOTE_ADDR": "10.1.2.3"},
    )
    assert served.status_code == 200
    assert fast_path(api).answered == 2


def test_production_without_event_keys_is_closed(api_factory: Callable[..., Api]) -> None:
    api = api_factory(api_token="operator-token")
    served, flask_only = both(api, "/e/key", data=event_body(), content_type=JSON)
    assert served.status_code == 403 and served.get_json()["code"] == "not_configured"
    assert_same(served, flask_only)
    assert fast_path(api).answered == 0


def test_sdk_header_admits_a_text_plain_body(api: Api) -> None:
    served = api.client.post(
        "/e/key",
        data=event_body(),
        content_type="text/plain;charset=UTF-8",
        headers={"X-Inngest-SDK": "js:v3"},
    )
    assert served.status_code == 200
    assert fast_path(api).answered == 1


def test_redis_unavailable_is_the_routes_503(api_factory: Callable[..., Api]) -> None:
    """Once the events went to the group commit the request cannot be handed to Flask; the
    app's error handlers answer it, as they answer the route."""
    api = api_factory(redis_url="redis://127.0.0.1:1/0")
    served, flask_only = both(api, "/e/key", data=event_body(), content_type=JSON)
    assert served.status_code == 503
    assert served.headers["Retry-After"] == "1"
    assert served.get_json()["code"] == "unavailable"
    assert_same(served, flask_only)
    assert fast_path(api).answered == 0
