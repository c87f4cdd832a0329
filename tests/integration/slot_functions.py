"""In-process functions for the flow-control end-to-end tests (app id `slots`).

Each step records what it did in Redis from user code (plain redis-py, as user code would):
`slots:spans:<tag>` gets `[label, start, end]` (seconds since the epoch) for every step body,
so tests compute overlaps and start orders across worker processes.
"""

from __future__ import annotations

import datetime
import json
import os
import time

import redis

import app.sdk as inngest

client = inngest.Inngest(app_id="slots")
_redis: redis.Redis | None = None


def _client() -> redis.Redis:
    global _redis
    if _redis is None:
        url = os.environ.get("REDIS_URL") or os.environ.get("STEPLINE_TEST_REDIS_URL")
        _redis = redis.Redis.from_url(url or "redis://127.0.0.1:6379/15")
    return _redis


def _span(tag: str, label: str, seconds: float, gate: str = "") -> str:
    start = time.time()
    if gate:  # hold the step (and its slot) until the test sets the gate key
        deadline = time.monotonic() + 30
        while not _client().exists(f"slots:gate:{gate}") and time.monotonic() < deadline:
            time.sleep(0.02)
    time.sleep(seconds)
    _client().rpush(f"slots:spans:{tag}", json.dumps([label, start, time.time()]))
    return label


def spans(r: redis.Redis, tag: str) -> list[tuple[str, float, float]]:
    out = []
    for item in r.lrange(f"slots:spans:{tag}", 0, -1):
        label, start, end = json.loads(item)
        out.append((str(label), float(start), float(end)))
    return out


@client.create_function(
    fn_id="limited",
    trigger=inngest.TriggerEvent(event="slots/limited"),
    concurrency=[inngest.Concurrency(limit=2)],
)
def limited(ctx: inngest.ContextSync) -> str:
    tag, label = "limited", str(ctx.event.data["label"])
    delay = float(ctx.event.data.get("delay", 0.3))
    ctx.step.run("one", lambda: _span(tag, label, delay))
    ctx.step.run("two", lambda: _span(tag, label, delay))
    return label


@client.create_function(
    fn_id="keyed",
    trigger=inngest.TriggerEvent(event="slots/keyed"),
    concurrency=[inngest.Concurrency(limit=1, key="event.data.user")],
)
def keyed(ctx: inngest.ContextSync) -> str:
    user = str(ctx.event.data["user"])
    delay = float(ctx.event.data.get("delay", 1.0))
    return ctx.step.run("work", lambda: _span("keyed", user, delay))


@client.create_function(
    fn_id="napper",
    trigger=inngest.TriggerEvent(event="slots/nap"),
    concurrency=[inngest.Concurrency(limit=1)],
)
def napper(ctx: inngest.ContextSync) -> str:
    label = str(ctx.event.data["label"])
    if ctx.event.data.get("nap"):
        ctx.step.run("before", lambda: _span("nap", f"{label}:before", 0))
        ctx.step.sleep("nap", datetime.timedelta(seconds=float(ctx.event.data["nap"])))
        ctx.step.run("after", lambda: _span("nap", f"{label}:after", 0))
    else:
        ctx.step.run("work", lambda: _span("nap", label, float(ctx.event.data["delay"])))
    return label


@client.create_function(
    fn_id="throttled",
    trigger=inngest.TriggerEvent(event="slots/throttled"),
    throttle=inngest.Throttle(limit=2, period=datetime.timedelta(seconds=2)),
)
def throttled(ctx: inngest.ContextSync) -> str:
    label = str(ctx.event.data["label"])
    return ctx.step.run("work", lambda: _span("throttled", label, 0))


@client.create_function(
    fn_id="prioritized",
    trigger=inngest.TriggerEvent(event="slots/prio"),
    concurrency=[inngest.Concurrency(limit=1)],
    priority=inngest.Priority(run="event.data.prio"),
)
def prioritized(ctx: inngest.ContextSync) -> str:
    label = str(ctx.event.data["label"])
    gate = str(ctx.event.data.get("gate", ""))
    return ctx.step.run("work", lambda: _span("prio", label, 0.05, gate))
