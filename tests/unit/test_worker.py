"""JobRunner: leases, parking, and what happens when a handler keeps crashing (real Redis)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from app.models import Job, JobKind
from app.state.jobs import Lease
from app.state.store import NewRun, Store
from app.worker import Done, JobRunner

MAX_JOB_FAILURES = 5


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
        give_up=lambda j, problem, _: given_up.append((j.id, problem)),
        max_failures=MAX_JOB_FAILURES,
    )
    outcomes = [runner.handle(job.id) for _ in range(MAX_JOB_FAILURES)]
    assert outcomes == ["failed"] * (MAX_JOB_FAILURES - 1) + ["dead"]
    assert given_up == [
        (
            "run1:start",
            "5 deliveries failed; the last one: ConnectionError: state store unreachable",
        )
    ]
    assert runner.handle(job.id) == "gone"


def test_a_crashing_job_of_no_run_is_never_dropped(store: Store) -> None:
    now = int(time.time() * 1000)
    job = Job(id="event:e1", kind=JobKind.EVENT, event_id="e1")
    store.enqueue_job(job, now, now)

    def crash(_: Job) -> None:
        raise RuntimeError("bug")

    runner = JobRunner(
        store, 30, {JobKind.EVENT: crash}, give_up=lambda j, p, n: None, max_failures=5
    )
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


def test_deliveries_that_die_holding_the_lease_count_and_fail_the_run(store: Store) -> None:
    """A handler that kills its own process never raises: each such delivery is counted when
    its expired lease is taken over, and the Nth redelivery fails the run without running
    the handler again."""
    now = int(time.time() * 1000)
    store.create_run(NewRun("run2", "app-fn", [{"name": "a"}], [], now))
    job = Job(id="run2:start", kind=JobKind.START, run_id="run2")
    store.enqueue_job(job, now, now)
    ran: list[str] = []
    given_up: list[tuple[str, str, bool]] = []
    runner = JobRunner(
        store,
        30,
        {JobKind.START: lambda j: ran.append(j.id)},
        give_up=lambda j, problem, name_step: given_up.append((j.id, problem, name_step)),
        max_failures=3,
    )
    # Three deliveries that leased the job and died: their leases ended long ago.
    counts = []
    for i in range(3):
        leased = store.lease_job(job.id, f"dead-{i}", now - 60_000 + i * 1_000, 500)
        assert not isinstance(leased, str)
        counts.append(leased.failures)
    assert counts == [0, 1, 2]
    assert runner.handle(job.id) == "dead"
    assert ran == []
    assert len(given_up) == 1
    assert given_up[0][0] == "run2:start" and given_up[0][2] is True
    assert given_up[0][1].startswith("3 deliveries failed without finishing")
    assert runner.handle(job.id) == "gone"


def test_a_delivery_that_reports_back_is_not_a_lost_one(store: Store) -> None:
    now = int(time.time() * 1000)
    job = Job(id="run3:start", kind=JobKind.START, run_id="run3")
    store.enqueue_job(job, now, now)
    for i in range(4):  # the same token again (a broker repeat) is the same delivery
        leased = store.lease_job(job.id, "one", now + i, 30_000)
        assert not isinstance(leased, str) and leased.failures == 0


def test_many_jobs_in_one_message_run_each_under_its_own_lease(store: Store) -> None:
    """`handle_each` (a message of many due timers): a job that fails is retried alone, a job
    already done is dropped, and neither stops the jobs after it."""
    now = int(time.time() * 1000)
    jobs = [Job(id=f"run{i}:sleep:s", kind=JobKind.SLEEP, run_id=f"run{i}") for i in range(4)]
    for job in jobs:
        store.enqueue_job(job, now, now)
    seen: list[str] = []

    def wake(job: Job) -> None:
        if job.id == "run1:sleep:s":
            raise RuntimeError("bug")
        seen.append(job.id)

    runner = JobRunner(store, 30, {JobKind.SLEEP: wake}, give_up=lambda j, p, n: None)
    assert runner.handle(jobs[2].id) == "done"
    outcomes = runner.handle_each([job.id for job in jobs])
    assert outcomes == {
        "run0:sleep:s": "done",
        "run1:sleep:s": "failed",
        "run2:sleep:s": "gone",
        "run3:sleep:s": "done",
    }
    assert seen == ["run2:sleep:s", "run0:sleep:s", "run3:sleep:s"]
    assert store.count_jobs() == 1  # the failed one waits for its retry
    # Delivered again (a redelivered message), only the failed job runs.
    assert runner.handle_each([job.id for job in jobs])["run1:sleep:s"] == "failed"
    assert seen == ["run2:sleep:s", "run0:sleep:s", "run3:sleep:s"]


def _event_job(store: Store, name: str, now: int) -> Job:
    job = Job(id=f"event:{name}", kind=JobKind.EVENT, event_id=name)
    store.enqueue_job(job, now, now + 60_000)
    return job


def test_the_work_list_runs_returned_jobs_here_in_order_without_nesting(store: Store) -> None:
    now = int(time.time() * 1000)
    first = _event_job(store, "e1", now)
    children = [_event_job(store, f"c{i}", now) for i in range(3)]
    grandchild = _event_job(store, "g", now)
    ran: list[str] = []
    depth = [0]

    def handler(job: Job) -> list[Job]:
        assert depth[0] == 0  # nothing nests: each job runs from the task's loop
        depth[0] += 1
        ran.append(job.id)
        depth[0] -= 1
        if job.id == first.id:
            return children
        return [grandchild] if job.id == children[0].id else []

    sent: list[str] = []
    runner = JobRunner(store, 30, {JobKind.EVENT: handler}, send=lambda j: sent.append(j.id))
    assert runner.work(first.id) == "done"
    assert ran == [first.id, *(c.id for c in children), grandchild.id]
    assert sent == []
    for job in [first, *children, grandchild]:  # each leased and finished like any job
        assert runner.handle(job.id) == "gone"


def test_past_its_budget_the_work_list_sends_the_rest(store: Store) -> None:
    now = int(time.time() * 1000)
    first = _event_job(store, "e1", now)
    children = [_event_job(store, f"c{i}", now) for i in range(3)]
    ran: list[str] = []

    def handler(job: Job) -> list[Job]:
        ran.append(job.id)
        return children if job.id == first.id else []

    sent: list[str] = []
    runner = JobRunner(
        store, 30, {JobKind.EVENT: handler}, send=lambda j: sent.append(j.id), budget_seconds=0
    )
    assert runner.work(first.id) == "done"
    assert ran == [first.id]
    assert sent == [c.id for c in children]
    # They are still recorded: whoever receives them (or the tick, if the send was lost)
    # runs them.
    assert store.count_jobs() == 3


def test_a_failing_job_of_the_work_list_stays_recorded_and_the_list_goes_on(
    store: Store,
) -> None:
    now = int(time.time() * 1000)
    first = _event_job(store, "e1", now)
    bad, good = _event_job(store, "bad", now), _event_job(store, "good", now)
    ran: list[str] = []

    def handler(job: Job) -> list[Job]:
        ran.append(job.id)
        if job.id == bad.id:
            raise RuntimeError("bug")
        return [bad, good] if job.id == first.id else []

    runner = JobRunner(store, 30, {JobKind.EVENT: handler}, send=lambda j: None)
    assert runner.work(first.id) == "done"
    assert ran == [first.id, bad.id, good.id]
    assert store.count_jobs() == 1  # the failed one, retried after its backoff


def test_handle_sends_the_follow_ups(store: Store) -> None:
    now = int(time.time() * 1000)
    first, child = _event_job(store, "e1", now), _event_job(store, "c", now)
    sent: list[str] = []
    runner = JobRunner(
        store,
        30,
        {JobKind.EVENT: lambda job: [child] if job.id == first.id else []},
        send=lambda j: sent.append(j.id),
    )
    assert runner.handle(first.id) == "done"
    assert sent == [child.id]


def test_a_handler_that_ended_its_run_with_its_job_needs_no_finish(store: Store) -> None:
    now = int(time.time() * 1000)
    store.create_run(NewRun("run1", "app-fn", [{"name": "a"}], [], now))
    job = Job(id="run1:start", kind=JobKind.START, run_id="run1")
    store.enqueue_job(job, now, now + 60_000)

    def end(j: Job) -> Done:
        assert store.end_run("run1", "Completed", 1, None, now, guess=("app-fn", [j.id]))[0]
        return Done()

    runner = JobRunner(store, 30, {JobKind.START: end})
    assert runner.handle(job.id) == "done"
    assert store.count_jobs() == 0
    assert not store.enqueue_job(job, now, now)  # its tombstone, left by finish_run


def test_a_fan_out_is_shared_with_the_pool(store: Store) -> None:
    now = int(time.time() * 1000)
    first = _event_job(store, "e1", now)
    children = [_event_job(store, f"c{i}", now) for i in range(5)]
    ran: list[str] = []

    def handler(job: Job) -> list[Job]:
        ran.append(job.id)
        return children if job.id == first.id else []

    sent: list[str] = []
    waiting = [5]
    runner = JobRunner(
        store,
        30,
        {JobKind.EVENT: handler},
        send=lambda j: sent.append(j.id),
        peers=2,
        backlog=lambda: waiting[0],
    )
    assert runner.work(first.id) == "done"
    # The queue has a backlog: the other process is busy, this one runs them all.
    assert ran == [first.id, *(c.id for c in children)] and sent == []
    # An empty queue: this process keeps its share (3 of 5) and sends the others at once.
    first = _event_job(store, "e2", now)
    children[:] = [_event_job(store, f"d{i}", now) for i in range(5)]
    ran.clear()
    waiting[0] = 0
    assert runner.work(first.id) == "done"
    assert ran == [first.id, *(c.id for c in children[:3])]
    assert sent == [c.id for c in children[3:]]


class _Starter:
    """A Starter (app.worker) whose creation leased one job already (as `Runner` does)."""

    def __init__(self, job: Job, token: str, store: Store) -> None:
        self._job, self._token, self._store = job, token, store
        self.taken = False

    def held(self, job_id: str) -> bool:
        return not self.taken and job_id == self._job.id

    def claim(self, job: Job) -> tuple[str, Lease] | None:
        if not self.held(job.id):
            return None
        self.taken = True
        return self._token, Lease(job, 0)


def test_a_follow_up_leased_by_its_creation_runs_first_and_past_the_budget(store: Store) -> None:
    """The start job of a run created started (leased to this task) runs first, with that
    lease (no lease call of its own), even past the budget: sent, it would wait for the
    lease to run out. The rest of the list is sent."""
    now = int(time.time() * 1000)
    first = _event_job(store, "e1", now)
    children = [_event_job(store, f"c{i}", now) for i in range(3)]
    held = children[2]
    assert not isinstance(store.lease_job(held.id, "creator", now, 30_000), str)
    ran: list[str] = []

    def handler(job: Job) -> list[Job]:
        ran.append(job.id)
        return children if job.id == first.id else []

    sent: list[str] = []
    starter = _Starter(held, "creator", store)
    runner = JobRunner(
        store,
        30,
        {JobKind.EVENT: handler},
        send=lambda j: sent.append(j.id),
        budget_seconds=0,
        starter=starter,
    )
    assert runner.work(first.id) == "done"
    assert ran == [first.id, held.id]
    assert sent == [c.id for c in children[:2]]
    assert runner.handle(held.id) == "gone"  # finished with the creator's lease


def test_handle_runs_a_follow_up_leased_by_its_creation_here(store: Store) -> None:
    now = int(time.time() * 1000)
    first = _event_job(store, "e1", now)
    children = [_event_job(store, f"c{i}", now) for i in range(2)]
    assert not isinstance(store.lease_job(children[0].id, "creator", now, 30_000), str)
    ran: list[str] = []

    def handler(job: Job) -> list[Job]:
        ran.append(job.id)
        return children if job.id == first.id else []

    sent: list[str] = []
    starter = _Starter(children[0], "creator", store)
    runner = JobRunner(
        store, 30, {JobKind.EVENT: handler}, send=lambda j: sent.append(j.id), starter=starter
    )
    assert runner.handle(first.id) == "done"
    assert ran == [first.id, children[0].id]
    assert sent == [children[1].id]


def test_a_job_of_a_message_is_renewed_only_while_it_is_ours(store: Store) -> None:
    """A job that went with its run (`Done`) or was let go (failed) is no longer renewed
    while the rest of its message runs (a renewal would find it gone: "lease lost"); a job
    done but not finished yet still is."""
    now = int(time.time() * 1000)
    jobs = [Job(id=f"run{i}:sleep:s", kind=JobKind.SLEEP, run_id=f"run{i}") for i in range(4)]
    for job in jobs:
        store.enqueue_job(job, now, now)
    held: list[list[str]] = []

    def wake(job: Job) -> Done | None:
        held.append(sorted(runner._leases._held))
        if job.id == "run0:sleep:s":
            store.finish_job(job.id, "")  # as lua/finish_run.lua drops it with its run
            return Done()
        if job.id == "run1:sleep:s":
            raise RuntimeError("bug")
        return None

    runner = JobRunner(store, 30, {JobKind.SLEEP: wake}, give_up=lambda j, p, n: None)
    runner.handle_each([job.id for job in jobs])
    ids = [job.id for job in jobs]
    assert held == [ids, ids[1:], ids[2:], ids[2:]]
    assert runner._leases._held == {}
