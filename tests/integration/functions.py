"""In-process functions the end-to-end tests run inside real `celery worker` processes.

Side effects go to Redis keys under `e2e:` (through plain redis-py, as user code would), so
tests can count how often each step body really ran.
"""

from __future__ import annotations

import datetime
import os
import time

import redis

import app.sdk as inngest

client = inngest.Inngest(app_id="e2e")
_redis = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"))


def _count(name: str) -> int:
    return int(_redis.incr(f"e2e:count:{name}"))


@client.create_function(fn_id="steps", trigger=inngest.TriggerEvent(event="e2e/steps"))
def steps(ctx: inngest.ContextSync) -> dict[str, object]:
    n = int(ctx.event.data.get("n", 3))
    delay = float(ctx.event.data.get("delay", 0))
    total = 0
    for i in range(n):
        total = ctx.step.run(f"add-{i}", lambda i=i, t=total: _add(ctx.run_id, i, t, delay))
    return {"total": total}


def _add(run_id: str, i: int, total: int, delay: float) -> int:
    if delay:
        time.sleep(delay)
    _redis.incr(f"e2e:exec:{run_id}:{i}")
    return total + i


@client.create_function(fn_id="sleeper", trigger=inngest.TriggerEvent(event="e2e/sleep"))
def sleeper(ctx: inngest.ContextSync) -> str:
    ctx.step.run("before", lambda: _count("sleep-before"))
    ctx.step.sleep("nap", datetime.timedelta(seconds=float(ctx.event.data.get("seconds", 1))))
    ctx.step.run("after", lambda: _count("sleep-after"))
    return "rested"


@client.create_function(fn_id="waiter", trigger=inngest.TriggerEvent(event="e2e/order.created"))
def waiter(ctx: inngest.ContextSync) -> object:
    paid = ctx.step.wait_for_event(
        "wait-paid",
        event="e2e/order.paid",
        if_exp="event.data.order_id == async.data.order_id",
        timeout=datetime.timedelta(seconds=float(ctx.event.data.get("timeout", 30))),
    )
    return {"paid": paid is not None, "amount": paid.data.get("amount") if paid else None}


@client.create_function(fn_id="child", trigger=inngest.TriggerEvent(event="e2e/child"))
def child(ctx: inngest.ContextSync) -> object:
    if ctx.event.data.get("fail"):
        raise inngest.NonRetriableError("child refused")
    return ctx.step.run("double", lambda: int(ctx.event.data["x"]) * 2)


@client.create_function(fn_id="parent", trigger=inngest.TriggerEvent(event="e2e/parent"))
def parent(ctx: inngest.ContextSync) -> object:
    try:
        out = ctx.step.invoke(
            "call-child",
            function=child,
            data={"x": ctx.event.data.get("x", 21), "fail": ctx.event.data.get("fail", False)},
        )
    except inngest.StepError as err:
        return {"child_error": str(err)}
    return {"child": out}


def _on_flaky_failure(ctx: inngest.ContextSync) -> None:
    _redis.set(f"e2e:failure-handler:{ctx.event.data['run_id']}", "1")


@client.create_function(
    fn_id="flaky",
    trigger=inngest.TriggerEvent(event="e2e/flaky"),
    retries=2,
    on_failure=_on_flaky_failure,
)
def flaky(ctx: inngest.ContextSync) -> object:
    fail_times = int(ctx.event.data.get("fail_times", 1))

    def attempt() -> str:
        if _count(f"flaky:{ctx.run_id}") <= fail_times:
            raise ValueError("not yet")
        return "ok"

    return ctx.step.run("attempt", attempt)


@client.create_function(fn_id="fatal", trigger=inngest.TriggerEvent(event="e2e/fatal"))
def fatal(ctx: inngest.ContextSync) -> object:
    def boom() -> None:
        _count(f"fatal:{ctx.run_id}")
        raise inngest.NonRetriableError("no point retrying")

    return ctx.step.run("boom", boom)


@client.create_function(fn_id="fanout", trigger=inngest.TriggerEvent(event="e2e/fanout"))
def fanout(ctx: inngest.ContextSync) -> object:
    results = ctx.group.parallel(
        tuple((lambda i=i: ctx.step.run(f"branch-{i}", lambda: i * 10)) for i in range(3))
    )
    total = ctx.step.run("sum", lambda: sum(results))
    return {"results": list(results), "total": total}


@client.create_function(fn_id="sender", trigger=inngest.TriggerEvent(event="e2e/send"))
def sender(ctx: inngest.ContextSync) -> object:
    ids = ctx.step.send_event("fire", inngest.Event(name="e2e/steps", data={"n": 2}))
    return {"sent": len(ids)}


@client.create_function(
    fn_id="matcher",
    trigger=inngest.TriggerEvent(event="e2e/match.*", expression="event.data.vip == true"),
)
def matcher(ctx: inngest.ContextSync) -> object:
    return ctx.event.name


@client.create_function(fn_id="signal", trigger=inngest.TriggerEvent(event="e2e/signal"))
def signal_waiter(ctx: inngest.ContextSync) -> object:
    """Waits for the signal named in the event (`on_conflict` from the event too)."""
    return ctx.step.wait_for_signal(
        "wait",
        signal=ctx.event.data["signal"],
        timeout=datetime.timedelta(seconds=float(ctx.event.data.get("timeout", 60))),
        on_conflict=ctx.event.data.get("conflict", "fail"),
    )


@client.create_function(
    fn_id="signal-sender", trigger=inngest.TriggerEvent(event="e2e/signal-sender")
)
def signal_sender(ctx: inngest.ContextSync) -> object:
    """`client.send_signal_sync` from a step: the worker's engine resumes the waiting run."""
    name, data = ctx.event.data["signal"], ctx.event.data.get("data")
    return ctx.step.run("send", lambda: client.send_signal_sync(name, data))


@client.create_function(fn_id="ai", trigger=inngest.TriggerEvent(event="e2e/ai"))
def ai_caller(ctx: inngest.ContextSync) -> object:
    """`ctx.step.ai.infer` with the official SDK's OpenAI adapter; the engine makes the call."""
    from inngest.experimental.ai import openai

    model = openai.Adapter(auth_key="sk-e2e", base_url=ctx.event.data["base"], model="gpt-e2e")
    answer = ctx.step.ai.infer("ask", adapter=model, body={"messages": []})
    return ctx.step.run("content", lambda: answer["choices"][0]["message"]["content"])


@client.create_function(fn_id="lookback", trigger=inngest.TriggerEvent(event="e2e/lookback"))
def lookback_waiter(ctx: inngest.ContextSync) -> object:
    """Waits for `e2e/lookback-target` with the same `k`, looking back `lookback` seconds."""
    back = ctx.event.data.get("lookback")
    got = ctx.step.wait_for_event(
        "wait",
        event="e2e/lookback-target",
        if_exp="async.data.k == event.data.k",
        timeout=datetime.timedelta(seconds=float(ctx.event.data.get("timeout", 2))),
        lookback=None if back is None else datetime.timedelta(seconds=float(back)),
    )
    return None if got is None else got.data
