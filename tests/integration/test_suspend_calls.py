"""A run suspends in one script call (issue 8, 1c): a sleep, planned parallel steps or a step's
retry record their steps, queue the jobs that carry the run on and finish the job that ran it
in one lua/suspend.lua, no `record_step` + `enqueue_job` (+ `set_pending`) + `finish_job`.
Counted at the client, in this process (the task's code as a worker runs it; a recorder
stands in for Celery), as tests/integration/test_start_calls.py counts a run's start.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from app.engine import Engine
from app.models import RunStatus
from app.state.store import Store
from tests.integration.recorder import Recorder, record_scripts, recorded_engine

Calls = list[tuple[str, list[Any]]]


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Every script this process runs, in order: (name, its ARGV)."""
    return record_scripts(monkeypatch, lambda name, args, client: (name, list(args)))


@pytest.fixture
def engine(redis_url: str) -> Iterator[tuple[Engine, Recorder]]:
    yield from recorded_engine(redis_url)


def _names(calls: Calls) -> list[str]:
    return [name for name, _ in calls]


def _event_task(e: Engine, recorder: Recorder, name: str) -> str:
    """Send one event and run its event task (the run it starts runs in it); its run id."""
    e.runner.ingest([{"name": name}], e.now())
    [job_id] = recorder.sent
    recorder.messages.clear()
    assert e.jobs.work(job_id) == "done"
    [run] = e.store.list_runs(10)
    return run.run_id


def _jobs(e: Engine) -> dict[str, str]:
    with redis.Redis.from_url(e.settings.redis_url, decode_responses=True) as client:
        return client.hgetall(e.store.keys.jobs)


def _finished(calls: Calls) -> list[str]:
    """The jobs finished by `finish_job`."""
    return [str(args[0]) for name, args in calls if name == "finish_job"]


def test_a_sleeping_run_suspends_in_one_call(engine: tuple[Engine, Recorder], calls: Calls) -> None:
    e, recorder = engine
    run_id = _event_task(e, recorder, "starts/nap")
    names = _names(calls)
    assert names.count("suspend") == 1
    assert names.count("record_step") == 0
    assert names.count("enqueue_job") == 0
    # Only the event job is finished on its own; the run's start job went with its suspend.
    assert _finished(calls) == [job for job in _finished(calls) if job.startswith("event:")]
    assert len(_finished(calls)) == 1
    # Of the run's own calls: created started, then its suspend (the sleep is its first op).
    own = [name for name, args in calls if run_id in map(str, args)]
    assert own == ["create_run", "suspend"]

    state = e.store.load_run(run_id)
    assert state is not None and state.status == RunStatus.RUNNING.value
    [sleep_job] = _jobs(e)
    assert sleep_job.startswith(f"{run_id}:sleep:")
    assert recorder.sent == []  # due in an hour: the tick sends it then
    view = e.store.get_run(run_id)
    assert view is not None and [s["status"] for s in view.steps] == ["Sleeping"]

    # A redelivery of its start job finds it gone.
    assert e.jobs.work(f"{run_id}:start", "starts-nap") == "gone"
    # Its timer, run as it falls due: the run wakes and ends (no `finish_job` either).
    calls.clear()
    assert e.jobs.handle(sleep_job) == "done"
    state = e.store.load_run(run_id)
    assert state is not None and state.status == RunStatus.COMPLETED.value
    assert _finished(calls) == []
    assert _jobs(e) == {}


def test_parallel_steps_are_planned_in_one_call(
    engine: tuple[Engine, Recorder], calls: Calls
) -> None:
    e, recorder = engine
    run_id = _event_task(e, recorder, "starts/fork")
    names = _names(calls)
    assert names.count("suspend") == 1
    assert names.count("set_pending") + names.count("record_step") == 0
    assert names.count("enqueue_job") == 0
    assert len(_finished(calls)) == 1  # the event job's
    planned = sorted(recorder.sent)
    assert len(planned) == 2 and all(job.startswith(f"{run_id}:plan:") for job in planned)
    assert sorted(_jobs(e)) == planned
    state = e.store.load_run(run_id)
    assert state is not None and state.disable_immediate_execution

    recorder.messages.clear()
    for job_id in planned:
        assert e.jobs.work(job_id) == "done"
    state = e.store.load_run(run_id)
    assert state is not None and state.status == RunStatus.COMPLETED.value
    view = e.store.get_run(run_id)
    assert view is not None and view.output == 3
    assert _jobs(e) == {}


def test_a_step_retry_suspends_in_one_call(engine: tuple[Engine, Recorder], calls: Calls) -> None:
    e, recorder = engine
    run_id = _event_task(e, recorder, "starts/again")
    names = _names(calls)
    assert names.count("suspend") == 1
    assert names.count("record_step") + names.count("enqueue_job") == 0
    assert len(_finished(calls)) == 1  # the event job's
    [retry] = _jobs(e)
    assert retry.startswith(f"{run_id}:retry:") and retry.endswith(":1")
    view = e.store.get_run(run_id)
    assert view is not None
    [step] = view.steps
    assert (step["status"], step["attempts"]) == ("Retrying", 1)

    calls.clear()
    assert e.jobs.handle(retry) == "done"
    view = e.store.get_run(run_id)
    assert view is not None and (view.status, view.output) == (RunStatus.COMPLETED.value, 4)
    assert _finished(calls) == []


def test_a_limited_run_gives_its_slot_back_in_its_suspend(
    engine: tuple[Engine, Recorder], calls: Calls
) -> None:
    """A concurrency-limited run that sleeps: created, admitted and started in one call,
    then its suspend gives its slot back and wakes the next waiter, in that same call (no
    `slots_release`). The waiter, woken, is sent."""
    e, recorder = engine
    run_id = _event_task(e, recorder, "starts/nap-limited")
    own = [name for name, args in calls if run_id in map(str, args)]
    assert own == ["create_run", "suspend"]
    assert "slots_release" not in _names(calls) and "start_run" not in _names(calls)
    slots_key = e.store.keys.prefix + ":slots:f:starts-nap-limited"
    with redis.Redis.from_url(e.settings.redis_url, decode_responses=True) as client:
        assert client.zcard(slots_key) == 0
    # A second run parked behind a holder: the holder's suspend wakes it in its own call.
    slots = e.executor.slots
    assert (
        slots.redis.acquire(
            "holder", [("f:starts-nap-limited", 1)], 0, e.now(), 30_000, 60_000, 300_000
        ).code
        == "ok"
    )
    calls.clear()
    e.runner.ingest([{"name": "starts/nap-limited"}], e.now())
    [event_job] = recorder.sent
    recorder.messages.clear()
    assert e.jobs.work(event_job) == "done"
    [parked] = [r.run_id for r in e.store.list_runs(10) if r.run_id != run_id]
    assert recorder.sent == []  # parked by its creation
    state = e.store.load_run(parked)
    assert state is not None and state.status == RunStatus.QUEUED.value
    slots.redis.release("holder", [("f:starts-nap-limited", 1)], e.now(), 30_000, 60_000)
    # Woken by that release (sent by whoever released): its delivery starts it, and its
    # suspend gives the slot back, no slots_release.
    calls.clear()
    assert e.jobs.work(f"{parked}:start", "starts-nap-limited") == "done"
    assert _names(calls).count("suspend") == 1 and "slots_release" not in _names(calls)
    with redis.Redis.from_url(e.settings.redis_url, decode_responses=True) as client:
        assert client.zcard(slots_key) == 0


def test_a_suspend_whose_job_another_delivery_took_writes_nothing(
    engine: tuple[Engine, Recorder], calls: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job's lease ran out while the function ran and another delivery leased it: that
    delivery carries the run on. This one's suspend writes nothing, and its worker does not
    finish the job under the other's feet."""
    e, recorder = engine
    e.runner.ingest([{"name": "starts/nap"}], e.now())
    [event_job] = recorder.sent
    recorder.messages.clear()
    store: Store = e.store
    real_suspend = Store.suspend
    answers: list[str] = []

    def taken_over(self: Store, run_id: str, job_id: str, token: str, *args: Any, **kw: Any) -> Any:
        leased = store.lease_job(job_id, "other-delivery", e.now() + 10**9, 30_000)
        assert not isinstance(leased, str)
        done = real_suspend(self, run_id, job_id, token, *args, **kw)
        answers.append(done.code)
        return done

    monkeypatch.setattr(Store, "suspend", taken_over)
    assert e.jobs.work(event_job) == "done"
    assert answers == ["lost"]
    [run] = store.list_runs(10)
    assert list(_jobs(e)) == [f"{run.run_id}:start"]  # still there, the other's; no timer
    assert f"{run.run_id}:start" not in _finished(calls)
    view = store.get_run(run.run_id)
    assert view is not None and view.steps == []


def test_a_wait_for_an_event_suspends_in_one_call(
    engine: tuple[Engine, Recorder], calls: Calls
) -> None:
    """The pause, its history record and timeout job, and the finish of the job that ran it."""
    e, recorder = engine
    run_id = _event_task(e, recorder, "starts/wait")
    names = _names(calls)
    assert names.count("suspend") == 1
    assert names.count("save_pause") + names.count("record_step") + names.count("enqueue_job") == 0
    assert len(_finished(calls)) == 1  # the event job's
    [timeout] = _jobs(e)
    assert timeout.startswith(f"{run_id}:timeout:")
    view = e.store.get_run(run_id)
    assert view is not None and [s["status"] for s in view.steps] == ["Waiting"]

    # The event it waits for resumes it.
    e.runner.ingest([{"name": "starts/paid", "data": {"n": 7}}], e.now())
    recorder.drain(e.jobs.work)
    view = e.store.get_run(run_id)
    assert view is not None
    assert (view.status, view.output) == (RunStatus.COMPLETED.value, {"n": 7})


def test_steps_before_a_sleep_are_saved_with_its_suspend(
    engine: tuple[Engine, Recorder], calls: Calls
) -> None:
    """Three in-process steps and the sleep after them: one call, no `save_step` first."""
    e, recorder = engine
    run_id = _event_task(e, recorder, "starts/steps-nap")
    own = [name for name, args in calls if run_id in map(str, args)]
    assert own == ["create_run", "suspend"]
    assert _names(calls).count("save_step") == 0
    view = e.store.get_run(run_id)
    assert view is not None
    assert [(s["id"] if s["kind"] == "Sleep" else s["name"], s["status"]) for s in view.steps] == [
        ("s0", "Completed"),
        ("s1", "Completed"),
        ("s2", "Completed"),
        (view.steps[3]["id"], "Sleeping"),
    ]
    [sleep_job] = _jobs(e)
    calls.clear()
    assert e.jobs.handle(sleep_job) == "done"
    view = e.store.get_run(run_id)
    assert view is not None and (view.status, view.output) == (RunStatus.COMPLETED.value, 3)
    # The wake saves the sleep's end alone (`save_step`), its memos read from the suspend's.
    assert [args[1] for name, args in calls if name == "save_step"] == [sleep_job.split(":")[2]]


def test_an_invoke_suspends_in_one_call(engine: tuple[Engine, Recorder], calls: Calls) -> None:
    """The step before it, the invoke's pause, history record and timeout job, its
    `inngest/function.invoked` event with the job that processes it, and the finish of the
    job that ran it: one `suspend`."""
    e, recorder = engine
    run_id = _event_task(e, recorder, "starts/invoker")
    names = _names(calls)
    assert names.count("suspend") == 1
    for name in ("save_step", "save_pause", "record_step", "enqueue_job"):
        assert names.count(name) == 0, name
    assert names.count("ingest_events") == 1  # the trigger's, sent before the task
    assert len(_finished(calls)) == 1  # the trigger's event job
    own = [name for name, args in calls if run_id in map(str, args)]
    assert own == ["create_run", "suspend"]
    # Its event's job was sent; run, it starts the child, whose end resumes the parent.
    [invoked] = recorder.sent
    assert invoked.startswith("event:")
    [record] = [r for r in e.store.list_events(10) if r.event["name"] == "inngest/function.invoked"]
    assert invoked == f"event:{record.internal_id}"
    recorder.drain(e.jobs.work)
    view = e.store.get_run(run_id)
    assert view is not None and (view.status, view.output) == (RunStatus.COMPLETED.value, 41)
    assert _jobs(e) == {}


def test_a_lookback_wait_with_nothing_to_look_at_suspends_in_one_call(
    engine: tuple[Engine, Recorder], calls: Calls
) -> None:
    """The pause, its history record and timeout job, the read of the recent events of its
    name (none) and the finish of the job: one `suspend`, no reads after it."""
    e, recorder = engine
    run_id = _event_task(e, recorder, "starts/look")
    own = [name for name, args in calls if run_id in map(str, args)]
    assert own == ["create_run", "suspend"]
    assert len(_finished(calls)) == 1  # the event job's
    [timeout] = _jobs(e)
    assert timeout.startswith(f"{run_id}:timeout:")


def test_a_lookback_wait_matches_an_event_sent_before_it(
    engine: tuple[Engine, Recorder], calls: Calls
) -> None:
    """The suspend finds an event of its name in the window: its job stays until the event
    is matched (`consume_pause`), then the worker finishes it; the run resumes with it."""
    e, recorder = engine
    e.runner.ingest([{"name": "starts/paid", "data": {"n": 5}}], e.now())
    recorder.messages.clear()  # nothing listens yet: no job
    run_id = _event_task(e, recorder, "starts/look")
    own = [name for name, args in calls if run_id in map(str, args)]
    assert own == ["create_run", "suspend", "consume_pause"]
    assert f"{run_id}:start" in _finished(calls)
    recorder.drain(e.jobs.work)
    view = e.store.get_run(run_id)
    assert view is not None and (view.status, view.output) == (RunStatus.COMPLETED.value, {"n": 5})


def test_a_wait_and_an_invoke_in_parallel_suspend_in_one_call(
    engine: tuple[Engine, Recorder], calls: Calls
) -> None:
    """Both pauses, their history records and timeout jobs, the pending set, the invoke's
    event with its job, and the finish of the job: one `suspend`."""
    e, recorder = engine
    run_id = _event_task(e, recorder, "starts/both")
    own = [name for name, args in calls if run_id in map(str, args)]
    assert own == ["create_run", "suspend"]
    names = _names(calls)
    for name in ("set_pending", "save_pause", "record_step", "enqueue_job"):
        assert names.count(name) == 0, name
    assert names.count("ingest_events") == 1  # the trigger's
    assert len(_finished(calls)) == 1  # the trigger's event job
    timeouts = [job for job in _jobs(e) if job.startswith(f"{run_id}:timeout:")]
    assert len(timeouts) == 2
    view = e.store.get_run(run_id)
    assert view is not None and sorted(s["status"] for s in view.steps) == ["Waiting", "Waiting"]

    # The child runs and ends; the event arrives: the run resumes and ends with both.
    e.runner.ingest([{"name": "starts/paid", "data": {"n": 1}}], e.now())
    recorder.drain(e.jobs.work)
    view = e.store.get_run(run_id)
    assert view is not None
    assert (view.status, view.output) == (RunStatus.COMPLETED.value, [{"n": 1}, 8])
    assert _jobs(e) == {}
