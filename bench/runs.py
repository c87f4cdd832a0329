"""Runs/s of short in-process runs end to end, beside bare Celery 3-hop chains, in one run.

    python -m bench.runs [--runs 4000] [--repeat 1] [--counted 200] [--concurrency N]

Stepline: `--runs` events sent to one `celery worker -c 2` (+ beat), each starting a run of a
3-step in-process function (`bench/steps`, n=3); timed from the first send to the last run
completed. Baseline: the same number of bare Celery chains of 3 tasks that each enqueue their
successor, on the same worker settings. Then, untimed, `--counted` more of each under Redis
`MONITOR`: the commands clients send (not those inside Lua scripts; a pipeline counts each; the
broker's traffic and the sender's included, the poller's excluded) per run and per chain,
with the commonest commands. Printed, never asserted. Target (issue 8): >= 1.5x the chains.
With `--concurrency N` the runs are of `bench/steps-limited`: the same steps, limited to N at
a time per tenant (ten tenants, keyed by a CEL expression over the event), so each start and
each resumed job takes a slot and gives it back.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from bench.harness import REDIS_URL, bench_engine, flush, median, wait_until, worker

SEND_BATCH = 100
POLL = "HVALS"  # the poller's command, left out of the counts


def bare_chains(n: int) -> float:
    from bench.bare_celery import hop

    client = flush()
    start = time.perf_counter()
    for c in range(n):
        hop.delay(f"c{c}", 3)
    wait_until(lambda: _sleepy(int(client.get("bare:done") or 0) >= n), timeout=600)
    return n / (time.perf_counter() - start)


def _sleepy(result: bool) -> bool:
    if not result:
        time.sleep(0.02)
    return result


def stepline_runs(n: int, limited: bool = False) -> float:
    client = flush()
    engine = bench_engine(["bench.functions"])
    name = "bench/steps.limited" if limited else "bench/steps"
    start = time.perf_counter()
    for offset in range(0, n, SEND_BATCH):
        batch = min(SEND_BATCH, n - offset)
        engine.runner.ingest(
            [
                {"name": name, "data": {"n": 3, "tenant": f"t{i % 10}"}}
                for i in range(offset, offset + batch)
            ],
            engine.now(),
        )
    completed = engine.store.keys.metric("runs_completed_total")
    failed = engine.store.keys.metric("runs_failed_total")

    def done() -> bool:
        if client.hvals(failed):
            raise RuntimeError("a benchmark run failed: see the worker's log")
        return _sleepy(sum(int(v) for v in client.hvals(completed)) >= n)

    wait_until(done, timeout=600)
    return n / (time.perf_counter() - start)


@contextmanager
def monitored() -> Iterator[Counter[str]]:
    """Counts, by command name, what clients send to the benchmark's Redis db meanwhile."""
    counts: Counter[str] = Counter()
    db = redis.Redis.from_url(REDIS_URL).connection_pool.connection_kwargs.get("db", 0)
    client = redis.Redis.from_url(REDIS_URL)
    stop = threading.Event()
    ready = threading.Event()

    def listen() -> None:
        with client.monitor() as mon:
            ready.set()
            for entry in mon.listen():
                if stop.is_set():
                    return
                if entry.get("client_type") == "lua" or int(entry.get("db", -1)) != db:
                    continue
                name = str(entry["command"]).split(" ", 1)[0].upper()
                if name != POLL:
                    counts[name] += 1

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    ready.wait(5)
    time.sleep(0.2)
    try:
        yield counts
    finally:
        time.sleep(0.5)
        stop.set()
        redis.Redis.from_url(REDIS_URL).ping()  # wakes the listener so it sees `stop`
        thread.join(5)


def show(label: str, counts: Counter[str], n: int, top_n: int = 8) -> None:
    total = sum(counts.values())
    top = ", ".join(f"{name} {c / n:.1f}" for name, c in counts.most_common(top_n))
    print(f"{label}: {total / n:6.1f} commands sent each ({top})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--counted", type=int, default=200)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=0,
        metavar="N",
        help="runs of a function limited to N at a time per tenant (bench/steps-limited)",
    )
    args = parser.parse_args()
    limited = bool(args.concurrency)
    if limited:
        os.environ["BENCH_CONCURRENCY"] = str(args.concurrency)
    bare, sl = [], []
    with worker("bench.bare_celery", "bare"):
        for _ in range(args.repeat):
            bare.append(bare_chains(args.runs))
        with monitored() as bare_counts:
            bare_chains(args.counted)
    env = {"STEPLINE_FUNCTIONS": "bench.functions"}
    with worker("tasks", "stepline", extra_env=env, beat=True):
        for _ in range(args.repeat):
            sl.append(stepline_runs(args.runs, limited))
        with monitored() as sl_counts:
            stepline_runs(args.counted, limited)
    b, s = median(bare), median(sl)
    print(f"bare Celery  {args.runs} chains x 3 hops : {b:8.0f} chains/s")
    print(
        f"Stepline     {args.runs} runs x 3 steps  : {s:8.0f} runs/s"
        + (f" (limited to {args.concurrency} per tenant)" if limited else "")
        + f"   ratio {s / b:.2f}x bare chains (target >= 1.5x)"
    )
    show(f"bare Celery  {args.counted} chains, per chain", bare_counts, args.counted)
    show(f"Stepline     {args.counted} runs, per run   ", sl_counts, args.counted)


if __name__ == "__main__":
    main()
