"""lua/enqueue_job.lua: deterministic job ids, refused while queued or tombstoned."""

from __future__ import annotations

import redis

from app.models import JobKind
from app.state.store import Store
from tests.lua.conftest import T0, make_job


def test_enqueues_once(store: Store, run: str, client: redis.Redis) -> None:
    job = make_job("j1", step="s", attempt=2)
    assert store.enqueue_job(job, T0, T0 + 100) is True
    assert store.enqueue_job(job, T0, T0 + 999) is False

    assert store.count_jobs() == 1
    assert client.zscore("sl:jobs:due", "j1") == T0 + 100
    assert client.zrange("sl:jobs:by-run", 0, -1) == ["01RUN|j1"]
    assert store.begin_job("j1", "t", T0, 1000) == job


def test_refused_after_finish_by_the_tombstone(store: Store, run: str, client: redis.Redis) -> None:
    job = make_job("j1")
    store.enqueue_job(job, T0, T0)
    store.finish_job("j1", "t")
    assert store.enqueue_job(job, T0, T0) is False
    assert store.count_jobs() == 0
    assert 0 < client.pttl("sl:job-done:j1") <= 86_400_000


def test_a_job_without_run(store: Store, client: redis.Redis) -> None:
    job = make_job("ev1", run_id="", kind=JobKind.EVENT, event_id="01EVT")
    assert store.enqueue_job(job, T0, T0) is True
    assert client.zcard("sl:jobs:by-run") == 0
    store.finish_job("ev1", "t")
    assert store.count_jobs() == 0 and client.zcard("sl:jobs:due") == 0


def test_a_job_of_an_unknown_run_is_accepted(store: Store) -> None:
    # The start job may be written before its run: only an *ended* run refuses jobs.
    assert store.enqueue_job(make_job("j1", run_id="01LATER", kind=JobKind.START), T0, T0)


def test_refused_for_an_ended_run(store: Store, run: str) -> None:
    store.finish_run(run, "Completed", None, None, T0)
    assert store.enqueue_job(make_job("j1"), T0, T0) is False
    assert store.count_jobs() == 0
