"""Event ingest through the real web process, and the drain of events nothing listens to.

    BENCH_REDIS_URL=redis://127.0.0.1:6379/14 python -m bench.events [--seconds 8]

Starts `gunicorn -c python:app.gunicorn_conf "app.api:create_app()"` (the Procfile's web, two
workers of 8 threads) against the benchmark Redis, with one in-process function triggered by
`bench/order.created`, and measures, each for `--seconds`:
- events/s accepted (answered 200) with one event per request, 8 client threads;
- events/s accepted with batches of 100 events per request, 4 client threads;
- the baseline, in the same run: Celery `apply_async` of a small task from one client thread
  (what sending one job per event costs a plain Celery producer);
- the ceiling, in the same run: the same two loads against `bench.bare_web` (a Flask app
  answering a constant 200 under the same gunicorn): what the server and the client alone
  cost on this machine.
The client is `bench.httpload` (keep-alive sockets, requests prepared before the clock
starts), so it costs little next to the server; each line also prints the web processes'
CPU time per request (user + system, all gunicorn processes), steadier than events/s on a
loaded machine.
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
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import requests
from celery import Celery

from bench.harness import REDIS_URL, ROOT, bench_engine, flush, wait_until, worker
from bench.httpload import load, post_request

FUNCTIONS = "bench.functions"
REQUESTS_PER_CLIENT = 5_000
"""Distinct single-event requests each client cycles through (ids differ within a run)."""
BATCHES_PER_CLIENT = 200


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


@dataclass(frozen=True)
class Web:
    host: str
    port: int
    pid: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def cpu_seconds(self) -> float:
        """User + system CPU time of the gunicorn master and its workers so far."""
        children = subprocess.run(
            ["pgrep", "-P", str(self.pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        total = 0
        for pid in [self.pid, *map(int, children)]:
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")


@contextmanager
def web(app: str = "app.api:create_app()") -> Iterator[Web]:
    port = _free_port()
    env = dict(
        os.environ,
        REDIS_URL=REDIS_URL,
        PYTHONPATH=str(ROOT),
        STEPLINE_FUNCTIONS=FUNCTIONS,
        STEPLINE_ACCESS_LOG="false",
        STEPLINE_HISTORY_URL="",
        WEB_CONCURRENCY=os.environ.get("WEB_CONCURRENCY", "2"),
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
            app,
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = Web("127.0.0.1", port, proc.pid)
    try:
        wait_until(lambda: _up(server.url), timeout=30)
        yield server
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)


def _up(url: str) -> bool:
    try:
        return requests.get(f"{url}/health", timeout=1).status_code < 500
    except requests.RequestException:
        time.sleep(0.1)
        return False


def _ingest(server: Web, threads: int, batch: int, seconds: float) -> tuple[float, float]:
    """(events/s answered 200 by `POST /e/<key>` over `seconds` from `threads` clients, the
    web processes' CPU microseconds per request)."""

    def requests_of(index: int) -> list[bytes]:
        bodies = []
        for i in range(REQUESTS_PER_CLIENT if batch == 1 else BATCHES_PER_CLIENT):
            first = index * 10_000_000 + i * batch
            events = [_event(first + k) for k in range(batch)]
            body = json.dumps(events if batch > 1 else events[0]).encode()
            bodies.append(post_request(server.host, server.port, "/e/bench", body))
        return bodies

    before = server.cpu_seconds()
    result = load(
        server.host,
        server.port,
        requests_of,
        events_per_request=batch,
        threads=threads,
        seconds=seconds,
    )
    cpu_us = (server.cpu_seconds() - before) / max(result.requests, 1) * 1e6
    return result.events_per_s, cpu_us


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


def _line(label: str, rate: float, cpu_us: float, baseline: float, ceiling: float) -> str:
    return (
        f"{label:<40} {rate:8.0f} events/s  ({rate / baseline:5.2f}x baseline, "
        f"{rate / ceiling:4.0%} of ceiling), web CPU {cpu_us:6.0f} us/request"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--drain", type=int, default=2000)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    flush()
    baseline = _apply_async(args.seconds)
    print(f"apply_async, 1 client thread:            {baseline:8.0f} tasks/s (baseline)")
    with web("bench.bare_web:create_app()") as bare:
        bare_single, bare_single_cpu = _ingest(bare, threads=8, batch=1, seconds=args.seconds)
        bare_batched, bare_batched_cpu = _ingest(bare, threads=4, batch=100, seconds=args.seconds)
    print(
        f"ceiling (bench.bare_web, constant 200): 1 event/request {bare_single:8.0f} events/s "
        f"(web CPU {bare_single_cpu:.0f} us/request), 100/request {bare_batched:8.0f} events/s "
        f"(web CPU {bare_batched_cpu:.0f} us/request)"
    )
    with web() as server:
        flush()
        bench_engine([FUNCTIONS])  # registers the functions again, as the web did at start
        single, single_cpu = _ingest(server, threads=8, batch=1, seconds=args.seconds)
        print(
            _line("POST /e, 1 event/request, 8 threads:", single, single_cpu, baseline, bare_single)
        )
        flush()
        bench_engine([FUNCTIONS])
        batched, batched_cpu = _ingest(server, threads=4, batch=100, seconds=args.seconds)
        print(
            _line(
                "POST /e, 100 events/request, 4 threads:",
                batched,
                batched_cpu,
                baseline,
                bare_batched,
            )
        )
        flush()
        bench_engine([FUNCTIONS])  # registers the functions again, as the web did at start
        env = {"STEPLINE_FUNCTIONS": FUNCTIONS, "STEPLINE_HISTORY_URL": ""}
        with worker("tasks", "stepline", concurrency=2, extra_env=env, beat=True):
            accepted, drained, jobs = _drain(server.url, args.drain)
        print(
            f"{args.drain} no-match events: accepted in {accepted:.2f} s "
            f"({args.drain / accepted:.0f}/s), drained in {drained:.2f} s "
            f"({args.drain / drained:.0f}/s), {jobs} worker jobs"
        )
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
