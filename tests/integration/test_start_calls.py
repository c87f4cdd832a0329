"""Starting a run is one script call (issue 8, 1b): in a worker's task, the run its event job
leaves to the work list first is created Running with its start job leased to the task
(lua/create_run.lua), and each other run of the list is started by the call that leases its
start job (lua/start_run.lua); neither needs `begin_job` + `mark_started`. A start job sent to
another worker carries its function in its message, so that worker too starts the run in the
call that leases the job. Counted at the client, in this process (the task's code as a worker
runs it; a recorder stands in for Celery).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from app.config import Settings
from app.engine import Engine
from app.functions import load_functions
from app.models import RunStatus
from app.state.lua_files import LuaScripts

FUNCTIONS = "tests.integration.start_functions"


class Recorder:
    """Stands in for Celery: keeps each message's arguments (a job id, a start job's function)."""

    def __init__(self) -> None:
        self.messages: list[list[str]] = []

    def send_task(self, name: str, args: Any = None, **options: Any) -> None:
        self.messages.append([str(arg) for arg in args])

    @property
    def sent(self) -> list[str]:
        """The job ids sent."""
        return [args[0] for args in self.messages]


@pytest.fixture
def scripts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of every script this process runs, in order."""
    called: list[str] = []
    run = LuaScripts.run

    def counted(self: LuaScripts, name: str, *args: Any, **kwargs: Any) -> Any:
        called.append(name)
        return run(self, name, *args, **kwargs)

    monkeypatch.setattr(LuaScripts, "run", counted)
    return called


@pytest.fixture
def engine(redis_url: str) -> Iterator[tuple[Engine, Recorder]]:
    recorder = Recorder()
    # One process in the pool: the task keeps its whole work list (no share to send).
    settings = Settings.from_env().replace(redis_url=redis_url, functions=[], worker_concurrency=1)
    engine = Engine.create(
        settings, sender=recorder, local=load_functions([FUNCTIONS]), inline=True
    )
    yield engine, recorder
    engine.store.close()


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


def test_a_run_whose_start_a_concurrency_limit_decides_starts_as_before(
    engine: tuple[Engine, Recorder], scripts: list[str]
) -> None:
    """Concurrency (and throttle) decide when a job executes (app.flow.slots): such a run is
    created Queued and marked started once it holds its slot."""
    e, recorder = engine
    _event_task(e, recorder, [{"name": "starts/limited"}])
    [run] = e.store.list_runs(10)
    assert run.status == RunStatus.COMPLETED.value
    assert scripts.count("create_run") == 1
    assert scripts.count("start_run") == 0
    assert scripts.count("mark_started") == 1
    assert scripts.count("begin_job") == 2  # the event job's and the start job's
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
    while recorder.messages:  # their next steps, one job each
        messages, recorder.messages = recorder.messages, []
        for args in messages:
            assert e.jobs.work(*args) == "done"
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
