"""In-process functions with admission flow control (rate limit, debounce, batching,
idempotency, cancellation, timeouts, singleton), run by the end-to-end tests of
`test_flow_admission.py` inside real `celery worker` processes.

Side effects go to Redis keys under `flow:` so tests can count how often a body really ran.
"""

from __future__ import annotations

import datetime
import os
import time

import redis

import app.sdk as inngest

client = inngest.Inngest(app_id="flow")
_redis = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/4"))

SECOND = datetime.timedelta(seconds=1)


def _count(name: str) -> int:
    return int(_redis.incr(f"flow:count:{name}"))


@client.create_function(
    fn_id="rate-limited",
    trigger=inngest.TriggerEvent(event="flow/rl"),
    rate_limit=inngest.RateLimit(limit=10, period=datetime.timedelta(minutes=1)),
)
def rate_limited(ctx: inngest.ContextSync) -> object:
    return ctx.event.data


@client.create_function(
    fn_id="debounced",
    trigger=inngest.TriggerEvent(event="flow/deb"),
    debounce=inngest.Debounce(period=2 * SECOND, key="event.data.k"),
)
def debounced(ctx: inngest.ContextSync) -> object:
    return {"i": ctx.event.data.get("i"), "events": len(ctx.events)}


@client.create_function(
    fn_id="batched",
    trigger=inngest.TriggerEvent(event="flow/batch"),
    batch_events=inngest.Batch(max_size=3, timeout=3 * SECOND),
)
def batched(ctx: inngest.ContextSync) -> object:
    return [event.data.get("i") for event in ctx.events]


@client.create_function(
    fn_id="idempotent",
    trigger=inngest.TriggerEvent(event="flow/idem"),
    idempotency="event.data.order_id",
)
def idempotent(ctx: inngest.ContextSync) -> object:
    return ctx.event.data.get("order_id")


@client.create_function(
    fn_id="cancellable",
    trigger=inngest.TriggerEvent(event="flow/cancellable"),
    cancel=[inngest.Cancel(event="flow/cancel", if_exp="async.data.id == event.data.id")],
)
def cancellable(ctx: inngest.ContextSync) -> object:
    key = str(ctx.event.data["id"])
    ctx.step.run("before", lambda: _count(f"{key}:before"))
    mode = ctx.event.data.get("mode")
    if mode == "sleep":
        ctx.step.sleep("nap", 30 * SECOND)
    elif mode == "wait":
        ctx.step.wait_for_event("never", event="flow/never", timeout=60 * SECOND)
    else:
        ctx.step.run("slow", lambda: _slow(key))
    ctx.step.run("after", lambda: _count(f"{key}:after"))
    return "not cancelled"


def _slow(key: str) -> int:
    _count(f"{key}:slow-started")
    time.sleep(3)
    return 1


@client.create_function(
    fn_id="finish-timeout",
    trigger=inngest.TriggerEvent(event="flow/finish-timeout"),
    timeouts=inngest.Timeouts(finish=2 * SECOND),
)
def finish_timeout(ctx: inngest.ContextSync) -> object:
    ctx.step.run("before", lambda: _count("finish-timeout:before"))
    ctx.step.sleep("long-nap", 30 * SECOND)
    ctx.step.run("after", lambda: _count("finish-timeout:after"))
    return "finished"


@client.create_function(
    fn_id="start-timeout",
    trigger=inngest.TriggerEvent(event="flow/start-timeout"),
    timeouts=inngest.Timeouts(start=SECOND),
)
def start_timeout(ctx: inngest.ContextSync) -> object:
    return _count("start-timeout:body")


@client.create_function(
    fn_id="singleton-skip",
    trigger=inngest.TriggerEvent(event="flow/single-skip"),
    singleton=inngest.Singleton(mode="skip"),
)
def singleton_skip(ctx: inngest.ContextSync) -> object:
    ctx.step.sleep("hold", 2 * SECOND)
    return ctx.event.data.get("n")


@client.create_function(
    fn_id="singleton-cancel",
    trigger=inngest.TriggerEvent(event="flow/single-cancel"),
    singleton=inngest.Singleton(mode="cancel", key="event.data.k"),
)
def singleton_cancel(ctx: inngest.ContextSync) -> object:
    ctx.step.sleep("hold", 3 * SECOND)
    return ctx.event.data.get("n")


@client.create_function(
    fn_id="retry-limited",
    trigger=inngest.TriggerEvent(event="flow/retry"),
    retries=2,
    rate_limit=inngest.RateLimit(limit=1, period=datetime.timedelta(minutes=1)),
    idempotency="event.data.key",
)
def retry_limited(ctx: inngest.ContextSync) -> object:
    def attempt() -> str:
        if _count(f"retry:{ctx.run_id}") == 1:
            raise ValueError("first attempt fails")
        return "ok"

    return ctx.step.run("attempt", attempt)
