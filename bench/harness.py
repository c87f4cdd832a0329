"""Shared plumbing for the benchmarks: worker subprocesses, a flushed Redis, timing."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


def flush() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    return client


@contextmanager
def worker(
    app: str,
    queue: str,
    concurrency: int = 2,
    extra_env: dict[str, str] | None = None,
    beat: bool = False,
) -> Iterator[None]:
    env = dict(os.environ, REDIS_URL=REDIS_URL, PYTHONPATH=str(ROOT), **(extra_env or {}))
    cmds = [
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            app,
            "worker",
            "-Q",
            queue,
            "-c",
            str(concurrency),
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    ]
    if beat:
        cmds.append(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                app,
                "beat",
                "--loglevel",
                "WARNING",
                "-s",
                f"/tmp/stepline-bench-beat-{os.getpid()}",
            ]
        )
    procs = [
        subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for cmd in cmds
    ]
    time.sleep(3)  # let the pool fork and connect
    try:
        yield
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def wait_until(check: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark did not finish in time")
        time.sleep(0.002)


def median(values: list[float]) -> float:
    return statistics.median(values)
