"""`GET /v1/runs/<id>` says why a queued or waiting run is not running (app/why.py): through
the real engine, Redis and Flask app; Celery's broker hop is a recorder of `send_task` and the
jobs are run by hand (`JobRunner.handle`), so each state is reached exactly."""

from __future__ import annotations

import datetime
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask.testing import FlaskClient

import app.sdk as inngest
from app.api import create_app
from app.config import Settings
from app.engine import Engine
from app.functions import FunctionSet
from app.liveness import Heartbeat
from tests.integration.test_flow_slots_engine import Recorder

client = inngest.Inngest(app_id="whyunit")
GATES: dict[str, threading.Event] = {}
ENTERED: dict[str, threading.Event] = {}


def _gate(tag: str) -> str:
    ENTERED.setdefault(tag, threading.Event()).set()
    GATES.setdefault(tag, threading.Event()).wait(20)
    return tag


@client.create_function(
    fn_id="keyed",
    trigger=inngest.TriggerEvent(event="why/keyed"),
    concurrency=[inngest.Concurrency(limit=1, key="event.data.user")],
)
def keyed(ctx: inngest.ContextSync) -> str:
    tag = str(ctx.event.data["tag"])
    return ctx.step.run("work", lambda: _gate(tag) if ctx.event.data.get("block") else tag)


@client.create_function(
    fn_id="throttled",
    trigger=inngest.TriggerEvent(event="why/throttled"),
    throttle=inngest.Throttle(limit=1, period=datetime.timedelta(minutes=10)),
)
def throttled(ctx: inngest.ContextSync) -> int:
    return ctx.step.run("work", lambda: 1)


@client.create_function(fn_id="napper", trigger=inngest.TriggerEvent(event="why/nap"))
def napper(ctx: inngest.ContextSync) -> str:
    ctx.step.sleep("nap", datetime.timedelta(hours=1))
    return "rested"


@client.create_function(fn_id="waiter", trigger=inngest.TriggerEvent(event="why/wait"))
def waiter(ctx: inngest.ContextSync) -> object:
    return ctx.step.wait_for_event(
        "approval", event="why/approved", timeout=datetime.timedelta(minutes=30)
    )


def _fail() -> int:
    raise ValueError("not yet")


@client.create_function(fn_id="flaky", trigger=inngest.TriggerEvent(event="why/flaky"), retries=3)
def flaky(ctx: inngest.ContextSync) -> int:
    return ctx.step.run("shaky", _fail)


@dataclass
class Harness:
    engine: Engine
    http: FlaskClient

    def run_of(self, name: str, **data: Any) -> str:
        [event_id] = self.engine.runner.ingest([{"name": name, "data": data}], self.engine.now())
        self.engine.runner.process_event(event_id, self.engine.now())
        [run_id] = self.engine.store.event_run_ids(event_id)
        return run_id

    def handle(self, job_id: str) -> str:
        return self.engine.jobs.handle(job_id)

    def waiting(self, run_id: str) -> dict[str, Any]:
        response = self.http.get(f"/v1/runs/{run_id}")
        assert response.status_code == 200, response.get_json()
        data = response.get_json()["data"]
        assert "waiting" in data
        return data["waiting"]  # type: ignore[no-any-return]

    def worker_alive(self) -> None:
        Heartbeat(self.engine.store, "worker", 5, self.engine.now(), pool="threads").beat(
            self.engine.now(), force=True
        )


@pytest.fixture
def h(redis_url: str) -> Iterator[Harness]:
    GATES.clear()
    ENTERED.clear()
    engine = Engine.create(
        Settings(redis_url=redis_url, lease_seconds=30),
        sender=Recorder(),
        local=FunctionSet([keyed, throttled, napper, waiter, flaky]),
    )
    app = create_app(engine)
    app.testing = True
    yield Harness(engine, app.test_client())
    for gate in GATES.values():
        gate.set()
    engine.store.close()


def test_a_run_behind_a_keyed_concurrency_limit_names_the_key_and_its_place(h: Harness) -> None:
    holder = h.run_of("why/keyed", user="ada", tag="a", block=True)
    thread = threading.Thread(target=h.handle, args=(f"{holder}:start",))
    thread.start()
    assert ENTERED.setdefault("a", threading.Event()).wait(10)
    try:
        second = h.run_of("why/keyed", user="ada", tag="b")
        third = h.run_of("why/keyed", user="ada", tag="c")
        other = h.run_of("why/keyed", user="bob", tag="d")
        assert h.handle(f"{second}:start") == "parked"
        assert h.handle(f"{third}:start") == "parked"
        assert h.waiting(holder) is None  # a worker runs it now
        first, behind = h.waiting(second), h.waiting(third)
        assert first["reason"] == behind["reason"] == "concurrency"
        assert first["key_value"] == "ada" and first["key"] == "event.data.user"
        assert (first["ahead"], behind["ahead"]) == (0, 1)
        assert first["running"] == 1 and first["limit"] == 1
        assert "key event.data.user = ada" in first["message"] and "1 ahead" in behind["message"]
        assert h.handle(f"{other}:start") == "done"  # another key is not held up
    finally:
        GATES.setdefault("a", threading.Event()).set()
        thread.join(10)


def test_a_throttled_start_says_until_when(h: Harness) -> None:
    # Limit 1 per 10 min with the SDK's burst 1: two start now, the third 10 min later.
    for _ in range(2):
        first = h.run_of("why/throttled")
        assert h.handle(f"{first}:start") == "done"
    second = h.run_of("why/throttled")
    before = h.engine.now()
    assert h.handle(f"{second}:start") == "parked"
    waiting = h.waiting(second)
    assert waiting["reason"] == "throttled"
    until = datetime.datetime.fromisoformat(waiting["until"]).timestamp() * 1000
    assert before + 9 * 60_000 < until <= before + 10 * 60_000 + 1000
    assert waiting["message"].startswith("throttled until ")


def test_sleeping_and_waiting_runs_say_until_when(h: Harness) -> None:
    nap = h.run_of("why/nap")
    wait = h.run_of("why/wait")
    before = h.engine.now()
    h.worker_alive()
    assert h.handle(f"{nap}:start") == "done"
    assert h.handle(f"{wait}:start") == "done"
    sleeping, waiting = h.waiting(nap), h.waiting(wait)
    assert sleeping["reason"] == "sleeping" and sleeping["step"] == "nap"
    wakes = datetime.datetime.fromisoformat(sleeping["until"]).timestamp() * 1000
    assert before + 3_600_000 - 1000 <= wakes <= h.engine.now() + 3_600_000
    assert waiting["reason"] == "waiting_for_event" and waiting["event"] == "why/approved"
    assert "waiting for event why/approved until" in waiting["message"]


def test_a_retrying_step_says_which_attempt_and_when(h: Harness) -> None:
    run_id = h.run_of("why/flaky")
    h.worker_alive()
    assert h.handle(f"{run_id}:start") == "done"
    waiting = h.waiting(run_id)
    assert waiting["reason"] == "retrying"
    assert (waiting["attempt"], waiting["max_attempts"]) == (2, 4)
    assert waiting["message"].startswith("retry 2 of 4 at ")
    assert waiting["until"] is not None


def test_a_queued_run_with_no_live_worker_says_so(h: Harness) -> None:
    earlier = [h.run_of("why/nap") for _ in range(2)]
    run_id = h.run_of("why/nap")
    waiting = h.waiting(run_id)
    assert waiting["reason"] == "no_worker"
    assert waiting["ahead"] >= len(earlier)
    assert "no live worker" in waiting["message"]
    h.worker_alive()
    assert h.waiting(run_id)["reason"] == "queued"
