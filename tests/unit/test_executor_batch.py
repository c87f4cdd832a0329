"""The executor saves consecutive in-process step results in one script call (app/executor.py,
SAVE_BATCH_*), against a real Redis: everything is stored in order, and a batch that meets a
memo written by another execution stops the call without storing what followed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

import app.sdk as inngest
from app.config import Settings
from app.engine import Engine
from app.functions import FunctionSet
from app.ids import hash_step_id

client = inngest.Inngest(app_id="batch")
RIVAL: dict[str, Any] = {}
"""Set by a test: the store and run a step of `rivalled` writes a competing memo into."""


@client.create_function(fn_id="five", trigger=inngest.TriggerEvent(event="t/five"), retries=0)
def five(ctx: inngest.ContextSync) -> int:
    total = 0
    for i in range(5):
        total = ctx.step.run(f"s{i}", lambda i=i, t=total: t + i)
    return total


@client.create_function(fn_id="rivalled", trigger=inngest.TriggerEvent(event="t/rival"), retries=0)
def rivalled(ctx: inngest.ContextSync) -> str:
    def first() -> str:
        # Another execution of this run saved step "b" first (as after a redelivery).
        engine: Engine = RIVAL["engine"]
        state = engine.store.load_run(RIVAL["run_id"])
        assert state is not None
        engine.store.save_step(state.run_id, RIVAL["b_hash"], {"data": "theirs"}, {}, 0)
        return "a"

    ctx.step.run("a", first)
    ctx.step.run("b", lambda: "ours")
    ctx.step.run("c", lambda: "after ours")
    return "done"


class _Sent:
    def send_task(self, name: str, args: Any = None, **options: Any) -> None:
        return None


@pytest.fixture
def engine(redis_url: str) -> Iterator[Engine]:
    functions = FunctionSet()
    for function in client.functions:
        functions.add(function)
    e = Engine.create(Settings(redis_url=redis_url), sender=_Sent(), local=functions)
    yield e
    e.store.close()


def start(engine: Engine, name: str) -> str:
    now = engine.now()
    [event_id] = engine.runner.ingest([{"name": name, "data": {}}], now)
    engine.runner.process_event(event_id, now)
    [run_id] = engine.store.event_run_ids(event_id)
    return run_id


def test_a_run_of_five_steps_saves_them_all_in_order(engine: Engine, redis_url: str) -> None:
    run_id = start(engine, "t/five")
    engine.jobs.handle(f"{run_id}:start")
    view = engine.store.get_run(run_id)
    assert view is not None and view.status == "Completed" and view.output == 10
    assert [s["name"] for s in view.steps] == ["s0", "s1", "s2", "s3", "s4"]
    assert all(s["status"] == "Completed" and s["ended_at"] >= s["started_at"] for s in view.steps)
    state = engine.store.load_run(run_id)
    assert state is not None and len(state.stack) == 5
    # Each saved step is counted once in the step duration histogram.
    metrics = redis.Redis.from_url(redis_url, decode_responses=True)
    assert metrics.hget("sl:metric:step_duration_seconds", "batch-five|count") == "5"


def test_a_batch_meeting_another_memo_stops_without_storing_what_followed(
    engine: Engine,
) -> None:
    run_id = start(engine, "t/rival")
    RIVAL.update(engine=engine, run_id=run_id, b_hash=hash_step_id("b"))
    engine.jobs.handle(f"{run_id}:start")
    state = engine.store.load_run(run_id)
    assert state is not None
    assert state.steps[hash_step_id("b")] == {"data": "theirs"}
    assert hash_step_id("c") not in state.steps  # computed from "ours": never stored
    assert state.status == "Running"  # the other execution goes on; this one stopped
