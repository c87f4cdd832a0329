"""`/v1/events`: listing (time range, cursor paging, bad parameters), get, runs of an event."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from app.models import Trigger
from tests.api.conftest import Api, fn
from tests.api.openapi_check import check

T0 = 1_700_000_000_000
LIST = "/v1/events"


def _store(api: Api, n: int) -> list[str]:
    ids = []
    for i in range(n):
        internal_id = f"ev{i:02d}"
        event = {"name": f"t/e{i}", "data": {"i": i}, "id": "", "ts": T0, "user": {}}
        api.engine.store.store_event(event, internal_id, T0 + i * 1000, 1000)
        ids.append(internal_id)
    return ids


def _list(api: Api, query: str = "", status: int = 200) -> dict[str, Any]:
    response = api.client.get(LIST + query)
    assert response.status_code == status, response.get_json()
    return dict(check(response, "get", LIST))


def test_list_newest_first(api: Api) -> None:
    _store(api, 3)
    body = _list(api)
    assert [e["internal_id"] for e in body["data"]] == ["ev02", "ev01", "ev00"]
    assert body["data"][0]["name"] == "t/e2" and body["data"][0]["data"] == {"i": 2}
    assert body["data"][0]["received_at"] == "2023-11-14T22:13:22.000Z"
    assert body["metadata"]["next_cursor"] is None


def test_paging_and_time_range(api: Api) -> None:
    _store(api, 12)
    seen: list[str] = []
    cursor = None
    while True:
        body = _list(api, f"?limit=5&after={T0 + 1000}" + (f"&cursor={cursor}" if cursor else ""))
        seen += [e["internal_id"] for e in body["data"]]
        cursor = body["metadata"]["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"ev{i:02d}" for i in range(11, 0, -1)]
    window = _list(api, f"?after={T0 + 2000}&before=2023-11-14T22:13:25Z")
    assert [e["internal_id"] for e in window["data"]] == ["ev04", "ev03", "ev02"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?limit=0", "limit"),
        ("?limit=1000", "limit"),
        ("?cursor=xx", "cursor"),
        ("?after=soon", "after"),
        ("?before=1e3", "before"),
    ],
)
def test_bad_parameters_are_400(api: Api, query: str, field: str) -> None:
    body = _list(api, query, status=400)
    assert body["code"] == "bad_request" and body["field"] == field


def test_get_event(api: Api) -> None:
    [event_id] = _store(api, 1)
    body = check(api.client.get(f"/v1/events/{event_id}"), "get", "/v1/events/{event_id}")
    assert body["data"]["internal_id"] == event_id and body["data"]["ts"] == T0
    missing = check(api.client.get("/v1/events/nope"), "get", "/v1/events/{event_id}")
    assert missing["code"] == "not_found"


def test_event_runs(api: Api) -> None:
    api.register(fn("f", Trigger(event="a/b")), fn("g", Trigger(event="a/*")))
    response = api.client.post(
        "/e/k", data=json.dumps({"name": "a/b"}), content_type="application/json"
    )
    [event_id] = response.get_json()["ids"]
    api.process_events()
    path = "/v1/events/{event_id}/runs"
    body = check(api.client.get(f"/v1/events/{event_id}/runs"), "get", path)
    assert sorted(run["function_id"] for run in body["data"]) == ["app-f", "app-g"]
    assert all("steps" not in run for run in body["data"])
    assert isinstance(body["metadata"]["outcomes"], list)
    assert check(api.client.get("/v1/events/nope/runs"), "get", path)["code"] == "not_found"


def test_event_runs_read_the_flow_store_outcomes(api: Api) -> None:
    [event_id] = _store(api, 1)
    store = api.engine.admission.flow
    record = {"function_id": "app-f", "outcome": "debounced", "message": "debounce 5s", "at": T0}
    store.record_outcome(event_id, "app-f", record)
    path = "/v1/events/{event_id}/runs"
    body = check(api.client.get(f"/v1/events/{event_id}/runs"), "get", path)
    [outcome] = body["metadata"]["outcomes"]
    assert outcome["outcome"] == "debounced" and outcome["reason"] == "debounce 5s"


def test_held_events_say_until_when(api: Api) -> None:
    """A debounced event says when its run starts, a batched one when its batch closes."""
    debounced = fn("d", Trigger(event="hold/d"))
    debounced.options = {"debounce": {"period": "10s"}}
    batched = fn("b", Trigger(event="hold/b"))
    batched.options = {"batchEvents": {"maxSize": 5, "timeout": "30s"}}
    api.register(debounced, batched)
    ids = api.client.post("/e/k", json=[{"name": "hold/d"}, {"name": "hold/b"}]).get_json()["ids"]
    before = api.engine.now()
    api.process_events()
    path = "/v1/events/{event_id}/runs"
    untils = {}
    for event_id in ids:
        body = check(api.client.get(f"/v1/events/{event_id}/runs"), "get", path)
        [outcome] = body["metadata"]["outcomes"]
        until = datetime.fromisoformat(outcome["until"]).timestamp() * 1000
        untils[outcome["outcome"]] = until - before
    assert 9_000 <= untils["debounced"] <= 11_000
    assert 29_000 <= untils["batched"] <= 31_000
    # a batch says how full it is now: "closes at T (2 of 5)" once a second event joined
    [second] = api.client.post("/e/k", json=[{"name": "hold/b"}]).get_json()["ids"]
    api.process_events()
    for event_id in (ids[1], second):
        body = check(api.client.get(f"/v1/events/{event_id}/runs"), "get", path)
        [outcome] = body["metadata"]["outcomes"]
        assert (outcome["batch"]["size"], outcome["batch"]["max_size"]) == (2, 5)
    debounce = check(api.client.get(f"/v1/events/{ids[0]}/runs"), "get", path)
    assert "batch" not in debounce["metadata"]["outcomes"][0]
