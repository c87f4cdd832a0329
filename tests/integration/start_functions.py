"""In-process functions of the start-path tests (app id `starts`): no side effects outside
their own steps, so a test may run them in its own process."""

from __future__ import annotations

import datetime

import app.sdk as inngest

client = inngest.Inngest(app_id="starts")


@client.create_function(fn_id="plain", trigger=inngest.TriggerEvent(event="starts/go"))
def plain(ctx: inngest.ContextSync) -> int:
    one = ctx.step.run("one", lambda: 1)
    two = ctx.step.run("two", lambda: one + 1)
    return two


@client.create_function(
    fn_id="limited",
    trigger=inngest.TriggerEvent(event="starts/limited"),
    concurrency=[inngest.Concurrency(limit=1)],
)
def limited(ctx: inngest.ContextSync) -> int:
    return int(ctx.step.run("one", lambda: 1))


@client.create_function(
    fn_id="keyed",
    trigger=inngest.TriggerEvent(event="starts/keyed"),
    concurrency=[inngest.Concurrency(limit=1, key="event.data.user")],
    priority=inngest.Priority(run="event.data.boost"),
)
def keyed(ctx: inngest.ContextSync) -> int:
    return int(ctx.step.run("one", lambda: 1))


@client.create_function(
    fn_id="throttled",
    trigger=inngest.TriggerEvent(event="starts/throttled"),
    throttle=inngest.Throttle(limit=1, period=datetime.timedelta(seconds=60), burst=1),
)
def throttled(ctx: inngest.ContextSync) -> int:
    return int(ctx.step.run("one", lambda: 1))
