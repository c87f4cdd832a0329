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


@client.create_function(fn_id="nap", trigger=inngest.TriggerEvent(event="starts/nap"))
def nap(ctx: inngest.ContextSync) -> int:
    """Sleeps an hour, then runs one step (tests/integration/test_suspend_calls.py)."""
    ctx.step.sleep("nap", datetime.timedelta(hours=1))
    return int(ctx.step.run("woke", lambda: 3))


@client.create_function(
    fn_id="nap-limited",
    trigger=inngest.TriggerEvent(event="starts/nap-limited"),
    concurrency=[inngest.Concurrency(limit=1)],
)
def nap_limited(ctx: inngest.ContextSync) -> int:
    """`nap`, one run at a time (tests/integration/test_suspend_calls.py)."""
    ctx.step.sleep("nap", datetime.timedelta(hours=1))
    return int(ctx.step.run("woke", lambda: 3))


@client.create_function(fn_id="fork", trigger=inngest.TriggerEvent(event="starts/fork"))
def fork(ctx: inngest.ContextSync) -> int:
    """Two steps in parallel (planned together, one job each), then their sum."""
    left, right = ctx.group.parallel(
        (lambda: ctx.step.run("left", lambda: 1), lambda: ctx.step.run("right", lambda: 2))
    )
    return int(ctx.step.run("sum", lambda: left + right))


@client.create_function(
    fn_id="again", trigger=inngest.TriggerEvent(event="starts/again"), retries=1
)
def again(ctx: inngest.ContextSync) -> int:
    """A step that fails its first attempt (retried with backoff), then succeeds."""

    def attempt() -> int:
        if ctx.attempt == 0:
            raise ValueError("not yet")
        return 4

    return int(ctx.step.run("flaky", attempt))


@client.create_function(fn_id="wait", trigger=inngest.TriggerEvent(event="starts/wait"))
def wait(ctx: inngest.ContextSync) -> object:
    """Waits up to an hour for `starts/paid`, then returns its data (None on timeout)."""
    paid = ctx.step.wait_for_event("paid", event="starts/paid", timeout=datetime.timedelta(hours=1))
    return None if paid is None else paid.data


@client.create_function(fn_id="steps-nap", trigger=inngest.TriggerEvent(event="starts/steps-nap"))
def steps_nap(ctx: inngest.ContextSync) -> int:
    """Three in-process steps, then an hour's sleep (saved with its suspend), then their sum."""
    total = 0
    for i in range(3):
        total = int(ctx.step.run(f"s{i}", lambda i=i, t=total: t + i))
    ctx.step.sleep("nap", datetime.timedelta(hours=1))
    return total


@client.create_function(fn_id="child", trigger=inngest.TriggerEvent(event="starts/child"))
def child(ctx: inngest.ContextSync) -> int:
    """What `invoker` invokes: twice its event's `n`."""
    return 2 * int(ctx.event.data["n"])


@client.create_function(fn_id="invoker", trigger=inngest.TriggerEvent(event="starts/invoker"))
def invoker(ctx: inngest.ContextSync) -> int:
    """A step, then an invoke of `child` (the step saved, the pause, the invoke event and its
    job stored, in the invoke's suspend), then the child's output plus one."""
    one = int(ctx.step.run("one", lambda: 1))
    got = ctx.step.invoke("call", function=child, data={"n": 20})
    return int(got) + one


@client.create_function(fn_id="look", trigger=inngest.TriggerEvent(event="starts/look"))
def look(ctx: inngest.ContextSync) -> object:
    """Waits up to an hour for `starts/paid`, accepting one sent up to 5 minutes before."""
    paid = ctx.step.wait_for_event(
        "paid",
        event="starts/paid",
        timeout=datetime.timedelta(hours=1),
        lookback=datetime.timedelta(minutes=5),
    )
    return None if paid is None else paid.data


@client.create_function(fn_id="both", trigger=inngest.TriggerEvent(event="starts/both"))
def both(ctx: inngest.ContextSync) -> object:
    """A wait for `starts/paid` and an invoke of `child`, in parallel: both pauses, their
    timeout jobs and the invoke's event saved by one suspend."""
    paid, got = ctx.group.parallel(
        (
            lambda: ctx.step.wait_for_event(
                "paid", event="starts/paid", timeout=datetime.timedelta(hours=1)
            ),
            lambda: ctx.step.invoke("call", function=child, data={"n": 4}),
        )
    )
    return [None if paid is None else paid.data, got]
