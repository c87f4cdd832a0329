"""A small example app (app id "example"), written exactly as for the official SDK.

Send `app/hello` with `{"name": "Ada"}` and watch three steps run; `app/approval.requested`
sleeps then waits for `app/approval.granted`; `app/sum` invokes `add`; `app/flaky` fails
once, succeeds on retry, and fails for good (calling its failure handler) with `"fail": true`.
"""

from __future__ import annotations

import datetime
from typing import Any

import app.sdk as inngest

client = inngest.Inngest(app_id="example")


@client.create_function(fn_id="hello", trigger=inngest.TriggerEvent(event="app/hello"))
def hello(ctx: inngest.ContextSync) -> str:
    name = ctx.step.run("get-name", lambda: str(ctx.event.data.get("name", "world")))
    greeting = ctx.step.run("greet", lambda: f"Hello, {name}!")
    ctx.logger.info("greeting ready: %s", greeting)
    return ctx.step.run("shout", lambda: greeting.upper())


@client.create_function(
    fn_id="wait-for-approval",
    trigger=inngest.TriggerEvent(event="app/approval.requested"),
)
def wait_for_approval(ctx: inngest.ContextSync) -> dict[str, Any]:
    ctx.step.sleep("cool-off", datetime.timedelta(seconds=2))
    approval = ctx.step.wait_for_event(
        "approval",
        event="app/approval.granted",
        if_exp="async.data.request_id == event.data.request_id",
        timeout=datetime.timedelta(minutes=5),
    )
    if approval is None:
        return {"approved": False}
    return {"approved": True, "by": approval.data.get("by")}


@client.create_function(fn_id="add", trigger=inngest.TriggerEvent(event="app/add"))
def add(ctx: inngest.ContextSync) -> int:
    return int(ctx.event.data.get("a", 0)) + int(ctx.event.data.get("b", 0))


@client.create_function(fn_id="sum-twice", trigger=inngest.TriggerEvent(event="app/sum"))
def sum_twice(ctx: inngest.ContextSync) -> int:
    a, b = int(ctx.event.data.get("a", 0)), int(ctx.event.data.get("b", 0))
    first = ctx.step.invoke("first", function=add, data={"a": a, "b": b})
    return ctx.step.invoke("second", function=add, data={"a": first, "b": first})


def _report_failure(ctx: inngest.ContextSync) -> dict[str, Any]:
    error = ctx.event.data.get("error") or {}
    ctx.logger.warning("flaky run %s failed: %s", ctx.event.data.get("run_id"), error)
    return {"handled": ctx.event.data.get("function_id")}


def _unstable(attempt: int) -> str:
    if attempt == 0:
        raise RuntimeError("transient failure on the first attempt")
    return f"succeeded on attempt {attempt}"


@client.create_function(
    fn_id="flaky",
    trigger=inngest.TriggerEvent(event="app/flaky"),
    retries=2,
    on_failure=_report_failure,
)
def flaky(ctx: inngest.ContextSync) -> str:
    result = ctx.step.run("unstable", _unstable, ctx.attempt)
    if ctx.event.data.get("fail"):
        raise inngest.NonRetriableError("asked to fail")
    return result


@client.create_function(fn_id="hello-async", trigger=inngest.TriggerEvent(event="app/hello.async"))
async def hello_async(ctx: inngest.Context) -> list[str]:
    names = await ctx.group.parallel(
        (
            lambda: ctx.step.run("first", lambda: "Ada"),
            lambda: ctx.step.run("second", lambda: "Grace"),
        )
    )
    return [f"Hello, {n}!" for n in names]
