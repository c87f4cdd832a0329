"""Where a wake's time goes: starts, release and wakes of sleeping runs, in this one process.

    python -m bench.wake_cost [--runs 2000] [--work] [--concurrency N]
                              [--shape sleep|steps|invoke|lookback]

`--runs` runs of `bench/nap` sleep until one due time; everything runs here, no Celery worker
(a recording sender stands in for the broker, so what is measured is Stepline's own work):
their events' and start jobs, then beat's release of the due timers (`Queue.release_due`),
then each message of due timers as a worker runs it (`JobRunner.handle_each` in the registry
read of the message). For each phase: ms per run (wall clock, and this process's CPU time,
which the machine's load disturbs less), Redis round trips per run (commands and pipelines,
counted at redis-py's client, with what a pipeline sends before it) and, for the release,
the number of Celery messages.
With `--concurrency N` the runs are of `bench/nap-limited`, limited to N at a time per tenant
(ten tenants, the key a CEL expression over the event): every start and wake takes a slot and
gives it back (none waits: one process runs one job at a time), so the figures are the cost of
a concurrency-limited start and wake in the common case, a slot free.
With `--shape`, each run stops otherwise before it sleeps (bench/functions.py): `steps`, three
in-process steps then the sleep (`bench/nap.steps`); `invoke`, it invokes `bench-echo` first
(the invoked run and the parent's resume run here too, within the starts); `lookback`, it waits
with a lookback for an event nobody sends until the due time instead of sleeping
(`bench/nap.lookback`). The starts' round trips are what these compare.
Printed, never asserted: the start of a run is the yardstick a wake should not exceed
(issue 8: "timer release, resume and finish of a sleeping run cost no more than starting
it").
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import redis
from redis.client import Pipeline

from bench.harness import REDIS_URL, flush

_calls = {"commands": 0, "pipelines": 0}


def _counting() -> None:
    """Count every command and pipeline redis-py sends from this process (with the commands
    a pipeline sends on its own before it, e.g. SCRIPT EXISTS)."""
    command: Callable[..., Any] = redis.Redis.execute_command
    pipeline: Callable[..., Any] = Pipeline.execute
    immediate: Callable[..., Any] = Pipeline.immediate_execute_command

    def counted_immediate(self: Pipeline, *args: Any, **options: Any) -> Any:
        _calls["commands"] += 1
        return immediate(self, *args, **options)

    def counted_command(self: redis.Redis, *args: Any, **options: Any) -> Any:
        _calls["commands"] += 1
        return command(self, *args, **options)

    def counted_pipeline(self: Pipeline, *args: Any, **options: Any) -> Any:
        _calls["pipelines"] += 1
        return pipeline(self, *args, **options)

    redis.Redis.execute_command = counted_command  # type: ignore[method-assign]
    Pipeline.execute = counted_pipeline  # type: ignore[method-assign]
    Pipeline.immediate_execute_command = counted_immediate  # type: ignore[method-assign]


SHAPES = {
    "sleep": "bench/nap",
    "steps": "bench/nap.steps",
    "invoke": "bench/nap.invoke",
    "lookback": "bench/nap.lookback",
}
"""`--shape`: the event each run starts from (bench/functions.py)."""


class Recorder:
    """Stands in for Celery: keeps each message's (task name, arguments)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[Any]]] = []

    def send_task(self, name: str, args: Any = None, **options: Any) -> None:
        self.sent.append((name, list(args)))

    def take(self) -> list[tuple[str, list[Any]]]:
        sent, self.sent = self.sent, []
        return sent


class Phase:
    def __init__(self, label: str) -> None:
        self.label = label

    def __enter__(self) -> Phase:
        self.calls = dict(_calls)
        self.started = time.perf_counter()
        self.cpu_started = time.process_time()
        return self

    def __exit__(self, *_: object) -> None:
        self.seconds = time.perf_counter() - self.started
        self.cpu_seconds = time.process_time() - self.cpu_started
        self.commands = _calls["commands"] - self.calls["commands"]
        self.pipelines = _calls["pipelines"] - self.calls["pipelines"]

    def show(self, n: int, extra: str = "") -> None:
        print(
            f"{self.label:8s} {self.seconds * 1000 / n:6.2f} ms/run"
            f" ({self.cpu_seconds * 1000 / n:.2f} ms CPU here)   round trips/run"
            f" {(self.commands + self.pipelines) / n:5.2f} ({self.commands / n:.2f} commands,"
            f" {self.pipelines / n:.2f} pipelines){extra}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument(
        "--work",
        action="store_true",
        help="run each job of the starts as a worker's task does (JobRunner.work: a job, "
        "then its work list here), not alone (JobRunner.handle)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=0,
        metavar="N",
        help="runs of a function limited to N at a time per tenant (bench/nap-limited)",
    )
    parser.add_argument(
        "--shape",
        choices=SHAPES,
        default="sleep",
        help="what a run does before its sleep (see the docstring)",
    )
    args = parser.parse_args()
    if args.concurrency:
        os.environ["BENCH_CONCURRENCY"] = str(args.concurrency)
    from app.config import Settings
    from app.engine import Engine
    from app.functions import load_functions

    flush()
    _counting()
    recorder = Recorder()
    # Every delay goes to the Redis timer set (no countdown sends), as long sleeps do.
    settings = Settings.from_env().replace(redis_url=REDIS_URL, functions=[], eta_max_seconds=0)
    engine = Engine.create(
        settings, sender=recorder, local=load_functions(["bench.functions"]), inline=True
    )
    n = args.runs
    due = engine.now() + 3_600_000
    name = "bench/nap.limited" if args.concurrency else SHAPES[args.shape]
    sent = engine.now()
    with Phase("starts") as starts:
        for offset in range(0, n, 100):
            events = [
                {"name": name, "data": {"until": due, "tenant": f"t{i % 10}", "k": i, "sent": sent}}
                for i in range(offset, n)
            ]
            engine.runner.ingest(events[:100], engine.now())
        run = engine.jobs.work if args.work else engine.jobs.handle
        while recorder.sent:
            for _, task_args in recorder.take():
                run(*task_args)  # a start job's message also names its function
    with Phase("release") as release:
        released = engine.queue.release_due(due, budget_s=float("inf"))
    messages = recorder.take()
    each = getattr(engine.jobs, "handle_each", None)  # absent before issue 8's batching
    with Phase("wakes") as wakes:
        for _, (arg, *_) in messages:
            ids = arg if isinstance(arg, list) else [arg]
            if each is not None:
                with engine.registry.pinned():
                    each(ids)
            else:
                for job_id in ids:
                    engine.jobs.handle(job_id)
    completed = engine.store.keys.metric("runs_completed_total")
    done = sum(int(v) for v in redis.Redis.from_url(REDIS_URL).hvals(completed))
    limited = f", limited to {args.concurrency} per tenant" if args.concurrency else ""
    shape = f" ({name})" if args.shape != "sleep" else ""
    print(
        f"{n} runs sleeping until one due time{limited}{shape}, in this process ({done} completed):"
    )
    starts.show(n)
    release.show(n, f"; {released} timers in {len(messages)} messages")
    wakes.show(n)
    engine.store.close()


if __name__ == "__main__":
    main()
