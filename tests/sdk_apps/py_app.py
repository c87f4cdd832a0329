"""A Flask app built with the official Inngest Python SDK, as a user would write it.

Nothing here knows about Stepline: point it at Stepline the way one points an app at the
Inngest dev server (`INNGEST_DEV=http://127.0.0.1:8288`, or `INNGEST_BASE_URL` with
`INNGEST_SIGNING_KEY` for production mode) and run

    python tests/sdk_apps/py_app.py --port 8000

It serves `/api/inngest` with functions covering every step shape the HTTP driver handles.
"""

from __future__ import annotations

import argparse
import datetime
import os
import time
import typing

import flask
import inngest
import inngest.flask
from inngest.experimental.ai import openai

# Tests run a second copy under another id (PYAPP_ID), serving fewer functions (PYAPP_FUNCTIONS).
client = inngest.Inngest(app_id=os.environ.get("PYAPP_ID") or "pyapp")


@client.create_function(fn_id="three", retries=2, trigger=inngest.TriggerEvent(event="pyapp/three"))
def three(ctx: inngest.ContextSync) -> dict[str, int]:
    a = ctx.step.run("a", lambda: 1)
    b = ctx.step.run("b", lambda: a + 1)
    c = ctx.step.run("c", lambda: b + 1)
    return {"sum": a + b + c}


@client.create_function(fn_id="child", trigger=inngest.TriggerEvent(event="pyapp/child"))
def child(ctx: inngest.ContextSync) -> dict[str, int]:
    n = int(ctx.event.data.get("n", 0))  # type: ignore[arg-type]
    return {"double": ctx.step.run("double", lambda: n * 2)}


@client.create_function(fn_id="ops", trigger=inngest.TriggerEvent(event="pyapp/ops"))
def ops(ctx: inngest.ContextSync) -> dict[str, typing.Any]:
    ctx.step.sleep("nap", datetime.timedelta(seconds=2))
    approval = ctx.step.wait_for_event(
        "wait",
        event="pyapp/approve",
        if_exp="async.data.id == event.data.id",
        timeout=datetime.timedelta(minutes=1),
    )
    invoked = ctx.step.invoke("call", function=child, data={"n": 21})
    sent = ctx.step.send_event("send", inngest.Event(name="pyapp/sent", data={"k": 1}))
    return {
        "approved": approval is not None,
        "invoked": invoked,
        "sent": sent,
    }


@client.create_function(fn_id="par", trigger=inngest.TriggerEvent(event="pyapp/par"))
def par(ctx: inngest.ContextSync) -> tuple[typing.Any, ...]:
    return ctx.group.parallel(
        (
            lambda: ctx.step.run("p1", lambda: "x"),
            lambda: ctx.step.run("p2", lambda: "y"),
        )
    )


def _boom() -> None:
    raise ValueError("kaput")


def _fail_handler(ctx: inngest.ContextSync) -> dict[str, str]:
    return {"saw": ctx.event.name}


@client.create_function(
    fn_id="fail",
    retries=1,
    on_failure=_fail_handler,
    trigger=inngest.TriggerEvent(event="pyapp/fail"),
)
def fail(ctx: inngest.ContextSync) -> None:
    ctx.step.run("boom", _boom)


@client.create_function(fn_id="nr", trigger=inngest.TriggerEvent(event="pyapp/nr"))
def nr(ctx: inngest.ContextSync) -> None:
    raise inngest.NonRetriableError("stop now")


@client.create_function(fn_id="ra", trigger=inngest.TriggerEvent(event="pyapp/ra"))
def ra(ctx: inngest.ContextSync) -> None:
    raise inngest.RetryAfterError("later", datetime.timedelta(seconds=30))


@client.create_function(
    fn_id="flow",
    concurrency=[inngest.Concurrency(limit=1, key="event.data.k")],
    debounce=inngest.Debounce(period=datetime.timedelta(seconds=2)),
    rate_limit=inngest.RateLimit(limit=1, period=datetime.timedelta(seconds=10)),
    idempotency="event.data.key",
    cancel=[inngest.Cancel(event="pyapp/cancel", if_exp="event.data.id == async.data.id")],
    trigger=[
        inngest.TriggerEvent(event="pyapp/flow", expression="event.data.x > 1"),
        inngest.TriggerCron(cron="*/5 * * * *"),
    ],
)
def flow(ctx: inngest.ContextSync) -> str:
    return "ok"


# --- used by the end-to-end tests (tests/integration/test_sdk_python.py) ---


@client.create_function(fn_id="flaky", trigger=inngest.TriggerEvent(event="pyapp/flaky"))
def flaky(ctx: inngest.ContextSync) -> dict[str, int]:
    """A step that fails on its first attempt and succeeds on the next."""
    attempt = ctx.attempt

    def once() -> int:
        if attempt == 0:
            raise ValueError("first attempt fails")
        return attempt

    return {"succeeded_on": ctx.step.run("once", once)}


@client.create_function(
    fn_id="call-inproc", trigger=inngest.TriggerEvent(event="pyapp/call-inproc")
)
def call_inproc(ctx: inngest.ContextSync) -> dict[str, typing.Any]:
    """Invokes an in-process Stepline function (`e2e-child`, tests/integration/functions.py)."""
    x = int(ctx.event.data.get("x", 0))  # type: ignore[arg-type]
    return {
        "child": ctx.step.invoke_by_id("call", app_id="e2e", function_id="child", data={"x": x})
    }


@client.create_function(fn_id="sender", trigger=inngest.TriggerEvent(event="pyapp/sender"))
def sender(ctx: inngest.ContextSync) -> dict[str, typing.Any]:
    """`step.send_event` to an in-process function and to one of this app's own."""
    tag = str(ctx.event.data.get("tag", ""))
    ids = ctx.step.send_event(
        "send",
        [
            inngest.Event(name="e2e/steps", data={"n": 2}),
            inngest.Event(name="pyapp/child", data={"n": 4, "tag": tag}),
        ],
    )
    return {"ids": ids}


@client.create_function(
    fn_id="napper", retries=10, trigger=inngest.TriggerEvent(event="pyapp/napper")
)
def napper(ctx: inngest.ContextSync) -> dict[str, typing.Any]:
    """Two steps around a sleep: long enough to stop the app in between."""
    before = ctx.step.run("before", lambda: "b")
    ctx.step.sleep("nap", datetime.timedelta(seconds=float(ctx.event.data.get("s", 1))))  # type: ignore[arg-type]
    return {"before": before, "after": ctx.step.run("after", lambda: "a")}


@client.create_function(fn_id="slowpoke", trigger=inngest.TriggerEvent(event="pyapp/slowpoke"))
def slowpoke(ctx: inngest.ContextSync) -> dict[str, int]:
    """A step whose first attempt outlasts the engine's HTTP timeout."""
    attempt = ctx.attempt

    def crawl() -> int:
        if attempt == 0:
            time.sleep(float(ctx.event.data.get("s", 3)))  # type: ignore[arg-type]
        return attempt

    return {"done_on": ctx.step.run("crawl", crawl)}


@client.create_function(fn_id="fanout", trigger=inngest.TriggerEvent(event="pyapp/fanout"))
def fanout(ctx: inngest.ContextSync) -> dict[str, typing.Any]:
    """A parallel group of three steps, then a step using all their results."""

    def branch(i: int) -> typing.Callable[[], int]:
        return lambda: ctx.step.run(f"branch-{i}", lambda: i * 10)

    results = list(ctx.group.parallel(tuple(map(branch, range(3)))))
    total = ctx.step.run("sum", lambda: sum(results))
    return {"results": results, "total": total}


@client.create_function(fn_id="waiter", trigger=inngest.TriggerEvent(event="pyapp/waiter"))
def waiter(ctx: inngest.ContextSync) -> dict[str, typing.Any]:
    """A wait that times out (nothing sends pyapp/never), then a step."""
    got = ctx.step.wait_for_event(
        "wait", event="pyapp/never", timeout=datetime.timedelta(seconds=1)
    )
    return {"got": got, "after": ctx.step.run("after", lambda: "done")}


@client.create_function(fn_id="bigint", trigger=inngest.TriggerEvent(event="pyapp/bigint"))
def bigint(ctx: inngest.ContextSync) -> dict[str, typing.Any]:
    """Integers beyond 2**53 (snowflake ids) must come back from memos exactly."""
    got = ctx.step.run("id", lambda: 2**60 + 1)
    echoed = ctx.step.run("echo", lambda: got)
    return {"id": echoed, "exact": echoed == 2**60 + 1, "event": ctx.event.data.get("big")}


@client.create_function(fn_id="bulky", trigger=inngest.TriggerEvent(event="pyapp/bulky"))
def bulky(ctx: inngest.ContextSync) -> dict[str, typing.Any]:
    """State over 4 MiB: later calls carry no steps (`use_api`); the SDK fetches them."""
    sizes = [ctx.step.run(f"blob-{i}", lambda i=i: str(i) * 1_500_000) for i in range(3)]
    return {"lengths": [len(blob) for blob in sizes], "last": ctx.step.run("tail", lambda: "ok")}


@client.create_function(fn_id="nrstep", trigger=inngest.TriggerEvent(event="pyapp/nrstep"))
def nrstep(ctx: inngest.ContextSync) -> None:
    """NonRetriableError raised inside a step."""

    def refuse() -> None:
        raise inngest.NonRetriableError("step says no")

    ctx.step.run("refuse", refuse)


@client.create_function(fn_id="ai", trigger=inngest.TriggerEvent(event="pyapp/ai"))
def ai(ctx: inngest.ContextSync) -> object:
    """step.ai.infer: the engine makes the request (to `event.data.base`, a local stand-in)."""
    model = openai.Adapter(auth_key="sk-test", base_url=ctx.event.data["base"], model="gpt-test")
    body = {"messages": [{"role": "user", "content": "hi"}]}
    answer = ctx.step.ai.infer("ask", adapter=model, body=body)
    return {"content": answer["choices"][0]["message"]["content"]}


FUNCTIONS: list[inngest.Function[typing.Any]] = [
    three,
    child,
    ops,
    par,
    fail,
    nr,
    ra,
    flow,
    flaky,
    call_inproc,
    sender,
    napper,
    slowpoke,
    fanout,
    waiter,
    bigint,
    bulky,
    nrstep,
    ai,
]


def create_app() -> flask.Flask:
    app = flask.Flask(__name__)
    only = [name for name in os.environ.get("PYAPP_FUNCTIONS", "").split(",") if name]
    served = [fn for fn in FUNCTIONS if not only or fn.local_id in only]
    inngest.flask.serve(app, client, served)

    @app.post("/send")
    def send() -> typing.Any:
        """App code sending an event with `client.send_sync`, as a web handler would."""
        body = flask.request.get_json(force=True)
        ids = client.send_sync(inngest.Event(name=body["name"], data=body.get("data") or {}))
        return {"ids": ids}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    create_app().run(host="127.0.0.1", port=args.port, threaded=True)


if __name__ == "__main__":
    main()
