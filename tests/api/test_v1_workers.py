"""`GET /v1/workers`: each worker's heartbeat record, beat's last tick, the queue's depth and
its oldest overdue job, and warnings when nothing is alive to run jobs."""

from __future__ import annotations

from app.liveness import Heartbeat
from app.models import FunctionConfig, Trigger
from tests.api.conftest import Api
from tests.api.openapi_check import check


def fn() -> FunctionConfig:
    return FunctionConfig(id="app-w", name="w", app_id="app", triggers=[Trigger(event="w/go")])


def test_no_worker_no_beat_warns_and_counts_the_waiting_jobs(api: Api) -> None:
    api.register(fn())
    # Two events received two minutes ago and their runs queued then; no worker took any of
    # the jobs (the request's event job, two start jobs): all are overdue.
    then = api.engine.now() - 120_000
    ids = api.engine.runner.ingest([{"name": "w/go"}, {"name": "w/go"}], then)
    for event_id in ids:
        api.engine.runner.process_event(event_id, then)
    response = api.client.get("/v1/workers")
    check(response, "get", "/v1/workers")
    data = response.get_json()["data"]
    assert data["workers"] == {"alive": 0, "known": 0, "items": []}
    assert data["beat"]["alive"] is False and data["beat"]["last_tick"] is None
    jobs = data["queue"]["jobs"]
    assert jobs >= 3 and data["queue"]["overdue"] == jobs
    assert data["queue"]["held"] == 0
    # Sent at once, each was due to be started within the resend slack (60 s).
    assert 50 <= data["queue"]["oldest_overdue_seconds"] <= 70
    warnings = " | ".join(data["warnings"])
    assert "no worker is running" in warnings
    assert "beat is not running" in warnings
    assert f"{jobs} jobs are overdue and no worker is alive" in warnings


def test_live_workers_are_listed_with_their_jobs(api: Api) -> None:
    now = api.engine.now()
    worker = Heartbeat(
        api.engine.store, "worker", 5, now, pool="prefork", concurrency=4, queues=["q"]
    )
    worker.beat(now, ["01J0000000000000000000000A:start"], force=True)
    Heartbeat(api.engine.store, "beat", 5, now).beat(now, force=True)
    response = api.client.get("/v1/workers")
    check(response, "get", "/v1/workers")
    data = response.get_json()["data"]
    [item] = data["workers"]["items"]
    assert (item["pool"], item["concurrency"], item["queues"]) == ("prefork", 4, ["q"])
    assert item["jobs"] == ["01J0000000000000000000000A:start"] and item["job_count"] == 1
    assert item["alive"] is True and item["pid"] == worker.process.pid
    assert data["beat"]["alive"] is True and data["warnings"] == []
    assert data["queue"]["overdue"] == 0 and data["queue"]["oldest_overdue_at"] is None
