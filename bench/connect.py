"""Steps/s of runs served by a Connect worker built with the official Python SDK
(`inngest[connect]` 0.5.19), beside bare Celery hops and beside the same app over HTTP, in one
run.

    .venv/bin/python -m bench.connect [--repeat 3] [--concurrency 2]

- bare Celery: hops/s of 50 concurrent chains x 10 tasks that each enqueue their successor;
- Stepline + SDK over HTTP: bench.sdk_app's app under gunicorn (one HTTP call per step);
- Stepline + SDK over Connect: the same function in one Connect worker process (this module,
  `--worker`), dialled out to the gateway (`python -m app gateway`): one call per step travels
  executor -> Redis -> gateway -> WebSocket -> worker and back.

All run at once, measured in turns (medians over `--repeat`). No target: the figure to read is
Connect against HTTP (the extra hop through Redis and the gateway).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx

from bench.harness import REDIS_URL, ROOT, all_completed, bench_engine, flush, median, wait_until
from bench.harness import worker as celery_worker
from bench.sdk_app import RUNS, STEPS, _free_port, _gunicorn, bare_concurrent, client, steps


@contextlib.contextmanager
def _process(command: list[str], env: dict[str, str]) -> Iterator[None]:
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT), REDIS_URL=REDIS_URL, **env),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _connected(engine: object) -> bool:
    from app.state.connect import ConnectStore

    return bool(ConnectStore(engine.store).workers("benchsdk", 0))  # type: ignore[attr-defined]


def run_rate(runs: int, steps_per_run: int) -> float:
    engine = bench_engine([])
    start = time.perf_counter()
    ids = engine.runner.ingest(
        [{"name": "benchsdk/steps", "data": {"n": steps_per_run}} for _ in range(runs)],
        engine.now(),
    )
    wait_until(lambda: all_completed(engine, ids), timeout=300)
    return runs * steps_per_run / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes, each side")
    parser.add_argument("--worker", action="store_true", help="be the Connect worker")
    args = parser.parse_args()
    if args.worker:
        from inngest.connect import connect

        asyncio.run(connect([(client, [steps])], instance_id="bench").start())
        return
    os.environ["REDIS_URL"] = REDIS_URL
    gateway_port = _free_port()
    stepline = {"STEPLINE_FUNCTIONS": "", "STEPLINE_GATEWAY_PORT": str(gateway_port)}
    gateway = [sys.executable, "-m", "app", "gateway", "--host", "127.0.0.1"]
    connect_worker = [sys.executable, "-m", "bench.connect", "--worker"]
    engine = bench_engine([])
    bare_rate, http_rate, connect_rate = [], [], []
    with (
        celery_worker("bench.bare_celery", "bare", concurrency=args.concurrency),
        _gunicorn("app.api:create_app()", _free_port(), 1, stepline) as api,
        _gunicorn("bench.sdk_app:create_app()", _free_port(), 2, {"INNGEST_DEV": api}) as app,
        celery_worker(
            "tasks",
            "stepline,stepline-sdk",
            concurrency=args.concurrency,
            extra_env=stepline,
            beat=True,
        ),
        _process([*gateway, "--port", str(gateway_port)], stepline),
    ):
        for _ in range(args.repeat):
            bare_rate.append(bare_concurrent(RUNS, STEPS))
            flush()
            synced = httpx.put(f"{app}/api/inngest", timeout=30)
            assert synced.status_code == 200, synced.text
            http_rate.append(run_rate(RUNS, STEPS))
            flush()
            with _process(connect_worker, {"INNGEST_DEV": api}):
                wait_until(lambda: _connected(engine), timeout=60)
                connect_rate.append(run_rate(RUNS, STEPS))
    b, h, c = median(bare_rate), median(http_rate), median(connect_rate)
    print(f"bare Celery        {RUNS} chains x {STEPS} hops : {b:8.0f} hops/s")
    print(f"Stepline + HTTP    {RUNS} runs x {STEPS} steps  : {h:8.0f} steps/s   {h / b:.2f}x bare")
    print(
        f"Stepline + Connect {RUNS} runs x {STEPS} steps  : {c:8.0f} steps/s   {c / b:.2f}x bare"
        f"   {c / h:.2f}x HTTP"
    )
    print(
        "spread: bare "
        + " ".join(f"{x:.0f}" for x in bare_rate)
        + " | http "
        + " ".join(f"{x:.0f}" for x in http_rate)
        + " | connect "
        + " ".join(f"{x:.0f}" for x in connect_rate)
    )


if __name__ == "__main__":
    main()
