"""lua/create_run.lua: idempotent run creation, run lists and event links."""

from __future__ import annotations

import redis

from app.models import Job, JobKind
from app.state.store import QueuedJob, Store
from tests.lua.conftest import T0, new_run


def test_creates_a_queued_run(store: Store) -> None:
    assert store.create_run(new_run(correlation_id="parent.step")) == ("01RUN", True)

    state = store.load_run("01RUN")
    assert state is not None
    assert state.status == "Queued"
    assert state.function_id == "app-fn"
    assert state.events == new_run().events
    assert state.steps == {} and state.stack == []
    assert state.disable_immediate_execution is False
    assert state.created_at == T0 and state.started_at is None
    assert state.correlation_id == "parent.step"

    view = store.get_run("01RUN")
    assert view is not None
    assert view.event_ids == ["01EVT"]
    assert (view.ended_at, view.output, view.error, view.steps) == (None, None, None, [])
    assert store.event_run_ids("01EVT") == ["01RUN"]


def test_calling_twice_is_harmless(store: Store, client: redis.Redis) -> None:
    store.create_run(new_run())
    before = client.hgetall("sl:{01RUN}:run")
    assert store.create_run(new_run(created_at=T0 + 5)) == ("01RUN", False)
    assert client.hgetall("sl:{01RUN}:run") == before
    assert client.zcard("sl:runs") == 1


def test_idempotency_key_returns_the_first_run(store: Store, client: redis.Redis) -> None:
    first = new_run("01A", idempotency_key="app-fn:k", idempotency_ttl_ms=1000)
    second = new_run("01B", idempotency_key="app-fn:k", idempotency_ttl_ms=1000)
    assert store.create_run(first) == ("01A", True)
    assert store.create_run(second) == ("01A", False)
    assert store.load_run("01B") is None
    assert 0 < client.pttl("sl:idem:app-fn:k") <= 1000
    # Repeating the first call is harmless too.
    assert store.create_run(first) == ("01A", False)


def test_links_every_event_and_lists_runs_newest_first(store: Store) -> None:
    for i in range(5):
        fn = "app-a" if i % 2 == 0 else "app-b"
        store.create_run(new_run(f"01R{i}", fn, created_at=T0 + i, event_ids=["e1", f"x{i}"]))

    assert store.event_run_ids("e1") == [f"01R{i}" for i in range(5)]
    assert store.event_run_ids("x3") == ["01R3"]
    assert [r.run_id for r in store.list_runs(10)] == ["01R4", "01R3", "01R2", "01R1", "01R0"]
    assert [r.run_id for r in store.list_runs(2)] == ["01R4", "01R3"]
    assert [r.run_id for r in store.list_runs(2, before="01R3")] == ["01R2", "01R1"]
    assert [r.run_id for r in store.list_runs(9, before="01R0")] == []
    assert [r.run_id for r in store.list_runs(9, function_id="app-a")] == ["01R4", "01R2", "01R0"]
    assert [r.run_id for r in store.list_runs(9, "app-a", before="01R4")] == ["01R2", "01R0"]
    assert store.list_runs(9, function_id="nope") == []
    assert store.list_runs(9, before="unknown") == []
    assert store.list_runs(0) == []


def test_mark_started_once(store: Store, run: str) -> None:
    store.mark_started(run, T0 + 10)
    store.mark_started(run, T0 + 20)
    state = store.load_run(run)
    assert state is not None
    assert (state.status, state.started_at) == ("Running", T0 + 10)

    store.finish_run(run, "Completed", 1, None, T0 + 30)
    store.mark_started(run, T0 + 40)
    view = store.get_run(run)
    assert view is not None
    assert (view.status, view.started_at) == ("Completed", T0 + 10)


def test_mark_started_leaves_a_missing_run_alone(store: Store, client: redis.Redis) -> None:
    store.mark_started("nope", T0)
    assert client.exists("sl:{nope}:run") == 0
    assert store.load_run("nope") is None and store.get_run("nope") is None


def _start(run_id: str = "01RUN", send_by: int = T0 + 60_000) -> QueuedJob:
    job = Job(kind=JobKind.START, id=f"{run_id}:start", run_id=run_id)
    return QueuedJob(job=job, send_by=send_by, due_at=T0, soon=True)


def test_the_start_job_is_written_with_the_run(store: Store, client: redis.Redis) -> None:
    """One script creates the run and its start job: no crash can leave a Queued run that
    no job will start."""
    assert store.create_run(new_run(), _start()) == ("01RUN", True)
    assert Job.model_validate_json(client.hget("sl:jobs", "01RUN:start") or "") == _start().job
    assert client.zscore("sl:jobs:due", "01RUN:start") == T0 + 60_000
    assert client.zrange("sl:jobs:by-run", 0, -1) == ["01RUN|01RUN:start"]
    # The tick sends it if nobody began it by its send-by time.
    assert [job.id for job, _ in store.release_upcoming(T0 + 60_000, 60_000, 10, 0)] == [
        "01RUN:start"
    ]


def test_a_repeat_or_a_taken_key_writes_no_start_job(store: Store, client: redis.Redis) -> None:
    first = new_run("01A", idempotency_key="app-fn:k")
    assert store.create_run(first, _start("01A")) == ("01A", True)
    store.finish_job("01A:start", "worker-1")  # ran: tombstoned
    assert store.create_run(first, _start("01A")) == ("01A", False)
    second = new_run("01B", idempotency_key="app-fn:k")
    assert store.create_run(second, _start("01B")) == ("01A", False)
    assert client.hkeys("sl:jobs") == []
