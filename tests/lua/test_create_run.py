"""lua/create_run.lua: idempotent run creation, run lists and event links."""

from __future__ import annotations

import pytest
import redis

from app.models import Job, JobKind
from app.state.store import Store
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


# --- the start job, recorded with the run (Store.start_run) -----------------------------------
def start(run_id: str = "01RUN") -> Job:
    return Job(id=f"{run_id}:start", kind=JobKind.START, run_id=run_id)


def job_state(client: redis.Redis, job_id: str) -> tuple[object, ...]:
    return (
        client.hget("sl:jobs", job_id),
        client.zscore("sl:jobs:due", job_id),
        client.zrange("sl:jobs:by-run", 0, -1),
        client.exists(f"sl:job-done:{job_id}"),
    )


def test_start_run_records_the_run_and_its_start_job(store: Store, client: redis.Redis) -> None:
    assert store.start_run(new_run(), start(), T0 + 30_000) == ("01RUN", True, True)

    state = store.load_run("01RUN")
    assert state is not None and state.status == "Queued"
    assert client.hget("sl:jobs", "01RUN:start") == start().model_dump_json()
    assert client.zscore("sl:jobs:due", "01RUN:start") == T0 + 30_000
    assert client.zrange("sl:jobs:by-run", 0, -1) == ["01RUN|01RUN:start"]
    assert store.begin_job("01RUN:start", "tok", T0, 1000) == start()


def test_start_run_after_a_lost_reply_answers_the_same_and_changes_nothing(
    store: Store, client: redis.Redis
) -> None:
    assert store.start_run(new_run(), start(), T0 + 30_000) == ("01RUN", True, True)
    meta, job = client.hgetall("sl:{01RUN}:run"), job_state(client, "01RUN:start")
    # The same call again, as redis-py re-sends a script whose reply was lost:
    assert store.start_run(new_run(), start(), T0 + 30_000) == ("01RUN", False, False)
    assert client.hgetall("sl:{01RUN}:run") == meta
    assert job_state(client, "01RUN:start") == job
    assert client.zcard("sl:runs") == 1
    assert client.hget("sl:metric:runs_queued_total", "app-fn") == "1"


def test_start_run_heals_a_run_created_without_its_start_job(
    store: Store, client: redis.Redis
) -> None:
    store.create_run(new_run())  # e.g. by a version that enqueued the start separately
    assert client.hlen("sl:jobs") == 0
    assert store.start_run(new_run(), start(), T0) == ("01RUN", False, True)
    assert client.hexists("sl:jobs", "01RUN:start")


def test_start_run_never_restarts_a_started_or_ended_run(store: Store, client: redis.Redis) -> None:
    store.start_run(new_run(), start(), T0)
    store.finish_job("01RUN:start", "tok")  # started and done: tombstoned
    assert store.start_run(new_run(), start(), T0) == ("01RUN", False, False)
    assert not client.hexists("sl:jobs", "01RUN:start")

    store.start_run(new_run("01B"), start("01B"), T0)
    client.hdel("sl:jobs", "01B:start")
    client.hset("sl:{01B}:run", "status", "Completed")
    assert store.start_run(new_run("01B"), start("01B"), T0) == ("01B", False, False)
    assert not client.hexists("sl:jobs", "01B:start")


def test_start_run_under_a_taken_key_leaves_the_other_runs_jobs_alone(
    store: Store, client: redis.Redis
) -> None:
    first = new_run("01A", idempotency_key="app-fn:k")
    second = new_run("01B", idempotency_key="app-fn:k")
    assert store.start_run(first, start("01A"), T0) == ("01A", True, True)
    client.hdel("sl:jobs", "01A:start")
    assert store.start_run(second, start("01B"), T0) == ("01A", False, False)
    assert client.hlen("sl:jobs") == 0  # the caller enqueues 01A's start itself
    assert store.load_run("01B") is None


def test_mark_started_with_the_loaded_function_id(store: Store, run: str) -> None:
    store.mark_started(run, T0 + 10, "app-fn")
    store.mark_started(run, T0 + 20, "app-fn")  # repeated: started_at kept
    state = store.load_run(run)
    assert state is not None and (state.status, state.started_at) == ("Running", T0 + 10)
    with pytest.raises(redis.ResponseError, match="function id does not match"):
        store.mark_started(run, T0 + 30, "other-fn")
