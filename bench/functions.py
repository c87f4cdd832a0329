"""In-process functions for the benchmarks: steps that do nothing, so what is measured is
Stepline's own cost per step."""

from __future__ import annotations

import datetime
import os

import app.sdk as inngest

client = inngest.Inngest(app_id="bench")


@client.create_function(fn_id="steps", trigger=inngest.TriggerEvent(event="bench/steps"), retries=0)
def steps(ctx: inngest.ContextSync) -> int:
    n = int(ctx.event.data["n"])
    total = 0
    for i in range(n):
        total = ctx.step.run(f"s{i}", lambda i=i, t=total: t + i)
    return total


@client.create_function(
    fn_id="steps-limited",
    trigger=inngest.TriggerEvent(event="bench/steps.limited"),
    retries=0,
    concurrency=[
        inngest.Concurrency(
            limit=int(os.environ.get("BENCH_CONCURRENCY", "10")), key="event.data.tenant"
        )
    ],
)
def steps_limited(ctx: inngest.ContextSync) -> int:
    """`steps` under a concurrency limit per tenant (`bench.runs --concurrency N`)."""
    n = int(ctx.event.data["n"])
    total = 0
    for i in range(n):
        total = ctx.step.run(f"s{i}", lambda i=i, t=total: t + i)
    return total


@client.create_function(fn_id="nap", trigger=inngest.TriggerEvent(event="bench/nap"), retries=0)
def nap(ctx: inngest.ContextSync) -> None:
    """Sleeps `ms`, or until `until` (ms since the epoch) when the event carries it, then runs
    one step (bench.timers, bench.sleepers)."""
    _nap(ctx)


def _nap(ctx: inngest.ContextSync) -> None:
    until = ctx.event.data.get("until")
    if isinstance(until, int):
        when = datetime.datetime.fromtimestamp(until / 1000, datetime.UTC)
        ctx.step.sleep_until("nap", when)
    else:
        ctx.step.sleep("nap", datetime.timedelta(milliseconds=int(ctx.event.data["ms"])))
    ctx.step.run("woke", lambda: None)


NAP_LIMIT = int(os.environ.get("BENCH_CONCURRENCY", "10"))
"""`bench/nap.limited`'s concurrency limit per tenant (`bench.wake_cost --concurrency N`)."""


@client.create_function(
    fn_id="nap-limited",
    trigger=inngest.TriggerEvent(event="bench/nap.limited"),
    retries=0,
    concurrency=[inngest.Concurrency(limit=NAP_LIMIT, key="event.data.tenant")],
)
def nap_limited(ctx: inngest.ContextSync) -> None:
    """`nap` under a concurrency limit keyed by the event's tenant (bench.wake_cost
    --concurrency): each start takes a slot (and gives it back when the run sleeps)."""
    _nap(ctx)


def _until(ctx: inngest.ContextSync) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(int(ctx.event.data["until"]) / 1000, datetime.UTC)


@client.create_function(
    fn_id="nap-steps", trigger=inngest.TriggerEvent(event="bench/nap.steps"), retries=0
)
def nap_steps(ctx: inngest.ContextSync) -> None:
    """`n` in-process steps, then a sleep until `until`, then one step (bench.wake_cost
    --shape steps: the steps are saved with the sleep's suspend)."""
    for i in range(int(ctx.event.data.get("n", 3))):
        ctx.step.run(f"s{i}", lambda i=i: i)
    ctx.step.sleep_until("nap", _until(ctx))
    ctx.step.run("woke", lambda: None)


@client.create_function(fn_id="echo", trigger=inngest.TriggerEvent(event="bench/echo"), retries=0)
def echo(ctx: inngest.ContextSync) -> object:
    """What `nap-invoke` invokes: returns its event's data."""
    return ctx.event.data


@client.create_function(
    fn_id="nap-invoke", trigger=inngest.TriggerEvent(event="bench/nap.invoke"), retries=0
)
def nap_invoke(ctx: inngest.ContextSync) -> None:
    """Invokes `echo`, then sleeps until `until` (bench.wake_cost --shape invoke)."""
    ctx.step.invoke("call", function=echo, data={"n": 1}, timeout=datetime.timedelta(hours=2))
    ctx.step.sleep_until("nap", _until(ctx))
    ctx.step.run("woke", lambda: None)


@client.create_function(
    fn_id="nap-lookback", trigger=inngest.TriggerEvent(event="bench/nap.lookback"), retries=0
)
def nap_lookback(ctx: inngest.ContextSync) -> None:
    """Waits, with a lookback, for a `bench/nap.paid` of its `k` (none is sent) until `until`
    (bench.wake_cost --shape lookback)."""
    left = int(ctx.event.data["until"]) - int(ctx.event.data["sent"])
    ctx.step.wait_for_event(
        "paid",
        event="bench/nap.paid",
        if_exp="async.data.k == event.data.k",
        timeout=datetime.timedelta(milliseconds=max(left, 1)),
        lookback=datetime.timedelta(minutes=5),
    )
    ctx.step.run("woke", lambda: None)


@client.create_function(
    fn_id="order", trigger=inngest.TriggerEvent(event="bench/order.created"), retries=0
)
def order(ctx: inngest.ContextSync) -> str:
    """bench.events' listener: its events are ingested (and queued), never run there."""
    return str(ctx.event.data.get("order_id"))
