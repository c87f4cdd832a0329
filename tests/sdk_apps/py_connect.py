"""A worker built with the official Inngest Python SDK's Connect (`inngest[connect]` 0.5.19), as
a user would write it: it dials out to Stepline instead of serving HTTP. Nothing here knows
about Stepline: point it at Stepline as at the Inngest dev server and run

    INNGEST_DEV=http://127.0.0.1:8288 python tests/sdk_apps/py_connect.py

`/v0/connect/start` on the API hands it the gateway's WebSocket URL. CONNECT_APP_ID names the
app (default `pyconn`), CONNECT_INSTANCE the worker (default: the host name).
"""

from __future__ import annotations

import asyncio
import datetime
import os
import time
import typing

import inngest
from inngest.connect import connect
from inngest.experimental.ai import openai

client = inngest.Inngest(app_id=os.environ.get("CONNECT_APP_ID") or "pyconn")
PREFIX = client.app_id


@client.create_function(fn_id="three", trigger=inngest.TriggerEvent(event=f"{PREFIX}/three"))
def three(ctx: inngest.ContextSync) -> dict[str, int]:
    a = ctx.step.run("a", lambda: 1)
    b = ctx.step.run("b", lambda: a + 1)
    c = ctx.step.run("c", lambda: b + 1)
    return {"sum": a + b + c}


@client.create_function(fn_id="ops", trigger=inngest.TriggerEvent(event=f"{PREFIX}/ops"))
def ops(ctx: inngest.ContextSync) -> dict[str, typing.Any]:
    first = ctx.step.run("first", lambda: "one")
    ctx.step.sleep("nap", datetime.timedelta(seconds=1))
    approval = ctx.step.wait_for_event(
        "wait",
        event=f"{PREFIX}/approve",
        if_exp="async.data.id == event.data.id",
        timeout=datetime.timedelta(minutes=1),
    )
    late = ctx.step.wait_for_event(
        "late", event=f"{PREFIX}/never", timeout=datetime.timedelta(seconds=1)
    )
    return {"first": first, "approved": approval is not None, "late": late}


@client.create_function(fn_id="who", trigger=inngest.TriggerEvent(event=f"{PREFIX}/who"))
def who(ctx: inngest.ContextSync) -> int:
    """Which worker process ran the step (load sharing)."""

    def pid() -> int:
        time.sleep(0.2)
        return os.getpid()

    return ctx.step.run("pid", pid)


@client.create_function(
    fn_id="slow", retries=3, trigger=inngest.TriggerEvent(event=f"{PREFIX}/slow")
)
def slow(ctx: inngest.ContextSync) -> dict[str, int]:
    """Its step notes the worker's pid in `marker`, then stalls on the first attempt (the
    test kills that worker there); a retry returns at once."""
    marker = str(ctx.event.data["marker"])

    def work() -> int:
        with open(marker, "a") as out:
            out.write(f"{os.getpid()}\n")
        if ctx.attempt == 0:
            time.sleep(120)
        return os.getpid()

    return {"ran_on": ctx.step.run("work", work)}


@client.create_function(fn_id="nap", trigger=inngest.TriggerEvent(event=f"{PREFIX}/nap"))
def nap(ctx: inngest.ContextSync) -> str:
    """A step of a few seconds, noted in `marker` when it starts (the gateway restarts then)."""
    marker = str(ctx.event.data["marker"])

    def doze() -> str:
        with open(marker, "a") as out:
            out.write(f"{os.getpid()}\n")
        time.sleep(3)
        return "rested"

    return ctx.step.run("doze", doze)


@client.create_function(fn_id="par", trigger=inngest.TriggerEvent(event=f"{PREFIX}/par"))
def par(ctx: inngest.ContextSync) -> tuple[typing.Any, ...]:
    return ctx.group.parallel(
        (lambda: ctx.step.run("p1", lambda: "x"), lambda: ctx.step.run("p2", lambda: "y"))
    )


@client.create_function(fn_id="caller", trigger=inngest.TriggerEvent(event=f"{PREFIX}/caller"))
def caller(ctx: inngest.ContextSync) -> dict[str, typing.Any]:
    """Invokes this app's `three`; sends an event from a step."""
    invoked = ctx.step.invoke("call", function=three, data={})
    sent = ctx.step.send_event("send", inngest.Event(name=f"{PREFIX}/sent", data={"k": 1}))
    return {"invoked": invoked, "sent": len(sent)}


@client.create_function(fn_id="flaky", trigger=inngest.TriggerEvent(event=f"{PREFIX}/flaky"))
def flaky(ctx: inngest.ContextSync) -> dict[str, int]:
    def once() -> int:
        if ctx.attempt == 0:
            raise ValueError("first attempt fails")
        return ctx.attempt

    return {"succeeded_on": ctx.step.run("once", once)}


def _saw(ctx: inngest.ContextSync) -> dict[str, str]:
    return {"saw": ctx.event.name}


@client.create_function(
    fn_id="nr", on_failure=_saw, trigger=inngest.TriggerEvent(event=f"{PREFIX}/nr")
)
def nr(ctx: inngest.ContextSync) -> None:
    raise inngest.NonRetriableError("stop now")


@client.create_function(fn_id="ai", trigger=inngest.TriggerEvent(event=f"{PREFIX}/ai"))
def ai(ctx: inngest.ContextSync) -> object:
    """step.ai.infer: the engine makes the request (to `event.data.base`, a local stand-in)."""
    model = openai.Adapter(auth_key="sk-test", base_url=ctx.event.data["base"], model="gpt-test")
    body = {"messages": [{"role": "user", "content": "hi"}]}
    answer = ctx.step.ai.infer("ask", adapter=model, body=body)
    return {"content": answer["choices"][0]["message"]["content"]}


FUNCTIONS = [three, ops, who, slow, nap, par, caller, flaky, nr, ai]


async def main() -> None:
    connection = connect(
        [(client, FUNCTIONS)], instance_id=os.environ.get("CONNECT_INSTANCE") or None
    )
    await connection.start()


if __name__ == "__main__":
    asyncio.run(main())
