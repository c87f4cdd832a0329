"""lua/start_run.lua: lease a Queued run's start job and mark the run started, in one call."""

from __future__ import annotations

import redis

from app.models import Job, JobKind
from app.state.store import QueuedJob, Store
from tests.lua.conftest import T0, new_run

LEASE_MS = 30_000
JOB = Job(kind=JobKind.START, id="01RUN:start", run_id="01RUN")


def _created(store: Store) -> None:
    planned = QueuedJob(job=JOB, send_by=T0 + 60_000, due_at=T0, soon=True)
    assert store.create_run(new_run(), planned) == ("01RUN", True)


def test_leases_the_job_and_starts_the_run(store: Store, client: redis.Redis) -> None:
    _created(store)
    leased, started = store.start_run(JOB, "app-fn", "tok", T0 + 5, LEASE_MS)
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
    assert first[1] is True
    assert store.start_run(JOB, "app-fn", "tok", T0 + 5, LEASE_MS) == first
    assert client.hget("sl:metric:runs_started_total", "app-fn") == "1"
    state = store.load_run("01RUN")
    assert state is not None and state.started_at == T0 + 5


def test_a_run_started_by_another_delivery_is_leased_but_not_started_again(
    store: Store, client: redis.Redis
) -> None:
    _created(store)
    assert store.start_run(JOB, "app-fn", "first", T0 + 5, LEASE_MS)[1] is True
    # Its lease runs out (the first delivery died): the next one takes the job over, counted
    # as a lost delivery, and finds the run started.
    leased, started = store.start_run(JOB, "app-fn", "second", T0 + 5 + LEASE_MS, LEASE_MS)
    assert not isinstance(leased, str) and leased.failures == 1 and started is False
    state = store.load_run("01RUN")
    assert state is not None and state.started_at == T0 + 5
    assert client.hget("sl:metric:runs_started_total", "app-fn") == "1"


def test_a_busy_or_gone_job_leaves_the_run_queued(store: Store, client: redis.Redis) -> None:
    _created(store)
    assert store.lease_job(JOB.id, "holder", T0, LEASE_MS) != "busy"
    assert store.start_run(JOB, "app-fn", "tok", T0 + 1, LEASE_MS) == ("busy", False)
    store.finish_job(JOB.id, "holder")
    assert store.start_run(JOB, "app-fn", "tok", T0 + 2, LEASE_MS) == ("gone", False)
    state = store.load_run("01RUN")
    assert state is not None and (state.status, state.started_at) == ("Queued", None)
    assert client.hget("sl:metric:runs_started_total", "app-fn") is None


def test_an_ended_run_is_not_started(store: Store) -> None:
    _created(store)
    store.finish_run("01RUN", "Cancelled", None, None, T0 + 1)
    planned = QueuedJob(job=JOB, send_by=T0 + 60_000, due_at=T0, soon=True)
    # finish_run dropped the run's jobs; put one back to see the run is left alone.
    store.enqueue_job(planned.job, T0, T0 + 60_000)
    assert store.start_run(JOB, "app-fn", "tok", T0 + 2, LEASE_MS)[1] is False
    view = store.get_run("01RUN")
    assert view is not None and (view.status, view.started_at) == ("Cancelled", None)
