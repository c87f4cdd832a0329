"""A message of due timers (`JobRunner.handle_each`) run by a real Engine over a real Redis:
its sleeps are marked done and read together (`Executor.woken`), each run ends with its last
step in the same script call, and one job of the batch failing never affects the others.

Celery is replaced by a recorder of `send_task` calls; each message is run by calling
`handle_each`, as the timers task does.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.client import Pipeline

import app.sdk as inngest
from app.config import Settings
from app.engine import Engine
from app.functions import FunctionSet
from app.models import Job, JobKind, RunStatus

client = inngest.Inngest(app_id="wk")


@client.create_function(fn_id="nap", trigger=inngest.TriggerEvent(event="wk/nap"), retries=0)
def nap(ctx: inngest.ContextSync) -> str:
    until = int(ctx.event.data["until"])
    ctx.step.sleep_until("nap", datetime.datetime.fromtimestamp(until / 1000, datetime.UTC))
    return str(ctx.step.run("woke", lambda: f"woke {ctx.event.data['n']}"))


class Recorder:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send_task(self, name: str, args: Any = None, **options: Any) -> None:
        self.sent.append(args[0])

    def take(self) -> list[Any]:
        sent, self.sent = self.sent, []
        return sent


@pytest.fixture
def engine(redis_url: str) -> Iterator[tuple[Engine, Recorder]]:
    settings = Settings(redis_url=redis_url, key_prefix="wk", eta_max_seconds=0)
    sender = Recorder()
    engine = Engine.create(settings, sender=sender, local=FunctionSet([nap]), inline=True)
    yield engine, sender
    engine.store.close()


def asleep(engine: Engine, sender: Recorder, n: int) -> tuple[list[str], int]:
    """n runs of `nap`, each asleep until one due time: (their run ids, the due time)."""
    due = engine.now() + 3_600_000
    events = [{"name": "wk/nap", "data": {"until": due, "n": i}} for i in range(n)]
    engine.runner.ingest(events, engine.now())
    while sender.sent:
        for job_id in sender.take():
            engine.jobs.handle(job_id)
    runs = [view.run_id for view in engine.store.list_runs(limit=n)]
    assert len(runs) == n
    engine.queue.release_due(due, budget_s=float("inf"))
    return runs, due


def timers(sender: Recorder) -> list[str]:
    [message] = sender.take()
    assert isinstance(message, list)
    return [str(job_id) for job_id in message]


def round_trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What redis-py sends from this thread from now on (not the lease renewals' thread),
    one entry per round trip (a command, a pipeline, or a command a pipeline sends on its
    own before it)."""
    sent: list[str] = []
    here = threading.current_thread()

    def note(what: str) -> None:
        if threading.current_thread() is here:
            sent.append(what)

    command, execute = redis.Redis.execute_command, Pipeline.execute
    immediate = Pipeline.immediate_execute_command

    def counted_command(self: redis.Redis, *args: Any, **options: Any) -> Any:
        note(str(args[0]))
        return command(self, *args, **options)

    def counted_immediate(self: Pipeline, *args: Any, **options: Any) -> Any:
        note(str(args[0]))
        return immediate(self, *args, **options)

    def counted_pipeline(self: Pipeline, *args: Any, **options: Any) -> Any:
        note("pipeline")
        return execute(self, *args, **options)

    monkeypatch.setattr(redis.Redis, "execute_command", counted_command)
    monkeypatch.setattr(Pipeline, "immediate_execute_command", counted_immediate)
    monkeypatch.setattr(Pipeline, "execute", counted_pipeline)
    return sent


def test_a_message_of_wakes_ends_each_run_with_its_last_step(
    engine: tuple[Engine, Recorder], redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    e, sender = engine
    runs, _ = asleep(e, sender, 4)
    job_ids = timers(sender)
    with e.registry.pinned():  # as the timers task runs it: one registry read per task
        trips = round_trips(monkeypatch)
        assert e.jobs.handle_each(job_ids) == dict.fromkeys(job_ids, "done")
    # Three round trips for the whole message: its leases, its sleeps marked done (read with
    # their runs), and each run's last step saved with its end; no SCRIPT EXISTS before them.
    assert trips == ["pipeline", "pipeline", "pipeline"]
    for run_id in runs:
        view = e.store.get_run(run_id)
        assert view is not None and view.status == RunStatus.COMPLETED.value
        state = e.store.load_run(run_id)
        assert state is not None and len(state.stack) == 2  # the sleep, then "woke"
        assert str(view.output).startswith("woke ")
    assert e.store.count_jobs() == 0
    count = redis.Redis.from_url(redis_url).hget("wk:metric:step_duration_seconds", "wk-nap|count")
    assert count == b"4"  # "woke" of each run, counted once by the script that ended it
    # The message delivered again (a redelivery) finds nothing to do.
    monkeypatch.undo()
    assert e.jobs.handle_each(job_ids) == dict.fromkeys(job_ids, "gone")


def test_one_job_of_a_message_failing_leaves_the_others_alone(
    engine: tuple[Engine, Recorder], redis_url: str
) -> None:
    e, sender = engine
    runs, _ = asleep(e, sender, 4)
    job_ids = timers(sender)
    # One run's state is broken (a step on its stack without a memo): reading it raises, so
    # the sleeps cannot all be read together; each then wakes alone, and only that one fails.
    broken = next(job_id for job_id in job_ids if job_id.startswith(runs[1]))
    redis.Redis.from_url(redis_url).rpush(f"wk:{{{runs[1]}}}:stack", "ghost")
    # And another run was cancelled while asleep: its timer is gone with it.
    cancelled = next(job_id for job_id in job_ids if job_id.startswith(runs[2]))
    assert e.executor.cancel(runs[2], e.now())
    outcomes = e.jobs.handle_each(job_ids)
    assert outcomes[broken] == "failed" and outcomes[cancelled] == "gone"
    assert [outcomes[job_id] for job_id in job_ids].count("done") == 2
    done = [run_id for run_id in runs if run_id not in (runs[1], runs[2])]
    for run_id in done:
        view = e.store.get_run(run_id)
        assert view is not None and view.status == RunStatus.COMPLETED.value
    view = e.store.get_run(runs[1])
    assert view is not None and view.status == RunStatus.RUNNING.value
    assert e.store.count_jobs() == 1  # the broken one waits for its retry


def test_an_end_whose_guess_is_wrong_is_made_alone(engine: tuple[Engine, Recorder]) -> None:
    """The ends of a message are written together, each guessing its job is its run's only
    one; a run with another job (or a pause) refuses the guess, and is ended alone, its
    other job dropped with it."""
    e, sender = engine
    runs, due = asleep(e, sender, 3)
    job_ids = timers(sender)
    extra = Job(id=f"{runs[0]}:plan:x", kind=JobKind.EDGE, run_id=runs[0], step="x")
    assert e.store.enqueue_job(extra, due + 60_000, due + 60_000)
    assert e.jobs.handle_each(job_ids) == dict.fromkeys(job_ids, "done")
    for run_id in runs:
        view = e.store.get_run(run_id)
        assert view is not None and view.status == RunStatus.COMPLETED.value
    assert e.store.count_jobs() == 0
