"""In-process functions the chaos tests run (app id `chaos`), loaded by real workers.

Step bodies write what they did to the *ledger*, a Redis the faults never touch (the test
Redis of `STEPLINE_TEST_REDIS_URL`, given as `CHAOS_LEDGER_URL`), through plain redis-py as
user code would:

    chaos:exec:<run id>:<step>   how often the step's body ran (at-least-once execution)
    chaos:spans                  `[start, end]` (seconds) of every limited step body that
                                 returned, to check the concurrency limit was never exceeded
"""

from __future__ import annotations

import datetime
import json
import os
import time

import redis

import app.sdk as inngest

client = inngest.Inngest(app_id="chaos")
LIMIT = 3
"""The concurrency limit of `chaos/work`."""
STEP_SECONDS = 0.02

_ledger: redis.Redis | None = None


def ledger() -> redis.Redis:
    global _ledger
    if _ledger is None:
        _ledger = redis.Redis.from_url(os.environ["CHAOS_LEDGER_URL"])
    return _ledger


def _body(run_id: str, step: str, value: int) -> int:
    start = time.time()
    time.sleep(STEP_SECONDS)
    ledger().incr(f"chaos:exec:{run_id}:{step}")
    ledger().rpush("chaos:spans", json.dumps([start, time.time()]))
    return value


@client.create_function(
    fn_id="work",
    trigger=inngest.TriggerEvent(event="chaos/work"),
    concurrency=[inngest.Concurrency(limit=LIMIT)],
)
def work(ctx: inngest.ContextSync) -> dict[str, object]:
    """Two steps around a sleep and a wait (matched by a `chaos/go` with the same `k`, else
    timed out): the output depends only on `k`, so it can be checked whatever happened."""
    k = int(ctx.event.data["k"])
    a = ctx.step.run("a", lambda: _body(ctx.run_id, "a", 2 * k))
    ctx.step.sleep("nap", datetime.timedelta(milliseconds=300))
    ctx.step.wait_for_event(
        "go",
        event="chaos/go",
        if_exp="async.data.k == event.data.k",
        timeout=datetime.timedelta(seconds=1),
    )
    b = ctx.step.run("b", lambda: _body(ctx.run_id, "b", a + 1))
    return {"k": k, "b": b}


def expected_output(k: int) -> dict[str, object]:
    return {"k": k, "b": 2 * k + 1}


STEPS = ("a", "nap", "go", "b")
"""The steps every `chaos/work` run memoizes, once each."""


@client.create_function(fn_id="poison", trigger=inngest.TriggerEvent(event="chaos/poison"))
def poison(ctx: inngest.ContextSync) -> object:
    """A step that kills its own worker process every time (as an OOM kill or a segfault
    would): it never raises, so only counting deliveries can stop it."""
    ctx.step.run("fine", lambda: "ok")

    def explode() -> None:
        ledger().incr(f"chaos:poison:{ctx.run_id}")
        os.kill(os.getpid(), 9)

    return ctx.step.run("explode", explode)
