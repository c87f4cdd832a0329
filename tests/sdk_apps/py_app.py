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
import typing

import flask
import inngest
import inngest.flask

client = inngest.Inngest(app_id="pyapp")


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


FUNCTIONS: list[inngest.Function[typing.Any]] = [three, child, ops, par, fail, nr, ra, flow]


def create_app() -> flask.Flask:
    app = flask.Flask(__name__)
    inngest.flask.serve(app, client, FUNCTIONS)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    create_app().run(host="127.0.0.1", port=args.port, threaded=True)


if __name__ == "__main__":
    main()
