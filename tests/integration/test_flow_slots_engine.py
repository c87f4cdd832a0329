"""Concurrency, throttle and priority through the real engine and Redis, jobs run by hand.

Celery is replaced by a recorder of `send_task`, so each test sees exactly which jobs the
engine sends (a woken waiter, a deferred start) and runs them itself with `JobRunner.handle`.
A step that must hold its slot blocks on a `threading.Event` in another thread.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis

import app.sdk as inngest
from app.config import Settings
from app.engine import Engine
from app.functions import FunctionSet

client = inngest.Inngest(app_id="slotunit")
GATES: dict[str, threading.Event] = {}
ENTERED: dict[str, threading.Event] = {}


def _gate(tag: str) -> str:
    """Signal that the step runs, then block until the test opens the gate for `tag`."""
    ENTERED.setdefault(tag, threading.Event()).set()
    GATES.setdefault(tag, threading.Event()).wait(20)
    return tag


@client.create_function(
    fn_id="gated",
    trigger=inngest.TriggerEvent(event="unit/gated"),
    concurrency=[inngest.Concurrency(limit=1)],
    priority=inngest.Priority(run="event.data.prio"),
)
def gated(ctx: inngest.ContextSync) -> str:
    tag = str(ctx.event.data["tag"])
    return ctx.step.run("work", lambda: _gate(tag) if ctx.event.data.get("block") else tag)


@client.create_function(
    fn_id="keyed",
    trigger=inngest.TriggerEvent(event="unit/keyed"),
    concurrency=[inngest.Concurrency(limit=1, key="event.data.user")],
)
def keyed(ctx: inngest.ContextSync) -> str:
    tag = str(ctx.event.data["tag"])
    return ctx.step.run("work", lambda: _gate(tag) if ctx.event.data.get("block") else tag)


@client.create_function(
    fn_id="napper",
    trigger=inngest.TriggerEvent(event="unit/nap"),
    concurrency=[inngest.Concurrency(limit=1)],
)
def napper(ctx: inngest.ContextSync) -> str:
    ctx.step.run("before", lambda: 1)
    ctx.step.sleep("nap", datetime.timedelta(hours=1))
    return "rested"


@client.create_function(
    fn_id="throttled",
    trigger=inngest.TriggerEvent(event="unit/throttled"),
    throttle=inngest.Throttle(limit=1, period=datetime.timedelta(seconds=5)),
)
def throttled(ctx: inngest.ContextSync) -> int:
    return ctx.step.run("work", lambda: 1)


@client.create_function(fn_id="free", trigger=inngest.TriggerEvent(event="unit/free"))
def free(ctx: inngest.ContextSync) -> int:
    return ctx.step.run("work", lambda: 1)


@dataclass
class Recorder:
    sent: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send_task(self, name: str, args: Any = None, **options: Any) -> None:
        with self.lock:
            self.sent.append((name, str(args[0]), options))

    def ids(self, task: str) -> list[str]:
        with self.lock:
            return [job_id for name, job_id, _ in self.sent if name == task]


@dataclass
class Harness:
    engine: Engine
    sender: Recorder
    redis: redis.Redis

    def run_of(self, name: str, **data: Any) -> str:
        """Send an event, process it as a worker would; returns the run id (start queued)."""
        [event_id] = self.engine.runner.ingest([{"name": name, "data": data}], self.engine.now())
        self.engine.runner.process_event(event_id, self.engine.now())
        [run_id] = self.engine.store.event_run_ids(event_id)
        return run_id

    def handle(self, job_id: str) -> str:
        return self.engine.jobs.handle(job_id)

    def in_thread(self, job_id: str) -> tuple[threading.Thread, list[str]]:
        out: list[str] = []
        thread = threading.Thread(target=lambda: out.append(self.handle(job_id)))
        thread.start()
        return thread, out

    def status(self, run_id: str) -> str:
        view = self.engine.store.get_run(run_id)
        assert view is not None
        return view.status

    def sent_after(self, mark: int) -> list[str]:
        with self.sender.lock:
            return [
                job_id
                for name, job_id, _ in self.sender.sent[mark:]
                if name not in ("stepline.event", "stepline.archive")  # beat's archive job too
            ]

    def mark(self) -> int:
        with self.sender.lock:
            return len(self.sender.sent)


@pytest.fixture
def h(redis_url: str) -> Iterator[Harness]:
    GATES.clear()
    ENTERED.clear()
    sender = Recorder()
    engine = Engine.create(
        Settings(redis_url=redis_url, lease_seconds=30),
        sender=sender,
        local=FunctionSet([gated, keyed, napper, throttled, free]),
    )
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    yield Harness(engine, sender, r)
    for gate in GATES.values():
        gate.set()
    r.close()
    engine.store.close()


def hold(h: Harness, name: str, tag: str, **data: Any) -> tuple[str, threading.Thread, list[str]]:
    """Start a run whose step blocks (holding its slot) until GATES[tag] is set."""
    run_id = h.run_of(name, tag=tag, block=True, **data)
    thread, out = h.in_thread(f"{run_id}:start")
    assert ENTERED.setdefault(tag, threading.Event()).wait(10), "the step never started"
    return run_id, thread, out


def release(tag: str, thread: threading.Thread, out: list[str]) -> None:
    GATES.setdefault(tag, threading.Event()).set()
    thread.join(10)
    assert out == ["done"]


def test_over_the_limit_a_job_parks_and_the_release_sends_it(h: Harness) -> None:
    a, thread, out = hold(h, "unit/gated", "a")
    b = h.run_of("unit/gated", tag="b")
    assert h.handle(f"{b}:start") == "parked"
    # Parked in Redis as a queued job, the run still Queued; nobody sent it anywhere.
    assert h.status(b) == "Queued"
    assert h.redis.hget("sl:jobs:owner", f"{b}:start") == "parked"
    assert h.redis.zrange("sl:slots-wait:f:slotunit-gated", 0, -1) == [f"{b}:start"]
    mark = h.mark()
    release("a", thread, out)
    assert h.status(a) == "Completed"
    assert h.sent_after(mark) == [f"{b}:start"]
    assert h.handle(f"{b}:start") == "done"
    assert h.status(b) == "Completed"
    assert h.redis.zcard("sl:slots:f:slotunit-gated") == 0


def test_a_high_priority_run_goes_first_then_fifo(h: Harness) -> None:
    _, thread, out = hold(h, "unit/gated", "blocker")
    low1 = h.run_of("unit/gated", tag="low1")
    low2 = h.run_of("unit/gated", tag="low2")
    high = h.run_of("unit/gated", tag="high", prio=600)
    for run_id in (low1, low2, high):
        assert h.handle(f"{run_id}:start") == "parked"
    order: list[str] = []
    mark = h.mark()
    release("blocker", thread, out)
    while len(order) < 3:
        [job_id] = h.sent_after(mark)
        order.append(job_id.split(":")[0])
        mark = h.mark()
        assert h.handle(job_id) == "done"
    assert order == [high, low1, low2]


def test_a_busy_key_does_not_hold_up_another(h: Harness) -> None:
    _, thread, out = hold(h, "unit/keyed", "busy", user="alice")
    bob = h.run_of("unit/keyed", tag="bob", user="bob")
    assert h.handle(f"{bob}:start") == "done"
    alice2 = h.run_of("unit/keyed", tag="alice2", user="alice")
    assert h.handle(f"{alice2}:start") == "parked"
    mark = h.mark()
    release("busy", thread, out)
    assert h.sent_after(mark) == [f"{alice2}:start"]


def test_sleeping_runs_hold_no_slot(h: Harness) -> None:
    first = h.run_of("unit/nap")
    assert h.handle(f"{first}:start") == "done"
    second = h.run_of("unit/nap")
    assert h.handle(f"{second}:start") == "done"  # not parked: the first one sleeps
    assert h.redis.zcard("sl:slots:f:slotunit-napper") == 0
    view = h.engine.store.get_run(second)
    assert view is not None and [s["status"] for s in view.steps] == ["Completed", "Sleeping"]


def test_a_cancelled_waiter_is_not_woken(h: Harness) -> None:
    _, thread, out = hold(h, "unit/gated", "a")
    b = h.run_of("unit/gated", tag="b")
    assert h.handle(f"{b}:start") == "parked"
    assert h.engine.executor.cancel(b, h.engine.now())
    mark = h.mark()
    release("a", thread, out)
    assert h.sent_after(mark) == []
    assert h.redis.zcard("sl:slots-wait:f:slotunit-gated") == 0


def test_the_tick_wakes_waiters_of_a_dead_holder(h: Harness) -> None:
    now = h.engine.now()
    # A worker died while executing: its slot is there until its lease runs out.
    h.redis.zadd("sl:slots:f:slotunit-gated", {"dead:job": now + 1_000})
    b = h.run_of("unit/gated", tag="b")
    assert h.handle(f"{b}:start") == "parked"
    mark = h.mark()
    h.engine.tick(now + 500)
    assert h.sent_after(mark) == []
    h.engine.tick(now + 1_000)
    assert h.sent_after(mark) == [f"{b}:start"]
    assert h.handle(f"{b}:start") == "done"


def test_throttled_starts_are_deferred_with_a_countdown(h: Harness) -> None:
    runs = [h.run_of("unit/throttled") for _ in range(3)]
    mark = h.mark()
    # Limit 1 per 5 s with the SDK's burst 1: two start now, the third 5 s later.
    assert [h.handle(f"{run_id}:start") for run_id in runs] == ["done", "done", "parked"]
    third = f"{runs[2]}:start"
    assert h.status(runs[2]) == "Queued"
    assert h.redis.hget("sl:jobs:owner", third) == "deferred"
    [(name, job_id, options)] = [s for s in h.sender.sent[mark:] if s[0] != "stepline.event"]
    assert (name, job_id) == ("stepline.start", third)
    assert 4.0 < options["countdown"] <= 5.0
    # Delivered early (clock skew), it is deferred again, with the same start time.
    assert h.handle(third) == "parked"
    assert 3.0 < h.sender.sent[-1][2]["countdown"] <= 5.0


def test_functions_without_options_leave_no_slot_keys(h: Harness) -> None:
    run_id = h.run_of("unit/free")
    assert h.handle(f"{run_id}:start") == "done"
    assert h.status(run_id) == "Completed"
    assert h.redis.keys("sl:slots*") == [] and h.redis.keys("sl:throttle*") == []
