"""Rerun and replay end to end: a real in-process function executed by the engine (the jobs
Celery would carry are run here, in order), then replayed through the API."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from flask.testing import FlaskClient

import app.sdk as inngest
from app.api import create_app
from app.config import Settings
from app.engine import Engine
from app.functions import FunctionSet
from tests.api.conftest import Recorder
from tests.api.openapi_check import check

client = inngest.Inngest(app_id="replay")
calls: dict[str, int] = {}
broken = {"b": True}


def _count(name: str) -> str:
    calls[name] = calls.get(name, 0) + 1
    return name


@client.create_function(fn_id="flow", trigger=inngest.TriggerEvent(event="t/replay"), retries=0)
def flow(ctx: inngest.ContextSync) -> object:
    a = ctx.step.run("a", lambda: _count("a"))

    def b() -> str:
        _count("b")
        if broken["b"]:
            raise inngest.NonRetriableError("b is broken")
        return "b"

    return [a, ctx.step.run("b", b), ctx.step.run("c", lambda: _count("c"))]


@dataclass
class World:
    engine: Engine
    http: FlaskClient
    sender: Recorder

    def drain(self) -> None:
        """Run every job sent so far, and those they send, once each."""
        done: set[str] = set()
        while True:
            todo = [args[0] for _, args in self.sender.sent if args and args[0] not in done]
            if not todo:
                return
            for job_id in todo:
                done.add(job_id)
                if job_id.startswith("event:"):
                    self.engine.runner.process_event(
                        job_id.removeprefix("event:"), self.engine.now()
                    )
                else:
                    self.engine.jobs.handle(job_id)


@pytest.fixture
def world(redis_url: str) -> Iterator[World]:
    calls.clear()
    broken["b"] = True
    sender = Recorder()
    engine = Engine.create(
        Settings(redis_url=redis_url, key_prefix="replaytest"),
        sender=sender,
        local=FunctionSet([flow]),
    )
    app = create_app(engine)
    app.testing = True
    yield World(engine, app.test_client(), sender)
    engine.store.close()


def _status(world: World, run_id: str) -> str:
    view = world.engine.store.get_run(run_id)
    assert view is not None
    return view.status


def test_replay_skips_the_steps_that_completed(world: World) -> None:
    [event_id] = world.engine.runner.ingest([{"name": "t/replay"}], world.engine.now())
    world.drain()
    [run_id] = world.engine.store.event_run_ids(event_id)
    assert _status(world, run_id) == "Failed"
    assert calls == {"a": 1, "b": 1}

    broken["b"] = False
    response = world.http.post(f"/v1/runs/{run_id}/replay")
    data = check(response, "post", "/v1/runs/{run_id}/replay")["data"]
    assert data["copied_steps"] == 1
    world.drain()
    assert _status(world, data["run_id"]) == "Completed"
    assert calls == {"a": 1, "b": 2, "c": 1}  # a was not executed again
    run = check(world.http.get(f"/v1/runs/{data['run_id']}"), "get", "/v1/runs/{run_id}")
    assert run["data"]["output"] == ["a", "b", "c"]
    assert run["data"]["original_run_id"] == run_id
    assert [step["name"] for step in run["data"]["steps"]] == ["a", "b", "c"]


def test_rerun_executes_every_step_again(world: World) -> None:
    [event_id] = world.engine.runner.ingest([{"name": "t/replay"}], world.engine.now())
    world.drain()
    [run_id] = world.engine.store.event_run_ids(event_id)
    broken["b"] = False
    data = check(world.http.post(f"/v1/runs/{run_id}/rerun"), "post", "/v1/runs/{run_id}/rerun")
    world.drain()
    assert _status(world, data["data"]["run_id"]) == "Completed"
    assert calls == {"a": 2, "b": 2, "c": 1}
    # The event lists both runs.
    runs = check(world.http.get(f"/v1/events/{event_id}/runs"), "get", "/v1/events/{event_id}/runs")
    assert {run["run_id"] for run in runs["data"]} == {run_id, data["data"]["run_id"]}
