"""Steps/s of runs served by an app built with the official Inngest Python SDK, beside bare
Celery hops, in one run.

    .venv/bin/python -m bench.sdk_app [--repeat 3] [--concurrency 2] [--sdk python|ts]

- bare Celery: hops/s of 50 concurrent chains x 10 tasks that each enqueue their successor;
- Stepline + SDK: steps/s of 50 concurrent runs x 10 `step.run`, each step one HTTP call from a
  celery worker to this module's SDK app (`inngest` 0.5.19 + Flask) under gunicorn
  (`-w 2 --threads 8`), synced through the Stepline API (gunicorn) like any app;
- the ratio. Target (issue #3): >= 0.5x the bare hop rate.

With `--sdk ts` the app is tests/sdk_apps/ts_app (the official TypeScript SDK 4.24.0 on Node,
one process; `npm install` there first), measured twice: with checkpointing (the default: the
SDK runs the 10 steps in one call and reports each to /v1/checkpoint) and with
STEPLINE_CHECKPOINTING=false (one call per step), each beside bare Celery in the same turns.

Both sides run at once, measured in turns (medians over `--repeat`).

This module is also the SDK app (`gunicorn bench.sdk_app:create_app()`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import flask
import httpx
import inngest
import inngest.flask

from bench.harness import (
    REDIS_URL,
    ROOT,
    all_completed,
    bench_engine,
    flush,
    median,
    wait_until,
    worker,
)

RUNS, STEPS = 50, 10

# --- the SDK app -------------------------------------------------------------------------------

client = inngest.Inngest(app_id="benchsdk", is_production=False)


@client.create_function(
    fn_id="steps", retries=0, trigger=inngest.TriggerEvent(event="benchsdk/steps")
)
def steps(ctx: inngest.ContextSync) -> int:
    n = int(ctx.event.data["n"])  # type: ignore[arg-type]
    total = 0
    for i in range(n):

        def add(i: int = i, t: int = total) -> int:
            return t + i

        total = ctx.step.run(f"s{i}", add)
    return total


def create_app() -> flask.Flask:
    app = flask.Flask("benchsdk")
    inngest.flask.serve(app, client, [steps])
    return app


# --- the benchmark -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _gunicorn(target: str, port: int, workers: int, env: dict[str, str]) -> Iterator[str]:
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}"]
    command += ["--workers", str(workers), "--threads", "8", "--log-level", "warning", target]
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT), **env),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _answers(url), timeout=30)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=1.0)
    except httpx.HTTPError:
        time.sleep(0.1)
        return False
    return True


def bare_concurrent(chains: int, hops: int) -> float:
    from bench.bare_celery import hop

    client = flush()
    start = time.perf_counter()
    for c in range(chains):
        hop.delay(f"c{c}", hops)
    wait_until(lambda: int(client.get("bare:done") or 0) >= chains)
    return chains * hops / (time.perf_counter() - start)


def sdk_concurrent(app_url: str, runs: int, steps: int, event: str = "benchsdk/steps") -> float:
    flush()
    engine = bench_engine([])
    synced = httpx.put(app_url, timeout=30)
    if synced.status_code != 200:
        raise RuntimeError(f"sync failed: {synced.status_code} {synced.text}")
    start = time.perf_counter()
    ids = engine.runner.ingest(
        [{"name": event, "data": {"n": steps}} for _ in range(runs)], engine.now()
    )
    wait_until(lambda: all_completed(engine, ids), timeout=300)
    return runs * steps / (time.perf_counter() - start)


@contextlib.contextmanager
def _node_app(port: int, env: dict[str, str]) -> Iterator[str]:
    app_dir = ROOT / "tests" / "sdk_apps" / "ts_app"
    proc = subprocess.Popen(
        ["node", "index.js", "--port", str(port)],
        cwd=app_dir,
        env=dict(os.environ, **env),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/api/inngest"
    try:
        wait_until(lambda: _answers(url), timeout=30)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def main_ts(repeat: int, concurrency: int) -> None:
    """The TS SDK app with and without checkpointing, each beside bare Celery."""
    no_functions = {"STEPLINE_FUNCTIONS": ""}
    results: dict[str, tuple[float, float]] = {}
    with (
        worker("bench.bare_celery", "bare", concurrency=concurrency),
        _gunicorn("app.api:create_app()", _free_port(), 1, no_functions) as api,
        _node_app(_free_port(), {"INNGEST_DEV": api}) as app,
    ):
        for mode in ("true", "false"):
            env = {**no_functions, "STEPLINE_CHECKPOINTING": mode}
            bare_rate, ts_rate = [], []
            with worker(
                "tasks", "stepline,stepline-sdk", concurrency=concurrency, extra_env=env, beat=True
            ):
                for _ in range(repeat):
                    bare_rate.append(bare_concurrent(RUNS, STEPS))
                    ts_rate.append(sdk_concurrent(app, RUNS, STEPS, "tsapp/steps"))
            results[mode] = (median(bare_rate), median(ts_rate))
    for mode, label in (("false", "one call per step "), ("true", "checkpointing     ")):
        b_rate, t_rate = results[mode]
        print(f"bare Celery      {RUNS} chains x {STEPS} hops : {b_rate:8.0f} hops/s")
        print(
            f"Stepline + TS SDK, {label}: {t_rate:8.0f} steps/s"
            f"   ratio {t_rate / b_rate:.2f}x bare hops"
        )
    on, off = results["true"][1] / results["true"][0], results["false"][1] / results["false"][0]
    print(f"checkpointing / one call per step (ratios to bare hops): {on / off:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes, each side")
    parser.add_argument("--sdk", choices=("python", "ts"), default="python")
    args = parser.parse_args()
    if args.sdk == "ts":
        os.environ["REDIS_URL"] = REDIS_URL
        main_ts(args.repeat, args.concurrency)
        return
    os.environ["REDIS_URL"] = REDIS_URL  # bench.bare_celery's broker, in this process too
    bare_rate, sdk_rate = [], []
    no_functions = {"STEPLINE_FUNCTIONS": ""}
    # Everything is up at once and the two are measured in turns, so that the load of this
    # shared machine drifting between the measurements skews the ratio less.
    with (
        worker("bench.bare_celery", "bare", concurrency=args.concurrency),
        _gunicorn("app.api:create_app()", _free_port(), 1, no_functions) as api,
        _gunicorn("bench.sdk_app:create_app()", _free_port(), 2, {"INNGEST_DEV": api}) as app,
        worker(
            "tasks",
            "stepline,stepline-sdk",
            concurrency=args.concurrency,
            extra_env=no_functions,
            beat=True,
        ),
    ):
        for _ in range(args.repeat):
            bare_rate.append(bare_concurrent(RUNS, STEPS))
            sdk_rate.append(sdk_concurrent(f"{app}/api/inngest", RUNS, STEPS))
    b_rate, s_rate = median(bare_rate), median(sdk_rate)
    print(f"bare Celery      {RUNS} chains x {STEPS} hops : {b_rate:8.0f} hops/s")
    print(
        f"Stepline + SDK   {RUNS} runs x {STEPS} steps  : {s_rate:8.0f} steps/s"
        f"   ratio {s_rate / b_rate:.2f}x bare hops (target >= 0.5x)"
    )


if __name__ == "__main__":
    main()
