"""A message of due timers (`JobRunner.handle_each`) run by a real Engine over a real Redis:
its sleeps are marked done and read together (`Executor.woken`), each run ends with its last
step in the same script call, and one job of the batch failing never affects the others.

Celery is replaced by a recorder of `send_task` calls; each message is run by calling
`handle_each`, as the timers task does.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import app.sdk as inngest
from app.config import Settings
from app.engine import Engine
from app.functions import FunctionSet
from app.models import RunStatus

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


def calls(stats: dict[str, Any], command: str) -> int:
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def test_a_message_of_wakes_ends_each_run_with_its_last_step(
    engine: tuple[Engine, Recorder], redis_url: str
) -> None:
    e, sender = engine
    runs, _ = asleep(e, sender, 4)
    job_ids = timers(sender)
    stats = redis.Redis.from_url(redis_url, decode_responses=True)
    before = stats.info("commandstats")
    assert e.jobs.handle_each(job_ids) == dict.fromkeys(job_ids, "done")
    after = stats.info("commandstats")
    # Per wake, three script calls: its lease, its sleep marked done (read with the run, all
    # in one MULTI), and its last step saved with the run's end; no SCRIPT EXISTS asked.
    assert calls(after, "evalsha") - calls(before, "evalsha") == 3 * len(job_ids)
    assert calls(after, "exec") - calls(before, "exec") == 1
    assert calls(after, "script|exists") == calls(before, "script|exists")
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
