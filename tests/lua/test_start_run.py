"""lua/start_run.lua: lease a Queued run's start job, admit it under concurrency and throttle,
and mark the run started, in one call."""

from __future__ import annotations

import redis

from app.models import Job, JobKind
from app.state.runs import RunStart
from app.state.slots import SlotStore
from app.state.store import QueuedJob, Store
from tests.lua.conftest import SLOT, T0, THROTTLE, make_admit, new_run

LEASE_MS = 30_000
JOB = Job(kind=JobKind.START, id="01RUN:start", run_id="01RUN")


def _created(store: Store) -> None:
    planned = QueuedJob(job=JOB, send_by=T0 + 60_000, due_at=T0, soon=True)
    assert store.create_run(new_run(), planned) == ("01RUN", True)


def test_leases_the_job_and_starts_the_run(store: Store, client: redis.Redis) -> None:
    _created(store)
    start = store.start_run(JOB, "app-fn", "tok", T0 + 5, LEASE_MS)
    leased, started = start.leased, start.started
    assert not isinstance(leased, str)
    assert (leased.job, leased.failures, started) == (JOB, 0, True)
    state = store.load_run("01RUN")
    assert state is not None and (state.status, state.started_at) == ("Running", T0 + 5)
    assert client.zrange("sl:runs:st:Running:fn:app-fn", 0, -1) == ["01RUN"]
    assert client.zcard("sl:runs:st:Queued") == 0
    assert client.hget("sl:metric:runs_started_total", "app-fn") == "1"
    assert client.hget("sl:jobs:owner", JOB.id) == "tok"
    assert client.zscore("sl:jobs:due", JOB.id) == T0 + 5 + LEASE_MS


def test_a_repeat_after_a_lost_reply_answers_the_same(store: Store, client: redis.Redis) -> None:
    _created(store)
    first = store.start_run(JOB, "app-fn", "tok", T0 + 5, LEASE_MS)
    assert first.started is True
    assert store.start_run(JOB, "app-fn", "tok", T0 + 5, LEASE_MS) == first
    assert client.hget("sl:metric:runs_started_total", "app-fn") == "1"
    state = store.load_run("01RUN")
    assert state is not None and state.started_at == T0 + 5


def test_a_run_started_by_another_delivery_is_leased_but_not_started_again(
    store: Store, client: redis.Redis
) -> None:
    _created(store)
    assert store.start_run(JOB, "app-fn", "first", T0 + 5, LEASE_MS).started is True
    # Its lease runs out (the first delivery died): the next one takes the job over, counted
    # as a lost delivery, and finds the run started.
    start = store.start_run(JOB, "app-fn", "second", T0 + 5 + LEASE_MS, LEASE_MS)
    leased, started = start.leased, start.started
    assert not isinstance(leased, str) and leased.failures == 1 and started is False
    state = store.load_run("01RUN")
    assert state is not None and state.started_at == T0 + 5
    assert client.hget("sl:metric:runs_started_total", "app-fn") == "1"


def test_a_busy_or_gone_job_leaves_the_run_queued(store: Store, client: redis.Redis) -> None:
    _created(store)
    assert store.lease_job(JOB.id, "holder", T0, LEASE_MS) != "busy"
    assert store.start_run(JOB, "app-fn", "tok", T0 + 1, LEASE_MS) == RunStart("busy")
    store.finish_job(JOB.id, "holder")
    assert store.start_run(JOB, "app-fn", "tok", T0 + 2, LEASE_MS) == RunStart("gone")
    state = store.load_run("01RUN")
    assert state is not None and (state.status, state.started_at) == ("Queued", None)
    assert client.hget("sl:metric:runs_started_total", "app-fn") is None


def test_an_ended_run_is_not_started(store: Store) -> None:
    _created(store)
    store.finish_run("01RUN", "Cancelled", None, None, T0 + 1)
    planned = QueuedJob(job=JOB, send_by=T0 + 60_000, due_at=T0, soon=True)
    # finish_run dropped the run's jobs; put one back to see the run is left alone.
    store.enqueue_job(planned.job, T0, T0 + 60_000)
    assert store.start_run(JOB, "app-fn", "tok", T0 + 2, LEASE_MS).started is False
    view = store.get_run("01RUN")
    assert view is not None and (view.status, view.started_at) == ("Cancelled", None)


# --- with an admission: concurrency and throttle in the same call -----------------------------


def _limited(store: Store, run_id: str) -> Job:
    job = Job(kind=JobKind.START, id=f"{run_id}:start", run_id=run_id, function_id="app-fn")
    planned = QueuedJob(job=job, send_by=T0 + 60_000, due_at=T0, soon=True)
    assert store.create_run(new_run(run_id), planned) == (run_id, True)
    return job


def test_a_free_slot_is_taken_and_the_run_started(store: Store, client: redis.Redis) -> None:
    job = _limited(store, "01RUN")
    start = store.start_run(job, "app-fn", "tok", T0 + 5, LEASE_MS, make_admit())
    assert not isinstance(start.leased, str) and start.started is True
    assert start.leased.job == job and start.woken == []
    assert client.zscore(f"sl:slots:{SLOT}", job.id) == T0 + 5 + LEASE_MS
    assert client.hget("sl:jobs:owner", job.id) == "tok"
    state = store.load_run("01RUN")
    assert state is not None and (state.status, state.started_at) == ("Running", T0 + 5)
    # A repeat after a lost reply: the same answer, nothing taken or counted twice.
    assert store.start_run(job, "app-fn", "tok", T0 + 5, LEASE_MS, make_admit()) == start
    assert client.zcard(f"sl:slots:{SLOT}") == 1
    assert client.hget("sl:metric:runs_started_total", "app-fn") == "1"


def test_a_full_slot_parks_the_job_and_a_repeat_answers_wait(
    store: Store, client: redis.Redis
) -> None:
    first, second = _limited(store, "01A"), _limited(store, "01B")
    assert store.start_run(first, "app-fn", "t1", T0 + 5, LEASE_MS, make_admit()).started
    parked = store.start_run(second, "app-fn", "t2", T0 + 6, LEASE_MS, make_admit(score=T0 + 1))
    assert parked == RunStart("wait")
    # Parked as slots_acquire.lua parks it: in the constraint's wait list, owner 'parked'.
    assert client.zrange(f"sl:slots-wait:{SLOT}", 0, -1, withscores=True) == [(second.id, T0 + 1)]
    assert client.smembers("sl:slots:waiting") == {SLOT}
    assert client.hget("sl:jobs:owner", second.id) == "parked"
    assert client.zscore("sl:jobs:due", second.id) == T0 + 6 + 300_000
    state = store.load_run("01B")
    assert state is not None and (state.status, state.started_at) == ("Queued", None)
    # The repeat after a lost reply (or any delivery meanwhile) answers as the first call did.
    assert store.start_run(second, "app-fn", "t2", T0 + 6, LEASE_MS, make_admit()) == parked
    assert store.start_run(second, "app-fn", "t3", T0 + 7, LEASE_MS, make_admit()) == parked
    assert client.hget("sl:jobs:owner", second.id) == "parked"
    # The holder gives its slot back: the waiter is woken, and its delivery starts it.
    woken = SlotStore.over(store).release(first.id, [(SLOT, 1)], T0 + 8, LEASE_MS, 60_000)
    assert [job.id for job in woken] == [second.id]
    start = store.start_run(second, "app-fn", "t4", T0 + 9, LEASE_MS, make_admit())
    assert not isinstance(start.leased, str) and start.started is True
    assert start.leased.failures == 0  # a parked or woken owner is no lost delivery
    assert client.zrange(f"sl:slots:{SLOT}", 0, -1) == [second.id]
    assert client.exists(f"sl:slots-wait:{SLOT}") == 0
    assert client.smembers("sl:slots:waiting") == set()


def test_a_waiter_ahead_is_woken_on_the_way(store: Store, client: redis.Redis) -> None:
    """A slot freed by an expired holder goes to the waiter ahead (by score), woken by the
    start call of the one behind it, which then parks."""
    first, ahead, behind = _limited(store, "01A"), _limited(store, "01B"), _limited(store, "01C")
    store.start_run(first, "app-fn", "t1", T0, LEASE_MS, make_admit())
    waiting = store.start_run(ahead, "app-fn", "t2", T0, LEASE_MS, make_admit(score=T0))
    assert waiting.leased == "wait"
    late = T0 + LEASE_MS + 1  # the holder died: its slot lease ran out
    start = store.start_run(behind, "app-fn", "t3", late, LEASE_MS, make_admit(score=T0 + 1))
    assert start.leased == "wait" and [job.id for job in start.woken] == [ahead.id]
    assert client.hget("sl:jobs:owner", ahead.id) == "woken"
    assert client.zrange(f"sl:slots-wait:{SLOT}", 0, -1) == [behind.id]


def test_an_ended_run_takes_no_slot(store: Store, client: redis.Redis) -> None:
    job = _limited(store, "01RUN")
    store.finish_run("01RUN", "Cancelled", None, None, T0 + 1)
    # finish_run dropped the run's jobs (enqueue_job refuses an ended run's): a stray one.
    client.hset("sl:jobs", job.id, job.model_dump_json())
    start = store.start_run(job, "app-fn", "tok", T0 + 2, LEASE_MS, make_admit())
    assert not isinstance(start.leased, str) and start.started is False
    assert client.exists(f"sl:slots:{SLOT}") == 0


def test_a_throttled_start_is_deferred_and_a_repeat_gets_the_same_time(
    store: Store, client: redis.Redis
) -> None:
    first, second = _limited(store, "01A"), _limited(store, "01B")
    assert store.start_run(first, "app-fn", "t1", T0, LEASE_MS, make_admit(2, **THROTTLE)).started
    later = store.start_run(second, "app-fn", "t2", T0 + 10, LEASE_MS, make_admit(2, **THROTTLE))
    assert later == RunStart("later", start_at=T0 + 1000)
    assert client.hget("sl:jobs:owner", second.id) == "deferred"
    assert client.zscore("sl:jobs:due", second.id) == T0 + 1000 + 60_000
    assert client.zcard(f"sl:slots:{SLOT}") == 1  # no slot taken by a deferred start
    # A repeat after a lost reply: the same start time (the run's ticket), nothing consumed.
    again = store.start_run(second, "app-fn", "t2", T0 + 10, LEASE_MS, make_admit(2, **THROTTLE))
    assert again == later
    assert client.get("sl:throttle:app-fn") == str(T0 + 2000)
    # At its start time its delivery starts it.
    start = store.start_run(second, "app-fn", "t3", T0 + 1000, LEASE_MS, make_admit(2, **THROTTLE))
    assert not isinstance(start.leased, str) and start.started is True
    assert client.zcard(f"sl:slots:{SLOT}") == 2
