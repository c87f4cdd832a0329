"""`/v1/runs`: listing (filters, time range, cursor paging, bad parameters), get, cancel,
rerun and replay; every answer validated against docs/openapi.yaml."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.models import RunStatus, Trigger
from app.state.store import MemoizedSteps, NewRun
from tests.api.conftest import Api, fn
from tests.api.openapi_check import check

T0 = 1_700_000_000_000
LIST = "/v1/runs"


def _run(api: Api, run_id: str, function: str = "app-f", at: int = T0, **kw: Any) -> str:
    api.engine.store.create_run(
        NewRun(
            run_id=run_id,
            function_id=function,
            events=[{"name": "a/b", "data": {}, "id": "", "ts": at, "user": {}}],
            event_ids=[],
            created_at=at,
            **kw,
        )
    )
    return run_id


def _list(api: Api, query: str = "", status: int = 200) -> dict[str, Any]:
    response = api.client.get(LIST + query)
    assert response.status_code == status, response.get_json()
    return dict(check(response, "get", LIST))


def _ids(body: dict[str, Any]) -> list[str]:
    return [run["run_id"] for run in body["data"]]


def _seed(api: Api) -> None:
    """r0..r5 a second apart: f gets r0, r2, r4; g gets r1, r3, r5. r2 runs, r3 completes,
    r4 fails, r5 is cancelled."""
    store = api.engine.store
    for i in range(6):
        _run(api, f"r{i}", "app-f" if i % 2 == 0 else "app-g", T0 + i * 1000)
    store.mark_started("r2", T0 + 10_000)
    store.mark_started("r3", T0 + 10_000)
    store.finish_run("r3", "Completed", 1, None, T0 + 11_000)
    store.finish_run("r4", "Failed", None, {"message": "x"}, T0 + 11_000)
    store.finish_run("r5", "Cancelled", None, None, T0 + 11_000)


# --- listing --------------------------------------------------------------------------------


def test_list_newest_first_without_steps(api: Api) -> None:
    _seed(api)
    body = _list(api)
    assert _ids(body) == ["r5", "r4", "r3", "r2", "r1", "r0"]
    assert body["metadata"]["next_cursor"] is None
    assert all("steps" not in run for run in body["data"])
    r3 = next(run for run in body["data"] if run["run_id"] == "r3")
    assert r3["status"] == "Completed" and r3["output"] == 1


def test_list_empty(api: Api) -> None:
    assert _list(api)["data"] == []


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?function_id=app-f", ["r4", "r2", "r0"]),
        ("?function_id=app-g", ["r5", "r3", "r1"]),
        ("?function_id=app-none", []),
        ("?status=Queued", ["r1", "r0"]),
        ("?status=Running", ["r2"]),
        ("?status=Completed", ["r3"]),
        ("?status=Failed", ["r4"]),
        ("?status=Cancelled", ["r5"]),
        ("?status=Queued&function_id=app-g", ["r1"]),
        ("?status=Failed&function_id=app-g", []),
        (f"?after={T0 + 2000}", ["r5", "r4", "r3", "r2"]),
        (f"?before={T0 + 2000}", ["r1", "r0"]),
        (f"?after={T0 + 1000}&before={T0 + 4000}", ["r3", "r2", "r1"]),
        ("?after=2023-11-14T22:13:22Z", ["r5", "r4", "r3", "r2"]),
        ("?after=2023-11-14T22:13:22.000%2B00:00&before=2023-11-14T22:13:24Z", ["r3", "r2"]),
        (f"?function_id=app-f&after={T0 + 1}&before={T0 + 4001}", ["r4", "r2"]),
    ],
)
def test_list_filters(api: Api, query: str, expected: list[str]) -> None:
    _seed(api)
    assert _ids(_list(api, query)) == expected


def test_cursor_paging_visits_every_run_once(api: Api) -> None:
    for i in range(25):
        # Three runs share each created_at: ties are ordered by run id and never skipped.
        _run(api, f"run{i:02d}", at=T0 + (i // 3))
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = "?limit=4" + (f"&cursor={cursor}" if cursor else "")
        body = _list(api, query)
        assert len(body["data"]) <= 4
        seen += _ids(body)
        pages += 1
        cursor = body["metadata"]["next_cursor"]
        if cursor is None:
            break
    assert pages == 7
    assert seen == sorted((f"run{i:02d}" for i in range(25)), reverse=True)


def test_cursor_paging_with_filters(api: Api) -> None:
    for i in range(10):
        _run(api, f"f{i}", "app-f", T0 + i)
        _run(api, f"g{i}", "app-g", T0 + i)
    first = _list(api, f"?function_id=app-g&limit=3&before={T0 + 8}")
    assert _ids(first) == ["g7", "g6", "g5"]
    cursor = first["metadata"]["next_cursor"]
    second = _list(api, f"?function_id=app-g&limit=3&before={T0 + 8}&cursor={cursor}")
    assert _ids(second) == ["g4", "g3", "g2"]


def test_cursor_survives_a_run_leaving_the_status_index(api: Api) -> None:
    for i in range(6):
        _run(api, f"q{i}", at=T0 + i)
    first = _list(api, "?status=Queued&limit=2")
    assert _ids(first) == ["q5", "q4"]
    api.engine.store.mark_started("q4", T0 + 100)  # the cursor's run leaves the index
    cursor = first["metadata"]["next_cursor"]
    assert _ids(_list(api, f"?status=Queued&limit=2&cursor={cursor}")) == ["q3", "q2"]


def test_last_page_exactly_full_has_no_cursor(api: Api) -> None:
    for i in range(4):
        _run(api, f"x{i}", at=T0 + i)
    assert _list(api, "?limit=4")["metadata"]["next_cursor"] is None
    assert _list(api, "?limit=3")["metadata"]["next_cursor"] is not None


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?status=Done", "status"),
        ("?status=queued", "status"),
        ("?limit=0", "limit"),
        ("?limit=101", "limit"),
        ("?limit=ten", "limit"),
        ("?limit=-1", "limit"),
        ("?cursor=%25%25%25", "cursor"),
        ("?cursor=bm90IGpzb24", "cursor"),
        ("?cursor=WzEsMiwzXQ", "cursor"),
        ("?after=yesterday", "after"),
        ("?before=2024-13-45T00:00:00Z", "before"),
        ("?before=-5", "before"),
    ],
)
def test_bad_parameters_are_400(api: Api, query: str, field: str) -> None:
    body = _list(api, query, status=400)
    assert body["code"] == "bad_request" and body["field"] == field


# --- get and cancel -------------------------------------------------------------------------


def test_get_run_matches_the_spec(api: Api) -> None:
    _seed(api)
    store = api.engine.store
    store.save_step("r2", "h1", {"data": [1, 2]}, {"name": "a", "kind": "StepRun"}, T0)
    body = check(api.client.get("/v1/runs/r2"), "get", "/v1/runs/{run_id}")
    run = body["data"]
    assert run["status"] == "Running" and run["run_started_at"] is not None
    assert run["steps"][0]["name"] == "a" and run["steps"][0]["output"] == [1, 2]
    failed = check(api.client.get("/v1/runs/r4"), "get", "/v1/runs/{run_id}")["data"]
    assert failed["error"] == {"message": "x"}


def test_get_unknown_run_is_404(api: Api) -> None:
    body = check(api.client.get("/v1/runs/nope"), "get", "/v1/runs/{run_id}")
    assert body["code"] == "not_found"


@pytest.mark.parametrize("method", ["delete", "post"])
def test_cancel(api: Api, method: str) -> None:
    _seed(api)
    if method == "delete":
        path, response = "/v1/runs/{run_id}", api.client.delete("/v1/runs/r1")
    else:
        path, response = "/v1/runs/{run_id}/cancel", api.client.post("/v1/runs/r1/cancel")
    assert response.status_code == 200
    assert check(response, method, path)["data"] == {"run_id": "r1", "status": "Cancelled"}
    assert _ids(_list(api, "?status=Cancelled")) == ["r5", "r1"]
    assert _ids(_list(api, "?status=Queued")) == ["r0"]
    again = api.client.post("/v1/runs/r1/cancel")
    assert check(again, "post", "/v1/runs/{run_id}/cancel")["code"] == "conflict"
    missing = api.client.delete("/v1/runs/nope")
    assert check(missing, "delete", "/v1/runs/{run_id}")["code"] == "not_found"


# --- rerun and replay -----------------------------------------------------------------------


def _failed_run(api: Api) -> str:
    """A failed run of app-f with steps a (ok), b (failed) and c (ok, after b failed)."""
    api.register(fn("f", Trigger(event="a/b")))
    event = api.client.post(
        "/e/k", data=json.dumps({"name": "a/b", "data": {"x": 1}}), content_type="application/json"
    )
    [event_id] = event.get_json()["ids"]
    api.process_events()
    [run_id] = api.engine.store.event_run_ids(event_id)
    store, now = api.engine.store, api.engine.now()
    store.mark_started(run_id, now)
    for step, memo, status in (
        ("ha", {"data": "A"}, "Completed"),
        ("hb", {"error": {"name": "Error", "message": "b failed"}}, "Failed"),
        ("hc", {"data": "C"}, "Completed"),
    ):
        info = {"name": step[1], "kind": "StepRun", "status": status, "ended_at": now}
        store.save_step(run_id, step, memo, info, now)
    store.finish_run(run_id, "Failed", None, {"message": "b failed"}, now)
    return run_id


def test_rerun_starts_from_the_beginning_with_the_same_events(api: Api) -> None:
    original = _failed_run(api)
    response = api.client.post(f"/v1/runs/{original}/rerun")
    assert response.status_code == 201
    data = check(response, "post", "/v1/runs/{run_id}/rerun")["data"]
    new_id = data["run_id"]
    assert new_id != original and data["original_run_id"] == original
    state = api.engine.store.load_run(new_id)
    old = api.engine.store.load_run(original)
    assert state is not None and old is not None
    assert state.status == "Queued" and state.stack == [] and state.events == old.events
    assert f"{new_id}:start" in api.sender.job_ids("stepline.start")
    run = check(api.client.get(f"/v1/runs/{new_id}"), "get", "/v1/runs/{run_id}")["data"]
    assert run["original_run_id"] == original and run["event_ids"] == old_event_ids(api, original)


def old_event_ids(api: Api, run_id: str) -> list[str]:
    view = api.engine.store.get_run(run_id)
    assert view is not None
    return view.event_ids


def test_replay_copies_the_steps_before_the_failed_one(api: Api) -> None:
    original = _failed_run(api)
    response = api.client.post(f"/v1/runs/{original}/replay")
    assert response.status_code == 201
    data = check(response, "post", "/v1/runs/{run_id}/replay")["data"]
    assert data["from_step"] == "hb" and data["copied_steps"] == 1
    state = api.engine.store.load_run(data["run_id"])
    assert state is not None
    assert state.stack == ["ha"] and state.steps == {"ha": {"data": "A"}}
    view = api.engine.store.get_run(data["run_id"])
    assert view is not None and view.original_run_id == original
    assert [(s["name"], s["status"], s["order"]) for s in view.steps] == [("a", "Completed", 0)]


def test_replay_from_a_chosen_step(api: Api) -> None:
    original = _failed_run(api)
    response = api.client.post(f"/v1/runs/{original}/replay", json={"from_step": "hc"})
    data = check(response, "post", "/v1/runs/{run_id}/replay")["data"]
    state = api.engine.store.load_run(data["run_id"])
    assert state is not None and state.stack == ["ha", "hb"]


def test_replay_refusals(api: Api) -> None:
    original = _failed_run(api)
    path = "/v1/runs/{run_id}/replay"
    bad = api.client.post(f"/v1/runs/{original}/replay", json={"from_step": "zz"})
    assert check(bad, "post", path)["field"] == "from_step"
    bad_type = api.client.post(f"/v1/runs/{original}/replay", json={"from_step": 3})
    assert check(bad_type, "post", path)["code"] == "bad_request"
    not_json = api.client.post(
        f"/v1/runs/{original}/replay", data="[1]", content_type="application/json"
    )
    assert check(not_json, "post", path)["field"] == "body"
    missing = api.client.post("/v1/runs/nope/replay")
    assert check(missing, "post", path)["code"] == "not_found"
    _run(api, "live", "app-f")
    running = api.client.post("/v1/runs/live/replay")
    assert check(running, "post", path)["code"] == "conflict"


def test_rerun_of_an_unregistered_function_is_409(api: Api) -> None:
    _run(api, "orphan", "app-gone")
    response = api.client.post("/v1/runs/orphan/rerun")
    assert check(response, "post", "/v1/runs/{run_id}/rerun")["code"] == "conflict"
    missing = api.client.post("/v1/runs/nope/rerun")
    assert check(missing, "post", "/v1/runs/{run_id}/rerun")["code"] == "not_found"


def test_store_creates_a_run_with_memoized_steps(api: Api) -> None:
    memo = MemoizedSteps(
        stack=["s1", "s2"],
        steps={"s1": {"data": [1]}, "s2": None},
        history={"s1": {"name": "one", "status": "Completed", "order": 0}},
    )
    _run(api, "pre", memoized=memo, original_run_id="orig")
    state = api.engine.store.load_run("pre")
    assert state is not None
    assert state.stack == ["s1", "s2"] and state.steps == {"s1": {"data": [1]}, "s2": None}
    assert state.status == RunStatus.QUEUED.value


def test_v1_reads_answer_304_when_nothing_changed(api: Api) -> None:
    first = api.client.get("/v1/runs")
    assert first.status_code == 200
    etag = first.headers["ETag"]
    again = api.client.get("/v1/runs", headers={"If-None-Match": etag})
    assert again.status_code == 304
