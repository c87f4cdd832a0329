"""What concurrency limits cost when they never bind, in one run.

    BENCH_REDIS_URL=redis://127.0.0.1:6379/14 python -m bench.flow [--repeat 9]

Runs 50 concurrent runs x 10 steps of three identical functions on one worker (2 processes),
interleaved, and prints medians of steps/s:
- free:   no flow-control option (the executor's gate costs no Redis call);
- capped: `concurrency=[{limit: 1000}]`, a limit that never binds (one slot taken and given
  back per job: two Lua calls);
- keyed:  `concurrency=[{limit: 1000, key: "event.data.user"}]`, 50 users (plus one CEL
  evaluation per job);
with the ratios to free. It also times the gate itself for a function without options
and with the limits (acquire + release in this process, against Redis) against the measured
time per step. Target: a function without options pays < 5 %.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import app.sdk as inngest
from bench.harness import all_completed, bench_engine, flush, median, wait_until, worker

client = inngest.Inngest(app_id="benchflow")
RUNS, STEPS = 50, 10


def _body(ctx: inngest.ContextSync) -> int:
    total = 0
    for i in range(int(ctx.event.data["n"])):
        total = ctx.step.run(f"s{i}", lambda i=i, t=total: t + i)
    return total


free = client.create_function(
    fn_id="free", trigger=inngest.TriggerEvent(event="benchflow/free"), retries=0
)(_body)
capped = client.create_function(
    fn_id="capped",
    trigger=inngest.TriggerEvent(event="benchflow/capped"),
    retries=0,
    concurrency=[inngest.Concurrency(limit=1000)],
)(_body)
keyed = client.create_function(
    fn_id="keyed",
    trigger=inngest.TriggerEvent(event="benchflow/keyed"),
    retries=0,
    concurrency=[inngest.Concurrency(limit=1000, key="event.data.user")],
)(_body)


def steps_per_second(kind: str) -> float:
    flush()
    engine = bench_engine(["bench.flow"])
    events = [
        {"name": f"benchflow/{kind}", "data": {"n": STEPS, "user": f"u{i}"}} for i in range(RUNS)
    ]
    start = time.perf_counter()
    ids = engine.runner.ingest(events, engine.now())
    wait_until(lambda: all_completed(engine, ids))
    rate = RUNS * STEPS / (time.perf_counter() - start)
    engine.store.close()
    return rate


def gate_cost_us(function: Any, calls: int) -> float:
    """Microseconds of one `Slots.acquire` + `Grant.release` (what each job of a run pays)."""
    from app.models import Job, JobKind
    from app.state.store import RunState

    flush()
    engine = bench_engine(["bench.flow"])
    fn = function.config()[0]
    event = {"name": "x", "data": {"user": "u1"}}
    state = RunState("01RUN", fn.id, "Queued", [event], {}, [], False, 1, None, None)
    job = Job(id="01RUN:start", kind=JobKind.START, run_id="01RUN")
    slots = engine.executor.slots
    start = time.perf_counter()
    for _ in range(calls):
        slots.acquire(fn, state, job, engine.now()).release(engine.now())
    cost = (time.perf_counter() - start) * 1e6 / calls
    engine.store.close()
    return cost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"free": [], "capped": [], "keyed": []}
    with worker("tasks", "stepline", extra_env={"STEPLINE_FUNCTIONS": "bench.flow"}):
        for kind in rates:  # warm up the pool processes (imports, CEL's parser)
            steps_per_second(kind)
        kinds = list(rates)
        for i in range(args.repeat):
            for kind in kinds[i % 3 :] + kinds[: i % 3]:  # rotate: no kind always goes first
                rates[kind].append(steps_per_second(kind))
    free_rate = median(rates["free"])
    print(f"free    (no options)              : {free_rate:8.0f} steps/s")
    for kind, label in (("capped", "limit 1000"), ("keyed", "limit 1000 per key")):
        rate = median(rates[kind])
        print(f"{kind:7} ({label:18})      : {rate:8.0f} steps/s   ratio {rate / free_rate:.3f}")
    step_us = 1e6 / free_rate * 2  # two worker processes: wall time per step per process
    print(f"the gate alone, per job (a job runs up to a whole run; one step = {step_us:.0f} us):")
    for function, calls in ((free, 100_000), (capped, 2_000), (keyed, 2_000)):
        cost = gate_cost_us(function, calls)
        share = 100 * cost / step_us
        print(f"  {function.local_id:7}: {cost:8.2f} us = {share:6.3f} % of one step")


if __name__ == "__main__":
    main()
