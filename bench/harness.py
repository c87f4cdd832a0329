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
from typing import Any

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
    log: Path | None = None,
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """A `celery worker` (and beat) of `app` on `queue`; yields the processes (worker first),
    e.g. for `rss_mib`. With `log`, the worker's output goes to that file (beat's to
    `<stem>-beat.log` beside it) instead of nowhere."""
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
    logs: list[Path | None] = [log, log.with_name(f"{log.stem}-beat.log") if log else None]
    procs = []
    for cmd, path in zip(cmds, logs, strict=False):
        with open(path or os.devnull, "ab") as out:
            procs.append(
                subprocess.Popen(
                    cmd,
                    cwd=ROOT,
                    env=env,
                    start_new_session=True,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
    time.sleep(3)  # let the pool fork and connect
    try:
        yield procs
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


def log_dir(name: str) -> Path:
    """A fresh directory for the logs of one benchmark process's subprocesses."""
    path = Path(f"/tmp/stepline-bench-{name}-{os.getpid()}")
    path.mkdir(parents=True, exist_ok=True)
    return path


def tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a log file ("" if it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def median(values: list[float]) -> float:
    return statistics.median(values)


def bench_engine(modules: list[str]) -> Any:
    """An engine in this process over the benchmark Redis, knowing the in-process functions of
    `modules` (it sends events; the workers run them)."""
    from app.config import Settings
    from app.engine import Engine
    from app.functions import load_functions

    settings = Settings.from_env().replace(redis_url=REDIS_URL, functions=[])
    return Engine.create(settings, local=load_functions(modules))


def all_completed(engine: Any, event_ids: list[str]) -> bool:
    """Have the runs of these events all completed? Cheap polling (one pipelined HGET per run)
    so the poller does not steal the CPU; a failed run stops the benchmark."""
    run_ids = [rid for eid in event_ids for rid in engine.store.event_run_ids(eid)]
    if len(run_ids) < len(event_ids):
        time.sleep(0.01)
        return False
    pipe = engine.store._client.pipeline(transaction=False)
    for run_id in run_ids:
        pipe.hget(engine.store.keys.run(run_id).meta, "status")
    statuses = pipe.execute()
    for run_id, status in zip(run_ids, statuses, strict=True):
        if status == "Failed":
            error = engine.store._client.hget(engine.store.keys.run(run_id).meta, "error")
            raise RuntimeError(f"benchmark run {run_id} failed: {error}")
    done = all(status == "Completed" for status in statuses)
    if not done:
        time.sleep(0.01)
    return done


def rss_mib(pid: int) -> float:
    """Resident memory (MiB) of every process in `pid`'s process group (the harness starts
    each worker in its own session, so: the worker and its prefork pool). Linux /proc only."""
    total_kib = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            pgrp = int(stat.rsplit(")", 1)[1].split()[2])
            if pgrp != pid:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return total_kib / 1024


def pct(values: list[int] | list[float], q: float) -> float:
    """The q-th percentile (1..99) of `values`."""
    if len(values) < 2:
        return float(values[0])
    return statistics.quantiles(values, n=100)[int(q) - 1]
