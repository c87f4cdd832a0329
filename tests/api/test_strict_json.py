"""Hostile JSON at every JSON route answers 400 naming the field, never 500; answers and
what is stored are strict JSON (issue 9, defects 3 and 4)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.models import FunctionConfig, Trigger
from app.state.store import NewRun
from app.strictjson import MAX_DEPTH
from tests.api.conftest import Api, fn
from tests.api.openapi_check import check

T0 = 1_700_000_000_000


def strict(text: str) -> Any:
    """Parse as strict JSON: NaN, Infinity and 1e999 raise."""

    def refuse(token: str) -> Any:
        raise ValueError(f"{token} in an answer")

    def finite(token: str) -> float:
        number = float(token)
        if number in (float("inf"), float("-inf")):
            raise ValueError(f"{token} in an answer")
        return number

    return json.loads(text, parse_constant=refuse, parse_float=finite)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def post(api: Api, path: str, body: str | bytes) -> Any:
    response = api.client.post(path, data=body, content_type="application/json")
    strict(response.get_data(as_text=True))
    return response


def refused(response: Any, field: str) -> None:
    assert response.status_code == 400, response.get_data(as_text=True)
    answer = response.get_json()
    assert answer["code"] == "bad_request" and answer["field"] == field
    assert field in answer["error"]


# --- the event API --------------------------------------------------------------------------

HOSTILE_EVENTS = [
    ('{"name": "a/b", "data": {"x": 1e999}}', "events[0].data.x"),
    ('{"name": "a/b", "data": {"x": -1e999}}', "events[0].data.x"),
    ('{"name": "a/b", "data": {"x": NaN}}', "events[0].data.x"),
    ('{"name": "a/b", "data": {"x": [1, Infinity]}}', "events[0].data.x[1]"),
    ('[{"name": "a/b"}, {"name": "a/c", "data": {"y": -Infinity}}]', "events[1].data.y"),
    ('{"name": "a/b", "data": {"x": "\\ud800"}}', "events[0].data.x"),
    ('{"name": "a/b", "data": {"\\udc00": 1}}', 'events[0].data["\\udc00"]'),
    ('{"name": "a/\\ud800"}', "events[0].name"),
    ('{"name": "a/b", "id": "\\ud800"}', "events[0].id"),
    ('{"name": "a/b", "user": {"email": "x\\udfff"}}', "events[0].user.email"),
    ('{"name": "a/b", "ts": 1e999}', "events[0].ts"),
    ('{"name": "a/b", "data": {"deep": ' + nested(MAX_DEPTH) + "}}", "events[0].data.deep[0][0]"),
    (nested(100_000), "body"),
    (b'{"name": "a/b", "data": {"x": "\xed\xa0\x80"}}', "events[0].data.x"),
]


@pytest.mark.parametrize(("body", "field"), HOSTILE_EVENTS)
def test_hostile_events_are_refused_naming_the_field(
    api: Api, body: str | bytes, field: str
) -> None:
    refused(post(api, "/e/key", body), field)
    assert api.sender.sent == []  # nothing of the request was accepted
    assert strict(api.client.get("/v1/events").get_data(as_text=True))["data"] == []


def test_nesting_around_pythons_parse_limit_is_refused(api: Api) -> None:
    """Just under the recursion limit `json.loads` succeeds and a later `json.dumps` used to
    raise RecursionError (a 500); just over, the parse fails. Both are a 400 now."""
    for depth in range(900, 1_000, 7):
        body = '{"name": "a/b", "data": {"deep": ' + nested(depth) + "}}"
        response = post(api, "/e/key", body)
        assert response.status_code == 400, depth
        answer = response.get_json()
        assert "deeper than 100 levels" in answer["error"]
        assert answer["field"] in ("body", "events[0].data.deep[0][0]")
    assert api.sender.sent == []


def test_the_deepest_accepted_event_is_processed(api: Api) -> None:
    """It goes everywhere an event goes, pydantic models included (their JSON parser stops
    near 200 levels): into a run and a cancel pause, which a matching event then consumes."""
    deep = json.loads(nested(MAX_DEPTH - 2))  # body {...} > data {...} > deep [...]
    cancel = [{"event": "a/stop", "if": "async.data.deep == event.data.deep"}]
    api.register(
        FunctionConfig(
            id="app-f",
            name="f",
            app_id="app",
            triggers=[Trigger(event="a/b")],
            options={"cancel": cancel},
        )
    )
    response = post(api, "/e/key", json.dumps({"name": "a/b", "data": {"deep": deep}}))
    assert response.status_code == 200
    assert api.process_events() == 1
    [event] = strict(api.client.get("/v1/events").get_data(as_text=True))["data"]
    assert event["data"] == {"deep": deep}
    [run] = strict(api.client.get("/v1/runs").get_data(as_text=True))["data"]
    assert (
        post(api, "/e/key", json.dumps({"name": "a/stop", "data": {"deep": deep}})).status_code
        == 200
    )
    api.process_events()
    run = strict(api.client.get(f"/v1/runs/{run['run_id']}").get_data(as_text=True))["data"]
    assert run["status"] == "Cancelled"


def test_big_integers_are_accepted_and_read_back_exactly(api: Api) -> None:
    data = '{"big": 123456789012345678901234567890, "neg": -18446744073709551616}'
    body = '{"name": "a/b", "data": ' + data + "}"
    [event_id] = post(api, "/e/key", body).get_json()["ids"]
    event = strict(api.client.get(f"/v1/events/{event_id}").get_data(as_text=True))["data"]
    assert event["data"] == {"big": 123456789012345678901234567890, "neg": -(2**64)}


def test_invoke_refuses_hostile_data(api: Api) -> None:
    api.register(fn("f"))
    refused(post(api, "/invoke/app-f", '{"data": {"x": NaN}}'), "data.x")
    refused(post(api, "/invoke/app-f", '{"data": {"x": "\\ud800"}}'), "data.x")
    refused(post(api, "/invoke/app-f", nested(30_000)), "body")
    assert api.sender.sent == []


# --- registration and /v1 bodies ------------------------------------------------------------


def test_registration_refuses_hostile_bodies(api: Api) -> None:
    base = {"url": "http://127.0.0.1:9/api/inngest", "appName": "hostile", "functions": []}
    for raw, field in (
        (json.dumps(base)[:-1] + ', "x": NaN}', "x"),
        (json.dumps({**base, "appName": "\ud800"}), "appName"),
        (json.dumps({**base, "functions": [{"id": "f", "retries": 1}]})[:-3] + "1e999}]}", None),
        (nested(MAX_DEPTH + 5), "[0][0][0][0]"),
        (nested(100_000), "body"),  # past Python's parse limit
    ):
        response = post(api, "/fn/register", raw)
        assert response.status_code == 400, raw[:80]
        answer = response.get_json()
        if field is not None:
            assert answer["field"] == field
        else:
            assert answer["field"] == "functions[0].retries"
    assert api.engine.store.list_apps() == []


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/cancellations", '{"function_id": "\\ud800"}', "function_id"),
        ("/v1/cancellations", '{"function_id": "f", "started_after": NaN}', "started_after"),
        ("/v1/cancellations", '{"function_id": "f", "started_after": 1e999}', "started_after"),
        ("/v1/runs/01RUN/replay", '{"from_step": Infinity}', "from_step"),
        ("/v1/apps/sync", '{"url": "http://x/\\ud800"}', "url"),
        ("/v1/apps/sync", '{"url": ' + nested(MAX_DEPTH + 1) + "}", "url[0][0][0]"),
        ("/v1/cancellations", nested(100_000), "body"),
    ],
)
def test_v1_bodies_are_strict(api: Api, path: str, body: str, field: str) -> None:
    refused(post(api, path, body), field)


def test_a_cursor_with_a_lone_surrogate_is_refused(api: Api) -> None:
    import base64

    for cursor in ('[1, "\\ud800"]', '[1e999, "x"]', '[1000000000000000000000000, "x"]'):
        token = base64.urlsafe_b64encode(cursor.encode()).decode().rstrip("=")
        for route in ("/v1/runs", "/v1/events"):
            response = api.client.get(f"{route}?cursor={token}")
            refused(response, "cursor")


# --- what goes out --------------------------------------------------------------------------


def test_nothing_non_finite_can_be_stored(api: Api) -> None:
    event = {"name": "a/b", "data": {"x": float("nan")}, "id": "", "ts": T0, "user": {}}
    with pytest.raises(ValueError):
        api.engine.store.store_event(event, "01EVENT", T0, 60_000)
    with pytest.raises(ValueError):
        api.engine.store.create_run(
            NewRun(run_id="01RUN", function_id="f", events=[event], event_ids=[], created_at=T0)
        )
    assert api.engine.store.get_event("01EVENT") is None


def test_a_non_finite_number_stored_earlier_is_answered_as_null(api: Api) -> None:
    """Records written before the checks existed: the answer stays strict JSON."""
    event = {"name": "a/b", "data": {}, "id": "", "ts": T0, "user": {}}
    api.engine.store.create_run(
        NewRun(run_id="01RUN", function_id="app-f", events=[event], event_ids=[], created_at=T0)
    )
    client = api.engine.store._client
    client.hset(api.engine.store.keys.run("01RUN").meta, "output", '{"ratio": NaN, "n": 1}')
    response = api.client.get("/v1/runs/01RUN")
    assert response.status_code == 200
    body = strict(response.get_data(as_text=True))
    assert body["data"]["output"] == {"ratio": None, "n": 1}
    check(response, "get", "/v1/runs/{run_id}")
