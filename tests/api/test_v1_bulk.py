"""`/v1/bulk`: cancel and replay by filter as background jobs, over a real Redis and a real
history store (SQLite and PostgreSQL). The BULK jobs run through the engine's JobRunner, as a
worker runs them; a worker that died part-way is reproduced by doing part of a batch's work
(acting on runs) without moving the cursor, then running the job again."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from app import bulk
from app.models import Trigger
from app.replay import replay
from tests.api.conftest import Api, close, fn, make_api
from tests.api.openapi_check import check
from tests.api.test_v1_history import archive_and_drop, finish

PATH = "/v1/bulk"


@pytest.fixture
def api(redis_url: str, history_url: str) -> Iterator[Api]:
    made = make_api(redis_url, history_url=history_url)
    made.register(fn("f", Trigger(event="shop/order")), fn("g", Trigger(event="shop/other")))
    yield made
    close(made)


def _runs(api: Api, n: int, name: str = "shop/order", **data: Any) -> str:
    response = api.client.post("/e/k", json={"name": name, "data": {"n": n, **data}})
    [event_id] = response.get_json()["ids"]
    api.process_events()
    [run] = api.client.get(f"/v1/events/{event_id}/runs").get_json()["data"]
    return str(run["run_id"])


def _work(api: Api) -> int:
    """Run every queued BULK job once, in order, as workers would; returns how many ran."""
    ran = 0
    seen: set[str] = set()
    while pending := [j for j in api.sender.job_ids("stepline.bulk") if j not in seen]:
        for job_id in pending:
            seen.add(job_id)
            assert api.engine.jobs.handle(job_id) in ("done", "gone")
            ran += 1
    return ran


def _bulk(api: Api, bulk_id: str) -> dict[str, Any]:
    response = api.client.get(f"{PATH}/{bulk_id}")
    return check(response, "get", f"{PATH}/{{bulk_id}}")["data"]  # type: ignore[no-any-return]


def _replays_of(api: Api, run_id: str) -> list[str]:
    body = api.client.get("/v1/runs?limit=100&filter=true").get_json()
    return [r["run_id"] for r in body["data"] if r["original_run_id"] == run_id]


def test_replay_by_filter_in_both_stores_with_dry_run_progress_and_no_repeat(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = {}
    for n in range(8):
        runs[n] = _runs(api, n, region="eu" if n % 2 else "us")
        finish(api, runs[n], failed=n < 6)
    archive_and_drop(api)  # 0..7 are only in the history store now
    for n in range(8, 11):
        runs[n] = _runs(api, n, region="eu")
        finish(api, runs[n], failed=True)  # 8..10 ended, still in Redis only
    runs[11] = _runs(api, 11, region="eu")  # live: not replayable

    spec = {"action": "replay", "function_id": "app-f", "status": "Failed"}
    spec["filter"] = 'event.data.region == "eu"'
    dry = check(api.client.post(PATH, json={**spec, "dry_run": True}), "post", PATH)["data"]
    assert dry == {"dry_run": True, "action": "replay", "matched": 6, "exact": True}
    # eu and failed: 1, 3, 5 (archived), 8, 9, 10 (live)

    monkeypatch.setattr(bulk, "BATCH", 2)
    monkeypatch.setattr(bulk, "BUDGET_SECONDS", 0.0)  # one batch per job: many jobs in a row
    response = api.client.post(PATH, json=spec)
    assert response.status_code == 201
    started = check(response, "post", PATH)["data"]
    assert started["state"] == "running" and started["estimate"] == 6
    assert _work(api) >= 3
    done = _bulk(api, started["id"])
    assert (done["state"], done["matched"], done["done"], done["failed"]) == ("done", 6, 6, 0)
    for n in (1, 3, 5, 8, 9, 10):
        assert len(_replays_of(api, runs[n])) == 1, n
    for n in (0, 2, 4, 6, 7, 11):
        assert _replays_of(api, runs[n]) == [], n
    # the replays it made are newer than the operation: a second one selects the same 6
    again = api.client.post(PATH, json={**spec, "dry_run": True}).get_json()["data"]
    assert again["matched"] == 6
    listed = api.client.get(PATH).get_json()["data"]
    assert [item["id"] for item in listed] == [started["id"]]


def test_a_worker_that_died_mid_batch_is_resumed_without_repeating_a_run(api: Api) -> None:
    runs = [_runs(api, n) for n in range(5)]
    for run_id in runs:
        finish(api, run_id, failed=True)
    response = api.client.post(PATH, json={"action": "replay", "filter": "event.data.n >= 1"})
    bulk_id = response.get_json()["data"]["id"]
    record = api.engine.bulks.store.get(bulk_id)
    assert record is not None
    spec = bulk.Spec.from_json(record.spec)
    # What the dead worker got done: run 4 replayed and recorded, run 3 replayed only (it
    # died before recording), the cursor never moved.
    views = {view.run_id: view for view in api.engine.bulks._select(spec, None).items}
    api.engine.bulks._act(bulk_id, spec, views[runs[4]])
    replay(
        api.engine.reads,
        api.engine.runner,
        runs[3],
        api.engine.now(),
        idempotency_key=f"bulk-{bulk_id}-{runs[3]}",
    )
    assert _bulk(api, bulk_id)["matched"] == 1
    _work(api)  # beat resends the job; it resumes from the cursor
    done = _bulk(api, bulk_id)
    assert (done["state"], done["matched"], done["done"], done["failed"]) == ("done", 4, 4, 0)
    assert [len(_replays_of(api, run_id)) for run_id in runs] == [0, 1, 1, 1, 1]


def test_cancel_by_filter_and_replay_failures_are_counted(api: Api) -> None:
    live = [_runs(api, n, tier="gold" if n % 2 else "free") for n in range(6)]
    api.engine.store.mark_started(live[1], api.engine.now())
    other = _runs(api, 1, name="shop/other", tier="gold")
    spec = {"action": "cancel", "filter": 'event.data.tier == "gold"'}
    dry = api.client.post(PATH, json={**spec, "dry_run": True}).get_json()["data"]
    assert (dry["matched"], dry["exact"]) == (4, True)  # 1 (running), 3, 5 and g's run
    bulk_id = api.client.post(PATH, json={**spec, "function_id": "app-f"}).get_json()["data"]["id"]
    _work(api)
    done = _bulk(api, bulk_id)
    assert (done["matched"], done["done"], done["skipped"]) == (3, 3, 0)
    statuses = [api.engine.reads.get_run(run_id).status for run_id in live]  # type: ignore[union-attr]
    assert statuses == ["Queued", "Cancelled", "Queued", "Cancelled", "Queued", "Cancelled"]
    assert api.engine.reads.get_run(other).status == "Queued"  # type: ignore[union-attr]

    # replaying runs of a function that is gone fails each run, and says why
    api.engine.store.save_app("app", None, [fn("g", Trigger(event="shop/other"))], api.engine.now())
    bulk_id = api.client.post(PATH, json={"action": "replay", "status": "Cancelled"}).get_json()[
        "data"
    ]["id"]
    _work(api)
    failed = _bulk(api, bulk_id)
    assert (failed["state"], failed["matched"], failed["failed"]) == ("done", 3, 3)


def test_a_stopped_operation_does_nothing_more(api: Api) -> None:
    runs = [_runs(api, n) for n in range(3)]
    bulk_id = api.client.post(PATH, json={"action": "cancel"}).get_json()["data"]["id"]
    response = api.client.post(f"{PATH}/{bulk_id}/stop")
    stopped = check(response, "post", f"{PATH}/{{bulk_id}}/stop")["data"]
    assert stopped["state"] == "stopped" and stopped["finished_at"]
    _work(api)
    assert _bulk(api, bulk_id)["matched"] == 0
    assert all(api.engine.reads.get_run(r).status == "Queued" for r in runs)  # type: ignore[union-attr]
    again = api.client.post(f"{PATH}/{bulk_id}/stop")
    assert again.status_code == 409 and "not running (stopped)" in again.get_json()["error"]
    assert api.client.post(f"{PATH}/nope/stop").status_code == 404
    assert api.client.get(f"{PATH}/nope").status_code == 404


@pytest.mark.parametrize(
    ("body", "field", "needle"),
    [
        ({"action": "delete"}, "action", "cancel or replay"),
        ({"action": "replay", "status": "Queued"}, "status", "not Queued"),
        ({"action": "cancel", "status": "Done"}, "status", "must be one of"),
        ({"action": "cancel", "filter": "event.data.x =="}, "filter", "invalid expression"),
        ({"action": "cancel", "filter": "evnt.x == 1"}, "filter", "unknown name"),
        ({"action": "cancel", "after": "soon"}, "after", "ISO-8601"),
        ({"action": "cancel", "after": 5, "before": 5}, "after", "before before"),
        ({"action": "cancel", "dry_run": "yes"}, "dry_run", "true or false"),
        ({"action": "cancel", "limit": 3}, "limit", "unknown field"),
    ],
)
def test_bad_requests_name_the_problem(
    api: Api, body: dict[str, Any], field: str, needle: str
) -> None:
    response = api.client.post(PATH, json=body)
    assert response.status_code == 400, response.get_json()
    error = check(response, "post", PATH)
    assert error["field"] == field and needle in error["error"]
    assert (
        api.client.post(PATH, json={"action": "cancel", "function_id": "nope"}).status_code == 404
    )
