"""`GET /v1/workers`: each worker's heartbeat record, beat's last tick, the queue's depth and
its oldest overdue job, each Celery queue's jobs waiting for a worker and the oldest one's
age, and warnings when nothing is alive to run jobs."""

from __future__ import annotations

from app.liveness import Heartbeat
from app.models import FunctionConfig, Job, JobKind, Trigger
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
    main, sdk = data["queue"]["queues"]
    assert (main["name"], main["waiting"], main["complete"]) == ("stepline", jobs, True)
    assert 120 <= main["oldest_waiting_seconds"] <= 130  # due when they were made
    assert sdk == {
        "name": "stepline-sdk",
        "waiting": 0,
        "complete": True,
        "oldest_waiting_at": None,
        "oldest_waiting_seconds": None,
    }


def test_the_oldest_waiting_job_per_queue_keeps_its_age_through_resends(api: Api) -> None:
    """A job waits from when it became due, however often the tick re-sent it; a job a
    worker holds and a timer not yet due do not wait; a run of an SDK app's function waits
    on the SDK queue."""
    api.register(fn())
    api.register(
        FunctionConfig(
            id="sdk-w",
            name="w",
            app_id="sdk",
            triggers=[Trigger(event="w/sdk")],
            driver="http",
            url="http://127.0.0.1:1/api/inngest",
        ),
        app_id="sdk",
    )
    engine = api.engine
    now = engine.now()
    old, newer = now - 600_000, now - 30_000
    [first] = engine.runner.ingest([{"name": "w/go"}], old)
    engine.runner.process_event(first, old)  # an event job and a start job, due 10 min ago
    [second] = engine.runner.ingest([{"name": "w/sdk"}], newer)
    engine.runner.process_event(second, newer)  # its start job goes to the SDK queue
    for at in (old + 61_000, old + 122_000, now - 60_000):  # the tick re-sent them
        assert engine.queue.release_due(at) > 0
    engine.queue.enqueue(Job(id="t:sleep", kind=JobKind.SLEEP), now + 30_000, now)
    held = f"event:{second}"
    assert engine.store.begin_job(held, "worker-token", now, 60_000) != "gone"

    data = api.client.get("/v1/workers").get_json()["data"]
    main, sdk = data["queue"]["queues"]
    assert main["name"] == "stepline" and main["waiting"] == 2  # first's event and start jobs
    assert 600 <= main["oldest_waiting_seconds"] <= 610
    assert sdk["name"] == "stepline-sdk" and sdk["waiting"] == 1
    assert 30 <= sdk["oldest_waiting_seconds"] <= 40


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
    assert [q["waiting"] for q in data["queue"]["queues"]] == [0, 0]
