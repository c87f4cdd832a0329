"""JobRunner: leases, parking, and what happens when a handler keeps crashing (real Redis)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from app.models import Job, JobKind
from app.state.store import NewRun, Store
from app.worker import MAX_JOB_FAILURES, JobRunner


@pytest.fixture
def store(redis_url: str) -> Iterator[Store]:
    s = Store(redis_url)
    yield s
    s.close()


def test_a_crashing_job_of_a_run_backs_off_then_fails_its_run(store: Store) -> None:
    now = int(time.time() * 1000)
    store.create_run(NewRun("run1", "app-fn", [{"name": "a"}], [], now))
    job = Job(id="run1:start", kind=JobKind.START, run_id="run1")
    store.enqueue_job(job, now, now)
    given_up: list[tuple[str, str]] = []

    def crash(_: Job) -> None:
        raise ConnectionError("state store unreachable")

    runner = JobRunner(
        store,
        30,
        {JobKind.START: crash},
        give_up=lambda j, problem: given_up.append((j.id, problem)),
    )
    outcomes = [runner.handle(job.id) for _ in range(MAX_JOB_FAILURES)]
    assert outcomes == ["failed"] * (MAX_JOB_FAILURES - 1) + ["dead"]
    assert given_up == [("run1:start", "ConnectionError: state store unreachable")]
    assert runner.handle(job.id) == "gone"


def test_a_crashing_job_of_no_run_is_never_dropped(store: Store) -> None:
    now = int(time.time() * 1000)
    job = Job(id="event:e1", kind=JobKind.EVENT, event_id="e1")
    store.enqueue_job(job, now, now)

    def crash(_: Job) -> None:
        raise RuntimeError("bug")

    runner = JobRunner(store, 30, {JobKind.EVENT: crash}, give_up=lambda j, p: None)
    for _ in range(MAX_JOB_FAILURES + 2):
        assert runner.handle(job.id) == "failed"
    assert store.count_jobs() == 1


def test_a_job_that_works_is_done_once(store: Store) -> None:
    now = int(time.time() * 1000)
    job = Job(id="event:e2", kind=JobKind.EVENT, event_id="e2")
    store.enqueue_job(job, now, now)
    seen: list[str] = []
    runner = JobRunner(store, 30, {JobKind.EVENT: lambda j: seen.append(j.id)})
    assert runner.handle(job.id) == "done"
    assert runner.handle(job.id) == "gone"
    assert seen == ["event:e2"]
