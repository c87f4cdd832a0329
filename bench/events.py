"""Event ingest through the real web process, and the drain of events nothing listens to.

    BENCH_REDIS_URL=redis://127.0.0.1:6379/14 python -m bench.events [--seconds 8]

Starts `gunicorn -c python:app.gunicorn_conf "app.api:create_app()"` (the Procfile's web, two
workers of 8 threads) against the benchmark Redis, with one in-process function triggered by
`bench/order.created`, and measures, each for `--seconds`:
- events/s accepted (answered 200) with one event per request, 8 client threads;
- events/s accepted with batches of 100 events per request, 4 client threads;
- the baseline, in the same run: Celery `apply_async` of a small task from one client thread
  (what sending one job per event costs a plain Celery producer).
Then the no-match drain: 2,000 events of a name no function or pause waits on are sent in
batches of 100 while a worker (`-c 2`) runs; it prints how long until every job they created
is done, and how many jobs that was (the ideal is zero: ingest-bound only).
Printed, not asserted. No worker runs during the ingest measurements: the jobs accumulate in
the broker, as they would behind a busy worker pool.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import requests
from celery import Celery

from bench.harness import REDIS_URL, ROOT, bench_engine, flush, wait_until, worker

FUNCTIONS = "bench.functions"


def _event(i: int, name: str = "bench/order.created") -> dict[str, object]:
    return {
        "name": name,
        "data": {"order_id": f"ord_{i:08d}", "total": 12.5, "tags": ["web"]},
        "user": {"id": f"u{i}"},
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def web() -> Iterator[str]:
    port = _free_port()
    env = dict(
        os.environ,
        REDIS_URL=REDIS_URL,
        PYTHONPATH=str(ROOT),
        STEPLINE_FUNCTIONS=FUNCTIONS,
        STEPLINE_ACCESS_LOG="false",
        STEPLINE_HISTORY_URL="",
        WEB_CONCURRENCY="2",
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "python:app.gunicorn_conf",
            "-b",
            f"127.0.0.1:{port}",
            "app.api:create_app()",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _up(url), timeout=30)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)


def _up(url: str) -> bool:
    try:
        return requests.get(f"{url}/health", timeout=1).status_code < 500
    except requests.RequestException:
        time.sleep(0.1)
        return False


def _ingest(url: str, threads: int, batch: int, seconds: float) -> float:
    """Events/s answered 200 by `POST /e/<key>` over `seconds`, `threads` clients."""
    accepted = [0] * threads
    stop = time.monotonic() + seconds

    def client(index: int) -> None:
        session = requests.Session()
        i = 0
        while time.monotonic() < stop:
            events = [_event(index * 10_000_000 + i + k) for k in range(batch)]
            body = json.dumps(events if batch > 1 else events[0])
            reply = session.post(
                f"{url}/e/bench", data=body, headers={"content-type": "application/json"}
            )
            if reply.status_code != 200:
                raise RuntimeError(f"ingest answered {reply.status_code}: {reply.text[:200]}")
            accepted[index] += batch
            i += batch

    start = time.monotonic()
    workers = [threading.Thread(target=client, args=(n,)) for n in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return sum(accepted) / (time.monotonic() - start)


def _apply_async(seconds: float) -> float:
    """The baseline: one client sending Celery tasks (never run) as fast as it can."""
    app = Celery("bench-events", broker=REDIS_URL, set_as_current=False)
    app.conf.update(task_ignore_result=True, broker_connection_retry_on_startup=True)
    sent = 0
    stop = time.monotonic() + seconds
    start = time.monotonic()
    while time.monotonic() < stop:
        app.send_task("bench.noop", args=[f"job-{sent}"], queue="bench-baseline")
        sent += 1
    return sent / (time.monotonic() - start)


def _drain(url: str, count: int) -> tuple[float, float, int]:
    """Send `count` no-match events in batches of 100 with a worker running; returns (seconds
    to accept them, seconds until every job they made is done, number of jobs made)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    before = client.hlen("sl:jobs")
    done_before = len(client.keys("sl:job-done:event*"))
    session = requests.Session()
    start = time.monotonic()
    for i in range(0, count, 100):
        events = [_event(i + k, name="bench/nobody.listens") for k in range(100)]
        reply = session.post(f"{url}/e/bench", json=events)
        reply.raise_for_status()
    accepted = time.monotonic() - start
    wait_until(lambda: client.hlen("sl:jobs") <= before, timeout=300)
    drained = time.monotonic() - start
    jobs = len(client.keys("sl:job-done:event*")) - done_before
    return accepted, drained, jobs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--drain", type=int, default=2000)
    args = parser.parse_args()
    flush()
    baseline = _apply_async(args.seconds)
    print(f"apply_async, 1 client thread:              {baseline:8.0f} tasks/s (baseline)")
    with web() as url:
        single = _ingest(url, threads=8, batch=1, seconds=args.seconds)
        print(
            f"POST /e, 1 event/request, 8 threads:      {single:8.0f} events/s"
            f"  ({single / baseline:.2f}x baseline)"
        )
        flush()
        batched = _ingest(url, threads=4, batch=100, seconds=args.seconds)
        print(
            f"POST /e, 100 events/request, 4 threads:   {batched:8.0f} events/s"
            f"  ({batched / baseline:.2f}x baseline)"
        )
        flush()
        bench_engine([FUNCTIONS])  # registers the functions again, as the web did at start
        env = {"STEPLINE_FUNCTIONS": FUNCTIONS, "STEPLINE_HISTORY_URL": ""}
        with worker("tasks", "stepline", concurrency=2, extra_env=env, beat=True):
            accepted, drained, jobs = _drain(url, args.drain)
        print(
            f"{args.drain} no-match events: accepted in {accepted:.2f} s "
            f"({args.drain / accepted:.0f}/s), drained in {drained:.2f} s "
            f"({args.drain / drained:.0f}/s), {jobs} worker jobs"
        )


if __name__ == "__main__":
    main()
