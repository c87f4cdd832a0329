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


@client.create_function(
    fn_id="order", trigger=inngest.TriggerEvent(event="bench/order.created"), retries=0
)
def order(ctx: inngest.ContextSync) -> str:
    """bench.events' listener: its events are ingested (and queued), never run there."""
    return str(ctx.event.data.get("order_id"))
