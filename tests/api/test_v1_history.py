"""The `/v1` reads after runs and events have moved to the history store: the same answers
(validated against docs/openapi.yaml) whether a run is live in Redis, archived and still in its
hot window (in both stores), or archived and dropped from Redis; cursors walk across both;
rerun and replay start from an archived run. Each test runs on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from app.models import Trigger
from tests.api.conftest import Api, close, fn, make_api
from tests.api.openapi_check import check

HOT_MS = 600_000


@pytest.fixture
def api(redis_url: str, history_url: str) -> Iterator[Api]:
    made = make_api(redis_url, history_url=history_url)
    made.register(fn("f", Trigger(event="a/b")), fn("g", Trigger(event="a/b")))
    yield made
    close(made)


def send(api: Api, data: dict[str, Any]) -> str:
    response = api.client.post("/e/k", json={"name": "a/b", "data": data})
    [event_id] = response.get_json()["ids"]
    return str(event_id)


def finish(api: Api, run_id: str, failed: bool = False) -> None:
    """Run two steps of the run (the second fails when `failed`) and end it."""
    store, now = api.engine.store, api.engine.now()
    store.mark_started(run_id, now)
    store.save_step(
        run_id,
        "ha",
        {"data": "A"},
        {"name": "a", "kind": "StepRun", "status": "Completed", "ended_at": now},
        now,
    )
    memo = {"error": {"name": "Error", "message": "b failed"}} if failed else {"data": "B"}
    status = "Failed" if failed else "Completed"
    store.save_step(
        run_id, "hb", memo, {"name": "b", "kind": "StepRun", "status": status, "ended_at": now}, now
    )
    if failed:
        store.finish_run(run_id, "Failed", None, {"message": "b failed"}, now)
    else:
        store.finish_run(run_id, "Completed", {"ok": run_id}, None, now)


def archive_and_drop(api: Api) -> None:
    """What the ARCHIVE job and beat do, then the hot window passing (the event jobs that
    `process_events` ran are marked done first, as a worker would)."""
    for job_id in api.sender.job_ids("stepline.event"):
        api.engine.store.finish_job(job_id, "worker")
    now = api.engine.now()
    while api.engine.archiver.archive_once(now):
        pass
    while api.engine.archiver.drop_due(now + HOT_MS):
        pass


def reads(api: Api, event_id: str, run_ids: list[str]) -> dict[str, Any]:
    """Every read of the runs and the event, as the API answers them (fetched_at left out)."""
    out: dict[str, Any] = {}
    paths = [
        ("/v1/runs", "/v1/runs?limit=100"),
        ("/v1/events", "/v1/events?limit=100"),
        ("/v1/events/{event_id}", f"/v1/events/{event_id}"),
        ("/v1/events/{event_id}/runs", f"/v1/events/{event_id}/runs"),
        *(("/v1/runs/{run_id}", f"/v1/runs/{run_id}") for run_id in run_ids),
    ]
    for template, url in paths:
        response = api.client.get(url)
        assert response.status_code == 200, (url, response.get_json())
        body = dict(check(response, "get", template))
        body.get("metadata", {}).pop("fetched_at", None)
        out[url] = body
    return out


def test_answers_are_the_same_before_and_after_the_move(api: Api) -> None:
    event_id = send(api, {"x": 1})
    api.process_events()
    run_ids = sorted(api.engine.store.event_run_ids(event_id))
    assert len(run_ids) == 2
    finish(api, run_ids[0])
    finish(api, run_ids[1], failed=True)
    before = reads(api, event_id, run_ids)
    assert before[f"/v1/runs/{run_ids[1]}"]["data"]["steps"][1]["status"] == "Failed"

    archive_and_drop(api)
    store = api.engine.store
    assert all(store.get_run(run_id) is None for run_id in run_ids)
    assert store.get_event(event_id) is None and store.event_run_ids(event_id) == []
    assert reads(api, event_id, run_ids) == before


def test_cursors_walk_live_hot_and_archived_runs_once_each(api: Api) -> None:
    events = [send(api, {"i": i}) for i in range(6)]
    api.process_events()
    run_ids = [rid for eid in events for rid in api.engine.store.event_run_ids(eid)]
    for run_id in run_ids[:8]:
        finish(api, run_id)
    now = api.engine.now()
    archive_and_drop(api)  # the first 8 runs and every event: archived and dropped
    for run_id in run_ids[8:10]:
        finish(api, run_id)
    while api.engine.archiver.archive_once(now):
        pass  # 2 archived, still in Redis too; the last 2 are live
    expected = _ids(api.client.get("/v1/runs?limit=100"))
    assert sorted(expected) == sorted(run_ids) and len(expected) == 12
    for limit in (1, 3, 5):
        walked: list[str] = []
        url = f"/v1/runs?limit={limit}"
        while True:
            body = check(api.client.get(url), "get", "/v1/runs")
            walked += [run["run_id"] for run in body["data"]]
            cursor = body["metadata"]["next_cursor"]
            if cursor is None:
                break
            url = f"/v1/runs?limit={limit}&cursor={cursor}"
        assert walked == expected
    completed = _ids(api.client.get("/v1/runs?limit=100&status=Completed"))
    assert sorted(completed) == sorted(run_ids[:10])
    assert _ids(api.client.get("/v1/runs?limit=100&status=Queued")) == [
        r for r in expected if r in run_ids[10:]
    ]
    walked_events: list[str] = []
    url = "/v1/events?limit=4"
    while url:
        body = check(api.client.get(url), "get", "/v1/events")
        walked_events += [event["internal_id"] for event in body["data"]]
        cursor = body["metadata"]["next_cursor"]
        url = f"/v1/events?limit=4&cursor={cursor}" if cursor else ""
    assert walked_events == list(reversed(events))


def _ids(response: Any) -> list[str]:
    return [run["run_id"] for run in response.get_json()["data"]]


def test_rerun_and_replay_start_from_an_archived_run(api: Api) -> None:
    event_id = send(api, {"x": 1})
    api.process_events()
    original = sorted(api.engine.store.event_run_ids(event_id))[0]
    finish(api, original, failed=True)
    archive_and_drop(api)
    assert api.engine.store.get_run(original) is None

    rerun = api.client.post(f"/v1/runs/{original}/rerun")
    assert rerun.status_code == 201
    new_id = check(rerun, "post", "/v1/runs/{run_id}/rerun")["data"]["run_id"]
    state = api.engine.store.load_run(new_id)
    assert state is not None and state.events[0]["data"] == {"x": 1} and state.stack == []
    run = check(api.client.get(f"/v1/runs/{new_id}"), "get", "/v1/runs/{run_id}")["data"]
    assert run["original_run_id"] == original and run["event_ids"] == [event_id]

    replay = api.client.post(f"/v1/runs/{original}/replay")
    data = check(replay, "post", "/v1/runs/{run_id}/replay")["data"]
    assert (data["from_step"], data["copied_steps"]) == ("hb", 1)
    copied = api.engine.store.load_run(data["run_id"])
    assert copied is not None and copied.stack == ["ha"] and copied.steps == {"ha": {"data": "A"}}

    cancel = api.client.post(f"/v1/runs/{original}/cancel")
    assert check(cancel, "post", "/v1/runs/{run_id}/cancel")["code"] == "conflict"


def test_an_unreachable_history_store_answers_503_and_live_runs_still_show(
    redis_url: str,
) -> None:
    down = make_api(redis_url, history_url="postgresql://postgres@127.0.0.1:1/stepline")
    try:
        down.register(fn("f", Trigger(event="a/b")))
        event_id = send(down, {"x": 1})
        down.process_events()
        [run_id] = down.engine.store.event_run_ids(event_id)
        live = down.client.get(f"/v1/runs/{run_id}")
        assert check(live, "get", "/v1/runs/{run_id}")["data"]["status"] == "Queued"
        for template, url in (
            ("/v1/runs", "/v1/runs"),
            ("/v1/runs/{run_id}", "/v1/runs/nope"),
            ("/v1/events", "/v1/events"),
        ):
            response = down.client.get(url)
            assert response.status_code == 503
            assert check(response, "get", template)["code"] == "history_unavailable"
    finally:
        close(down)
