"""Starting a run is one script call (issue 8, 1b): in a worker's task, the run its event job
leaves to the work list first is created Running with its start job leased to the task
(lua/create_run.lua), and each other run of the list is started by the call that leases its
start job (lua/start_run.lua); neither needs `begin_job` + `mark_started`. A start job sent to
another worker carries its function in its message, so that worker too starts the run in the
call that leases the job. A function with concurrency or throttle: the same call admits the
run (takes its slot, or parks it; gives it its throttled start time, or defers it), from the
constraint names and score its start job carries (`Job.limits`). Counted at the client, in
this process (the task's code as a worker runs it; a recorder stands in for Celery).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.client import Pipeline

from app.config import Settings
from app.engine import Engine
from app.flow.slots import Grant
from app.functions import load_functions
from app.models import RunStatus, StartLimits
from app.state.store import Store
from tests.integration.recorder import FUNCTIONS, Recorder, record_scripts, recorded_engine


@pytest.fixture
def scripts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of every script this process runs, in order."""
    return record_scripts(monkeypatch, lambda name, args, client: name)


@pytest.fixture
def engine(redis_url: str) -> Iterator[tuple[Engine, Recorder]]:
    yield from recorded_engine(redis_url)


@pytest.fixture
def over_budget(redis_url: str) -> Iterator[tuple[Engine, Recorder]]:
    """A worker whose step budget is spent at once, after an event task that created three
    runs: the one created started ran here, the other two start jobs were sent on."""
    recorder = Recorder()
    settings = Settings.from_env().replace(
        redis_url=redis_url, functions=[], worker_concurrency=1, step_budget_seconds=1e-6
    )
    e = Engine.create(settings, sender=recorder, local=load_functions([FUNCTIONS]), inline=True)
    _event_task(e, recorder, [{"name": "starts/go"} for _ in range(3)])
    yield e, recorder
    e.store.close()


def _event_task(engine: Engine, recorder: Recorder, events: list[dict[str, Any]]) -> None:
    engine.runner.ingest(events, engine.now())
    [job_id] = recorder.sent
    recorder.messages.clear()
    assert engine.jobs.work(job_id) == "done"


def test_a_run_started_from_its_event_task_costs_its_creation_only(
    engine: tuple[Engine, Recorder], scripts: list[str]
) -> None:
    e, recorder = engine
    _event_task(e, recorder, [{"name": "starts/go"}])
    [run] = e.store.list_runs(10)
    assert (run.status, run.output) == (RunStatus.COMPLETED.value, 2)
    assert run.started_at == run.created_at
    # The event job's lease and finish; the run's creation (and start); its steps; its end.
    assert scripts.count("create_run") == 1
    assert scripts.count("begin_job") == 1  # the event job's own
    assert scripts.count("mark_started") == 0
    assert scripts.count("start_run") == 0
    assert recorder.sent == []  # nothing went through the queue
    assert _started_total(e, "starts-plain") == 1


def test_every_run_of_a_fan_out_starts_in_one_call(
    engine: tuple[Engine, Recorder], scripts: list[str]
) -> None:
    e, recorder = engine
    _event_task(e, recorder, [{"name": "starts/go"} for _ in range(4)])
    runs = e.store.list_runs(10)
    assert len(runs) == 4
    assert all((r.status, r.output) == (RunStatus.COMPLETED.value, 2) for r in runs)
    # The first run is started by its creation; each other run by the lease of its start job.
    assert scripts.count("create_run") == 4
    assert scripts.count("start_run") == 3
    assert scripts.count("begin_job") == 1  # the event job's own
    assert scripts.count("mark_started") == 0
    assert _started_total(e, "starts-plain") == 4
    assert (
        sorted(r.started_at is not None and r.started_at >= r.created_at for r in runs)
        == [True] * 4
    )


def test_a_concurrency_limited_run_starts_in_one_call(
    engine: tuple[Engine, Recorder], scripts: list[str]
) -> None:
    """A function with a concurrency limit: the run its event task runs next is created,
    admitted (its slot taken) and started by one call (lua/create_run.lua with an
    admission), as a plain run is: no `start_run`, `begin_job`, `slots_acquire`,
    `mark_started`."""
    e, recorder = engine
    _event_task(e, recorder, [{"name": "starts/limited"}])
    [run] = e.store.list_runs(10)
    assert run.status == RunStatus.COMPLETED.value
    assert run.started_at == run.created_at
    assert scripts == [
        "ingest_events",
        "begin_job",  # the event job's
        "create_run",  # create + slot + start
        "finish_job",  # the event job's
        "finish_run",  # the end, and the slot given back
    ]
    assert recorder.sent == []
    assert _started_total(e, "starts-limited") == 1
    assert _slot_holders(e, "f:starts-limited") == []


def test_a_limited_run_created_with_its_slot_taken_is_parked_by_that_call(
    engine: tuple[Engine, Recorder], scripts: list[str]
) -> None:
    """The slot is held elsewhere: the creating call parks the start job in the wait list
    (the run stays Queued) and the work list does not run it; the holder's release wakes it
    and sends it, with its limits, and that delivery starts it in one call."""
    e, recorder = engine
    slots = e.executor.slots
    holder = slots.redis.acquire(
        "holder", [("f:starts-limited", 1)], 0, e.now(), 30_000, 60_000, 300_000
    )
    assert holder.code == "ok"
    _event_task(e, recorder, [{"name": "starts/limited"}])
    assert scripts.count("create_run") == 1
    assert "start_run" not in scripts and "begin_job" in scripts  # the event job's only
    [run] = e.store.list_runs(10)
    assert (run.status, run.started_at) == (RunStatus.QUEUED.value, None)
    assert recorder.sent == []
    waiting = e.store.keys.prefix + ":slots-wait:f:starts-limited"
    with redis.Redis.from_url(e.settings.redis_url, decode_responses=True) as client:
        assert client.zrange(waiting, 0, -1) == [f"{run.run_id}:start"]
    slots.release(Grant(slots, "holder", [("f:starts-limited", 1)]), e.now())
    [args] = recorder.messages
    assert args[0] == f"{run.run_id}:start" and len(args) == 3
    recorder.messages.clear()
    scripts.clear()
    assert e.jobs.work(*args) == "done"
    assert scripts[0] == "start_run" and "begin_job" not in scripts
    [run] = e.store.list_runs(10)
    assert run.status == RunStatus.COMPLETED.value
    assert _started_total(e, "starts-limited") == 1


def test_start_jobs_sent_elsewhere_are_not_leased_by_their_creation(
    scripts: list[str], over_budget: tuple[Engine, Recorder]
) -> None:
    """Past its budget a task sends the rest of its work list: those runs were created
    Queued (the worker that gets one starts it: see the next test). The run created
    started runs here whatever the budget (sent, it would wait for its lease)."""
    e, recorder = over_budget
    starts = [job_id for job_id in recorder.sent if job_id.endswith(":start")]
    assert len(starts) == 2
    for job_id in starts:
        state = e.store.load_run(job_id.split(":")[0])
        assert state is not None and (state.status, state.started_at) == ("Queued", None)
        assert not isinstance(e.store.lease_job(job_id, "another-worker", e.now(), 1), str)
    [first] = [r for r in e.store.list_runs(10) if f"{r.run_id}:start" not in starts]
    assert first.status == RunStatus.RUNNING.value  # it ran its first step, then yielded
    assert scripts.count("create_run") == 3
    assert scripts.count("start_run") == 0
    assert scripts.count("mark_started") == 0


def test_a_start_job_sent_to_another_worker_starts_its_run_in_one_call(
    scripts: list[str], over_budget: tuple[Engine, Recorder]
) -> None:
    """A start job sent on (past the budget here; also a fan-out shared with the pool, a run
    of an SDK app's function, a resend) names its function in its message: the worker that
    takes it leases it and starts its run with lua/start_run.lua, no `begin_job` or
    `mark_started`. A second delivery of the message finds the job gone."""
    e, recorder = over_budget
    starts = [args for args in recorder.messages if args[0].endswith(":start")]
    assert [function_id for _, function_id in starts] == ["starts-plain"] * 2
    scripts.clear()
    recorder.messages = [args for args in recorder.messages if args not in starts]
    for args in starts:
        assert e.jobs.work(*args) == "done"  # its first step, then its budget is spent
    assert scripts.count("start_run") == 2
    assert scripts.count("begin_job") == 0
    assert scripts.count("mark_started") == 0
    for job_id, function_id in starts:
        assert e.jobs.work(job_id, function_id) == "gone"  # a redelivery
    assert set(recorder.drain(e.jobs.work)) == {"done"}  # their next steps, one job each
    runs = e.store.list_runs(10)
    assert [r.status for r in runs] == [RunStatus.COMPLETED.value] * 3
    assert all(r.output == 2 and r.started_at is not None for r in runs)
    assert scripts.count("start_run") == 4  # the redeliveries' calls answered "gone"
    assert scripts.count("mark_started") == 0
    assert _started_total(e, "starts-plain") == 3


def _started_total(engine: Engine, function_id: str) -> int:
    key = engine.store.keys.metric("runs_started_total")
    with redis.Redis.from_url(engine.settings.redis_url, decode_responses=True) as client:
        return int(client.hget(key, function_id) or 0)


def test_a_start_message_without_its_function_starts_the_run_in_two_calls(
    scripts: list[str], over_budget: tuple[Engine, Recorder]
) -> None:
    """A message sent before start jobs named their function (its job id alone) is still
    served: the job is leased as any job and the executor marks the run started."""
    e, recorder = over_budget
    job_id = next(args[0] for args in recorder.messages if args[0].endswith(":start"))
    scripts.clear()
    assert e.jobs.work(job_id) == "done"
    assert (scripts.count("begin_job"), scripts.count("mark_started")) == (1, 1)
    assert scripts.count("start_run") == 0
    state = e.store.load_run(job_id.removesuffix(":start"))
    assert state is not None and state.status == RunStatus.RUNNING.value
    assert state.started_at is not None


# --- functions with concurrency or throttle: their start jobs sent to a worker ---------------


@pytest.fixture
def sending(redis_url: str) -> Iterator[tuple[Engine, Recorder]]:
    """An engine whose runner sends every start job (as the web process or a full worker
    does): each is then run here as the worker that receives its message runs it."""
    recorder = Recorder()
    settings = Settings.from_env().replace(redis_url=redis_url, functions=[], worker_concurrency=1)
    e = Engine.create(settings, sender=recorder, local=load_functions([FUNCTIONS]), inline=False)
    yield e, recorder
    e.store.close()


def _starts(engine: Engine, recorder: Recorder, events: list[dict[str, Any]]) -> list[list[str]]:
    """Ingest `events`, run their event job here; the start job messages it sent."""
    _event_task(engine, recorder, events)
    starts = [args for args in recorder.messages if args[0].endswith(":start")]
    recorder.messages = [args for args in recorder.messages if args not in starts]
    return starts


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts every Redis round trip this process makes (commands and pipelines, at
    redis-py's client): [count]."""
    count = [0]
    command = redis.Redis.execute_command
    pipeline = Pipeline.execute

    def counted_command(self: redis.Redis, *args: Any, **options: Any) -> Any:
        count[0] += 1
        return command(self, *args, **options)

    def counted_pipeline(self: Pipeline, *args: Any, **options: Any) -> Any:
        count[0] += 1
        return pipeline(self, *args, **options)

    monkeypatch.setattr(redis.Redis, "execute_command", counted_command)
    monkeypatch.setattr(Pipeline, "execute", counted_pipeline)
    return count


def test_a_limited_start_costs_a_plain_start_and_its_slot_given_back(
    sending: tuple[Engine, Recorder], scripts: list[str], round_trips: list[int]
) -> None:
    """A start job of a concurrency-limited function sent to a worker: its message carries
    the run's constraints (`Job.limits`, evaluated when the run was created), so the worker
    starts it with the round trips of a plain function's start, and the call that ends the
    run gives its slot back: no round trip more than a plain run's."""
    e, recorder = sending
    [plain] = _starts(e, recorder, [{"name": "starts/go"}])
    [limited] = _starts(e, recorder, [{"name": "starts/limited"}])
    assert len(plain) == 2 and len(limited) == 3
    carried = StartLimits.model_validate_json(limited[2])
    assert carried.constraints == [("f:starts-limited", 1)] and carried.throttle == ""
    costs: dict[str, tuple[int, list[str]]] = {}
    for name, args in (("plain", plain), ("limited", limited)):
        scripts.clear()
        round_trips[0] = 0
        assert e.jobs.work(*args) == "done"
        costs[name] = (round_trips[0], list(scripts))
    assert costs["limited"][1] == costs["plain"][1] == ["start_run", "finish_run"]
    assert costs["limited"][0] == costs["plain"][0]
    runs = e.store.list_runs(10)
    assert [r.status for r in runs] == [RunStatus.COMPLETED.value] * 2
    assert _started_total(e, "starts-limited") == 1


def test_limited_start_jobs_a_work_list_sends_on_carry_their_limits(
    redis_url: str, scripts: list[str]
) -> None:
    """Past its budget a task sends the start jobs its event job left to its work list: those
    of a limited function carry their limits in their message (as recorded with the run), so
    each worker that takes one starts its run in one call."""
    recorder = Recorder()
    settings = Settings.from_env().replace(
        redis_url=redis_url, functions=[], worker_concurrency=1, step_budget_seconds=1e-6
    )
    e = Engine.create(settings, sender=recorder, local=load_functions([FUNCTIONS]), inline=True)
    try:
        _event_task(e, recorder, [{"name": "starts/limited"} for _ in range(3)])
        # The first run was created started (its slot taken) and ran here, budget or not.
        starts = [args for args in recorder.messages if args[0].endswith(":start")]
        assert len(starts) == 2 and all(len(args) == 3 for args in starts)
        scripts.clear()
        for args in starts:
            assert e.jobs.work(*args) == "done"
        assert scripts.count("start_run") == 2
        assert "begin_job" not in scripts and "slots_acquire" not in scripts
        assert "mark_started" not in scripts
        assert _started_total(e, "starts-limited") == 3
    finally:
        e.store.close()


def test_a_limited_start_that_must_wait_is_parked_by_that_call(
    sending: tuple[Engine, Recorder], scripts: list[str]
) -> None:
    """The slot is taken: the one call parks the job in the constraint's wait list, as
    `slots_acquire` parked it; a repeat of the message answers "parked" again and changes
    nothing; the holder's release wakes it and sends it (with its limits), and that delivery
    starts it in one call."""
    e, recorder = sending
    [args] = _starts(e, recorder, [{"name": "starts/limited"}])
    slots = e.executor.slots
    holder = slots.redis.acquire(
        "holder", [("f:starts-limited", 1)], 0, e.now(), 30_000, 60_000, 300_000
    )
    assert holder.code == "ok"
    scripts.clear()
    assert e.jobs.work(*args) == "parked"
    assert scripts == ["start_run"]
    run_id = args[0].removesuffix(":start")
    waiting = e.store.keys.prefix + ":slots-wait:f:starts-limited"
    with redis.Redis.from_url(e.settings.redis_url, decode_responses=True) as client:
        assert client.zrange(waiting, 0, -1) == [args[0]]
        assert client.hget(e.store.keys.job_owners, args[0]) == "parked"
        assert e.jobs.work(*args) == "parked"  # a redelivery, or the call repeated
        assert client.zrange(waiting, 0, -1) == [args[0]]
        state = e.store.load_run(run_id)
        assert state is not None and (state.status, state.started_at) == ("Queued", None)
        slots.release(Grant(slots, "holder", [("f:starts-limited", 1)]), e.now())
        assert recorder.messages == [args]  # woken and sent, with its limits
        recorder.messages.clear()
        scripts.clear()
        assert e.jobs.work(*args) == "done"
        assert scripts[0] == "start_run" and "begin_job" not in scripts
        assert "slots_acquire" not in scripts and "mark_started" not in scripts
        assert client.exists(waiting) == 0
    view = e.store.get_run(run_id)
    assert view is not None and view.status == RunStatus.COMPLETED.value
    assert _slot_holders(e, "f:starts-limited") == []


def test_keys_and_priority_are_evaluated_when_the_run_is_created(
    sending: tuple[Engine, Recorder],
) -> None:
    """A keyed constraint's name and a priority's score come from the run's event, evaluated
    once by the runner: each user has a slot of its own, so both start."""
    e, recorder = sending
    starts = _starts(
        e,
        recorder,
        [
            {"name": "starts/keyed", "data": {"user": "ann", "boost": 10}},
            {"name": "starts/keyed", "data": {"user": "bob"}},
        ],
    )
    carried = [StartLimits.model_validate_json(args[2]) for args in starts]
    names = [c.constraints[0][0] for c in carried]
    assert len(set(names)) == 2 and all(n.startswith("f:starts-keyed:") for n in names)
    runs = {r.run_id: r for r in e.store.list_runs(10)}
    boosts = sorted(
        runs[args[0].removesuffix(":start")].created_at - c.score
        for args, c in zip(starts, carried, strict=True)
    )
    assert boosts == [0, 10_000]
    assert [e.jobs.work(*args) for args in starts] == ["done", "done"]
    assert _started_total(e, "starts-keyed") == 2


def test_a_throttled_start_is_deferred_by_that_call(
    sending: tuple[Engine, Recorder], scripts: list[str]
) -> None:
    """Throttle (1 per minute, burst 1: two may go back to back): the first two start now,
    each in one call; the third call defers its job to its start time (owner 'deferred'), a
    minute on: past the countdown horizon, the tick sends it then, as after `slots_throttle`."""
    e, recorder = sending
    first, second, third = _starts(e, recorder, [{"name": "starts/throttled"}] * 3)
    scripts.clear()
    assert [e.jobs.work(*first), e.jobs.work(*second)] == ["done", "done"]
    assert scripts.count("start_run") == 2 and "slots_throttle" not in scripts
    scripts.clear()
    assert e.jobs.work(*third) == "parked"
    assert scripts == ["start_run"]
    assert recorder.messages == []
    with redis.Redis.from_url(e.settings.redis_url, decode_responses=True) as client:
        assert client.hget(e.store.keys.job_owners, third[0]) == "deferred"
        send_by = client.zscore(e.store.keys.jobs_due, third[0])
        assert send_by is not None and send_by >= e.now() + 50_000
    state = e.store.load_run(third[0].removesuffix(":start"))
    assert state is not None and state.status == RunStatus.QUEUED.value


def test_limits_made_under_other_rules_are_admitted_as_before(
    sending: tuple[Engine, Recorder], scripts: list[str]
) -> None:
    """A start job whose limits were computed under options the function no longer has (it
    was registered again meanwhile) is leased as any job and admitted by the executor under
    the current ones."""
    e, recorder = sending
    [args] = _starts(e, recorder, [{"name": "starts/limited"}])
    stale = StartLimits.model_validate_json(args[2]).model_copy(update={"rules": "older"})
    scripts.clear()
    assert e.jobs.work(args[0], args[1], stale.model_dump_json()) == "done"
    assert scripts[:3] == ["begin_job", "slots_acquire", "mark_started"]
    assert "start_run" not in scripts
    assert _started_total(e, "starts-limited") == 1


def test_a_limited_start_given_up_gives_its_slot_back(
    sending: tuple[Engine, Recorder],
) -> None:
    """A start job that kept killing its worker: the call that leases it takes its slot, the
    worker gives it up (its run fails) and gives the slot back at once, not when its lease
    runs out."""
    e, recorder = sending
    [args] = _starts(e, recorder, [{"name": "starts/limited"}])
    with redis.Redis.from_url(e.settings.redis_url, decode_responses=True) as client:
        client.hset(e.store.keys.job_failures, args[0], e.settings.max_job_failures)
    assert e.jobs.work(*args) == "dead"
    assert _slot_holders(e, "f:starts-limited") == []
    view = e.store.get_run(args[0].removesuffix(":start"))
    assert view is not None and view.status == RunStatus.FAILED.value


def _slot_holders(engine: Engine, constraint: str) -> list[str]:
    with redis.Redis.from_url(engine.settings.redis_url, decode_responses=True) as client:
        return list(client.zrange(f"{engine.store.keys.prefix}:slots:{constraint}", 0, -1))


def test_a_limited_run_whose_end_writes_nothing_gives_its_slot_back_on_its_own(
    engine: tuple[Engine, Recorder], scripts: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run was cancelled while its job ran: the call that was to end it (and give the
    slot back) writes nothing, so the job gives its slot back with `slots_release`, as
    before, and stops renewing it."""
    e, recorder = engine
    real_many, real_alone = Store.end_runs, Store.end_alone

    def cancelled(store: Store, run_id: str, now: int) -> None:
        assert store.finish_run(run_id, RunStatus.CANCELLED.value, None, None, now)

    def end_runs(self: Store, ends: Any) -> Any:
        for end in ends:
            cancelled(self, end.run_id, end.now)
        return real_many(self, ends)

    def end_alone(self: Store, end: Any, **kw: Any) -> Any:
        cancelled(self, end.run_id, end.now)
        return real_alone(self, end, **kw)

    monkeypatch.setattr(Store, "end_runs", end_runs)
    monkeypatch.setattr(Store, "end_alone", end_alone)
    _event_task(e, recorder, [{"name": "starts/limited"}])
    [run] = e.store.list_runs(10)
    assert run.status == RunStatus.CANCELLED.value
    assert scripts.count("slots_release") == 1
    assert _slot_holders(e, "f:starts-limited") == []
    assert e.executor.slots.keeper.held() == {}
