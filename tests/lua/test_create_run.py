"""lua/create_run.lua: idempotent run creation, run lists and event links."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from app.models import Job, JobKind
from app.state.runs import AdmittedCreation
from app.state.scripts import StartAdmit
from app.state.slots import SlotStore
from app.state.store import QueuedJob, Store
from tests.lua.conftest import SLOT, T0, THROTTLE, make_admit, new_run


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


def test_a_repeat_after_a_lost_reply_answers_the_run_and_changes_nothing(
    store: Store, client: redis.Redis
) -> None:
    """redis-py re-sends a script whose reply was lost: the second call finds the run."""
    assert store.create_run(new_run(), _start()) == ("01RUN", True)
    meta = client.hgetall("sl:{01RUN}:run")
    job = (
        client.hget("sl:jobs", "01RUN:start"),
        client.zscore("sl:jobs:due", "01RUN:start"),
        client.zrange("sl:jobs:by-run", 0, -1),
    )
    assert store.create_run(new_run(), _start()) == ("01RUN", False)
    assert client.hgetall("sl:{01RUN}:run") == meta
    assert (
        client.hget("sl:jobs", "01RUN:start"),
        client.zscore("sl:jobs:due", "01RUN:start"),
        client.zrange("sl:jobs:by-run", 0, -1),
    ) == job
    assert client.zcard("sl:runs") == 1
    assert client.hget("sl:metric:runs_queued_total", "app-fn") == "1"


def test_a_key_held_by_another_run_leaves_that_runs_jobs_alone(
    store: Store, client: redis.Redis
) -> None:
    first = new_run("01A", idempotency_key="app-fn:k")
    assert store.create_run(first, _start("01A")) == ("01A", True)
    client.hdel("sl:jobs", "01A:start")  # e.g. a run created before start jobs came with it
    second = new_run("01B", idempotency_key="app-fn:k")
    assert store.create_run(second, _start("01B")) == ("01A", False)
    assert client.hlen("sl:jobs") == 0  # the caller (Runner.create) enqueues 01A's start
    assert store.load_run("01B") is None


def test_mark_started_with_the_loaded_function_id(store: Store, run: str) -> None:
    store.mark_started(run, T0 + 10, "app-fn")
    store.mark_started(run, T0 + 20, "app-fn")  # repeated: started_at kept
    state = store.load_run(run)
    assert state is not None and (state.status, state.started_at) == ("Running", T0 + 10)
    with pytest.raises(redis.ResponseError, match="function id does not match"):
        store.mark_started(run, T0 + 30, "other-fn")


# --- created started: the run's start job leased to its creator (create + lease + start) ----
LEASE_MS = 30_000


def test_a_run_created_started_is_running_with_its_start_job_leased(
    store: Store, client: redis.Redis
) -> None:
    """One script call creates the run Running (started_at = created_at, counted as queued
    and started) and its start job leased to the caller: no begin_job, no mark_started."""
    assert store.create_started_run(new_run(), _start(), "tok", LEASE_MS) == ("01RUN", "started")
    state = store.load_run("01RUN")
    assert state is not None
    assert (state.status, state.started_at) == ("Running", T0)
    assert client.zrange("sl:runs:st:Running", 0, -1) == ["01RUN"]
    assert client.zrange("sl:runs:st:Running:fn:app-fn", 0, -1) == ["01RUN"]
    assert client.zcard("sl:runs:st:Queued") == 0
    assert client.zcard("sl:runs:st:Queued:fn:app-fn") == 0
    assert client.hget("sl:metric:runs_queued_total", "app-fn") == "1"
    assert client.hget("sl:metric:runs_started_total", "app-fn") == "1"
    assert store.event_run_ids("01EVT") == ["01RUN"]
    # The job is leased to the caller until created_at + lease, which is also its send-by.
    assert client.hget("sl:jobs:owner", "01RUN:start") == "tok"
    assert client.hget("sl:jobs:lease", "01RUN:start") == str(T0 + LEASE_MS)
    assert client.zscore("sl:jobs:due", "01RUN:start") == T0 + LEASE_MS
    # Another delivery finds the lease taken while it lasts.
    assert store.lease_job("01RUN:start", "other", T0 + 1, LEASE_MS) == "busy"


def test_a_repeat_of_a_started_creation_answers_started_and_changes_nothing(
    store: Store, client: redis.Redis
) -> None:
    """A lost reply makes redis-py send the same call again: it answers the first call's
    outcome, and counts nothing twice."""
    keyed = new_run(idempotency_key="app-fn:k")
    assert store.create_started_run(keyed, _start(), "tok", LEASE_MS) == ("01RUN", "started")
    before = {key: client.dump(key) for key in client.keys("sl:*")}
    assert store.create_started_run(keyed, _start(), "tok", LEASE_MS) == ("01RUN", "started")
    assert {key: client.dump(key) for key in client.keys("sl:*")} == before
    # Without an idempotency key too.
    plain = new_run("01B")
    assert store.create_started_run(plain, _start("01B"), "t2", LEASE_MS) == ("01B", "started")
    assert store.create_started_run(plain, _start("01B"), "t2", LEASE_MS) == ("01B", "started")
    assert client.hget("sl:metric:runs_started_total", "app-fn") == "2"


def test_a_started_creation_of_another_caller_or_a_taken_key_answers_exists(
    store: Store, client: redis.Redis
) -> None:
    first = new_run("01A", idempotency_key="app-fn:k")
    assert store.create_started_run(first, _start("01A"), "tok", LEASE_MS) == ("01A", "started")
    # The same run id from another caller (another token) is not this call's outcome.
    assert store.create_started_run(first, _start("01A"), "other", LEASE_MS) == ("01A", "exists")
    second = new_run("01B", idempotency_key="app-fn:k")
    assert store.create_started_run(second, _start("01B"), "t2", LEASE_MS) == ("01A", "exists")
    assert store.load_run("01B") is None
    assert client.hkeys("sl:jobs") == ["01A:start"]
    assert client.hget("sl:jobs:owner", "01A:start") == "tok"
    # Once its job is done (tombstoned), a repeat no longer claims the start.
    store.finish_job("01A:start", "tok")
    assert store.create_started_run(first, _start("01A"), "tok", LEASE_MS) == ("01A", "exists")


def test_a_started_creation_whose_job_cannot_be_written_stays_queued(
    store: Store, client: redis.Redis
) -> None:
    """A start job id that ran within the tombstone TTL is not written again: the run is
    then created Queued, nothing leased (as `create_run` with its start job)."""
    client.set("sl:job-done:01RUN:start", "1")
    assert store.create_started_run(new_run(), _start(), "tok", LEASE_MS) == ("01RUN", "created")
    state = store.load_run("01RUN")
    assert state is not None and (state.status, state.started_at) == ("Queued", None)
    assert client.hget("sl:jobs:owner", "01RUN:start") is None
    assert client.hget("sl:metric:runs_started_total", "app-fn") is None


def test_a_started_creation_whose_creator_died_is_redelivered_at_its_lease_end(
    store: Store,
) -> None:
    """The creator never reported back: the tick resends the start job when the lease runs
    out, and the delivery that takes it over (counted as a lost one) finds the run started."""
    assert store.create_started_run(new_run(), _start(), "tok", LEASE_MS) == ("01RUN", "started")
    assert store.release_upcoming(T0 + LEASE_MS - 1, 60_000, 10, 0) == []
    [(job, _)] = store.release_upcoming(T0 + LEASE_MS, 60_000, 10, 0)
    assert job.id == "01RUN:start"
    leased = store.lease_job(job.id, "second", T0 + LEASE_MS, LEASE_MS)
    assert not isinstance(leased, str) and leased.failures == 1
    assert not store.mark_started("01RUN", T0 + LEASE_MS, "app-fn")  # already started
    state = store.load_run("01RUN")
    assert state is not None and (state.status, state.started_at) == ("Running", T0)


# --- created started with an admission: a limited run's create + admit + start in one call ---


def _admitted(
    store: Store, run_id: str, token: str, admit: StartAdmit, **run: Any
) -> AdmittedCreation:
    return store.create_admitted_run(new_run(run_id, **run), _start(run_id), token, LEASE_MS, admit)


def test_a_limited_run_is_created_started_holding_its_slot(
    store: Store, client: redis.Redis
) -> None:
    """One call creates the run, takes its slot and starts it, its start job leased to the
    caller: no start_run (nor slots_acquire, begin_job, mark_started) after it."""
    got = _admitted(store, "01RUN", "tok", make_admit())
    assert got == AdmittedCreation("01RUN", "started")
    assert client.zscore(f"sl:slots:{SLOT}", "01RUN:start") == T0 + LEASE_MS
    assert client.hget("sl:jobs:owner", "01RUN:start") == "tok"
    assert client.zscore("sl:jobs:due", "01RUN:start") == T0 + LEASE_MS
    state = store.load_run("01RUN")
    assert state is not None and (state.status, state.started_at) == ("Running", T0)
    assert client.hget("sl:metric:runs_started_total", "app-fn") == "1"
    # A repeat after a lost reply: the same answer, nothing taken or counted twice.
    before = {key: client.dump(key) for key in client.keys("sl:*")}
    assert _admitted(store, "01RUN", "tok", make_admit()) == got
    assert {key: client.dump(key) for key in client.keys("sl:*")} == before
    # Keyed (an idempotency key before the admission's keys) too.
    keyed = _admitted(store, "01K", "t2", make_admit(2), idempotency_key="app-fn:k")
    assert keyed == AdmittedCreation("01K", "started")
    assert _admitted(store, "01K", "t2", make_admit(2), idempotency_key="app-fn:k") == keyed
    assert _admitted(store, "01L", "t3", make_admit(2), idempotency_key="app-fn:k").code == "exists"
    assert client.zcard(f"sl:slots:{SLOT}") == 2


def test_a_full_constraint_parks_the_created_run_and_a_repeat_answers_wait(
    store: Store, client: redis.Redis
) -> None:
    """The slot is taken: the run is created Queued, its start job parked in the wait list
    as start_run.lua parks it; the holder's release wakes it and its delivery starts it."""
    assert _admitted(store, "01A", "t1", make_admit()).code == "started"
    parked = _admitted(store, "01B", "t2", make_admit(score=T0 + 1))
    assert parked == AdmittedCreation("01B", "wait")
    assert client.zrange(f"sl:slots-wait:{SLOT}", 0, -1, withscores=True) == [("01B:start", T0 + 1)]
    assert client.smembers("sl:slots:waiting") == {SLOT}
    assert client.hget("sl:jobs:owner", "01B:start") == "parked"
    assert client.zscore("sl:jobs:due", "01B:start") == T0 + 300_000
    state = store.load_run("01B")
    assert state is not None and (state.status, state.started_at) == ("Queued", None)
    assert client.zrange("sl:runs:st:Queued", 0, -1) == ["01B"]
    assert client.hget("sl:metric:runs_started_total", "app-fn") == "1"
    # The repeat after a lost reply answers as the first call did, and changes nothing.
    before = {key: client.dump(key) for key in client.keys("sl:*")}
    assert _admitted(store, "01B", "t2", make_admit(score=T0 + 1)) == parked
    assert {key: client.dump(key) for key in client.keys("sl:*")} == before
    # The holder gives its slot back: the waiter is woken, and its delivery starts it.
    woken = SlotStore.over(store).release("01A:start", [(SLOT, 1)], T0 + 8, LEASE_MS, 60_000)
    assert [job.id for job in woken] == ["01B:start"]
    job = Job(kind=JobKind.START, id="01B:start", run_id="01B")
    start = store.start_run(job, "app-fn", "t4", T0 + 9, LEASE_MS, make_admit())
    assert not isinstance(start.leased, str) and start.started is True


def test_a_created_run_wakes_a_waiter_ahead_and_parks_behind_it(
    store: Store, client: redis.Redis
) -> None:
    """A slot freed by an expired holder goes to the waiter ahead (by score): the creation
    wakes it (for the caller to send) and parks its own job behind it."""
    assert _admitted(store, "01A", "t1", make_admit()).code == "started"
    assert _admitted(store, "01B", "t2", make_admit(score=T0)).code == "wait"
    late = T0 + LEASE_MS + 1  # the holder died: its slot lease ran out
    got = _admitted(store, "01C", "t3", make_admit(score=late), created_at=late)
    assert got.code == "wait" and [job.id for job in got.woken] == ["01B:start"]
    assert client.hget("sl:jobs:owner", "01B:start") == "woken"
    assert client.zrange(f"sl:slots-wait:{SLOT}", 0, -1) == ["01C:start"]


def test_a_throttled_creation_is_deferred_and_a_repeat_gets_the_same_time(
    store: Store, client: redis.Redis
) -> None:
    assert _admitted(store, "01A", "t1", make_admit(2, **THROTTLE)).code == "started"
    later = _admitted(store, "01B", "t2", make_admit(2, **THROTTLE), created_at=T0 + 10)
    assert later == AdmittedCreation("01B", "later", start_at=T0 + 1000)
    assert client.hget("sl:jobs:owner", "01B:start") == "deferred"
    assert client.zscore("sl:jobs:due", "01B:start") == T0 + 1000 + 60_000
    assert client.zcard(f"sl:slots:{SLOT}") == 1  # no slot taken by a deferred start
    state = store.load_run("01B")
    assert state is not None and (state.status, state.started_at) == ("Queued", None)
    # A repeat after a lost reply: the same start time (the run's ticket), nothing consumed.
    before = {key: client.dump(key) for key in client.keys("sl:*")}
    again = _admitted(store, "01B", "t2", make_admit(2, **THROTTLE), created_at=T0 + 10)
    assert again == later
    assert {key: client.dump(key) for key in client.keys("sl:*")} == before
    # At its start time its delivery starts it (the ticket start_run.lua reads).
    job = Job(kind=JobKind.START, id="01B:start", run_id="01B")
    start = store.start_run(job, "app-fn", "t3", T0 + 1000, LEASE_MS, make_admit(2, **THROTTLE))
    assert not isinstance(start.leased, str) and start.started is True
    assert client.zcard(f"sl:slots:{SLOT}") == 2
