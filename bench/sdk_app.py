"""Steps/s of runs served by an app built with the official Inngest Python SDK, beside bare
Celery hops, in one run.

    .venv/bin/python -m bench.sdk_app [--repeat 3] [--concurrency 2] [--sdk python|ts]

- bare Celery: hops/s of 50 concurrent chains x 10 tasks that each enqueue their successor;
- Stepline + SDK: steps/s of 50 concurrent runs x 10 `step.run`, each step one HTTP call from a
  celery worker to this module's SDK app (`inngest` 0.5.19 + Flask) under gunicorn
  (`-w 2 --threads 8`), synced through the Stepline API (gunicorn) like any app;
- the ratio. Target (issue #3): >= 0.5x the bare hop rate.

With `--sdk ts` the app is tests/sdk_apps/ts_app (the official TypeScript SDK 4.24.0 on Node,
one process; `npm install` there first), measured three ways, each beside bare Celery in the
same turns: with checkpointing as the SDK does it by default (the 10 steps run in one call and
each is reported to /v1/checkpoint as it ends), with the SDK's per-function option
`checkpointing: {bufferedSteps: 10}` (one call; the steps reported together), and with
STEPLINE_CHECKPOINTING=false (one call per step).

Both sides run at once, measured in turns (medians over `--repeat`). Before each turn the
app is synced and the API is asked whether it has the function; every subprocess (API, app,
workers, beat) logs to a file under /tmp/stepline-bench-sdk-<python|ts>-<pid>/, whose path is
printed first; on a failure the end of each log is printed, and an app that died is reported
with its exit code rather than as the runs' "unreachable" errors.

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
from dataclasses import dataclass
from pathlib import Path

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
    log_dir,
    median,
    tail,
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


@dataclass
class _Server:
    """A server subprocess of the benchmark (the API, an SDK app) and its log. `url`: the
    API's base URL or the app's serve URL (`/api/inngest`); `probe`: answers 200 once up."""

    name: str
    url: str
    probe: str
    proc: subprocess.Popen[bytes]
    log: Path

    def check(self) -> None:
        """Raise, with the end of its log, if the process has exited."""
        code = self.proc.poll()
        if code is not None:
            raise RuntimeError(
                f"{self.name} exited with code {code}; log {self.log}:\n{tail(self.log)}"
            )

    def wait_answering(self, timeout: float = 30) -> None:
        """Until a GET of `probe` answers 200 (raising at once if the process exits)."""

        def answers() -> bool:
            self.check()
            try:
                return httpx.get(self.probe, timeout=1.0).status_code == 200
            except httpx.HTTPError:
                time.sleep(0.1)
                return False

        wait_until(answers, timeout=timeout)


@contextlib.contextmanager
def _server(
    name: str,
    command: list[str],
    urls: tuple[str, str],
    log: Path,
    cwd: Path,
    env: dict[str, str],
    base_env: dict[str, str] | None = None,
) -> Iterator[_Server]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=dict(os.environ if base_env is None else base_env, **env),
            start_new_session=True,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = _Server(name, urls[0], urls[1], proc, log)
    try:
        server.wait_answering()
        yield server
        server.check()  # still alive at the end: a crash mid-run is not hidden
    finally:
        with contextlib.suppress(ProcessLookupError):  # it may have died: say why, not this
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _gunicorn(
    target: str, port: int, workers: int, env: dict[str, str], log: Path, path: str = ""
) -> contextlib.AbstractContextManager[_Server]:
    """`target` under gunicorn, its URL `path` under the server (the API: "", its probe
    `/health`; an SDK app: `/api/inngest`, its own probe)."""
    command = [sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}"]
    command += ["--workers", str(workers), "--threads", "8", "--log-level", "warning", target]
    url = f"http://127.0.0.1:{port}{path}"
    urls = (url, url if path else f"{url}/health")
    return _server(target, command, urls, log, ROOT, dict(env, PYTHONPATH=str(ROOT)))


def _node_app(
    port: int, env: dict[str, str], log: Path
) -> contextlib.AbstractContextManager[_Server]:
    command = ["node", "index.js", "--port", str(port)]
    url = f"http://127.0.0.1:{port}/api/inngest"
    # Only `env` configures the SDK: an INNGEST_* of the calling shell (a signing key, a base
    # URL) would point it elsewhere; the benchmark's own are passed in `env`.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("INNGEST_")}
    return _server(
        "the Node app", command, (url, url), log, ROOT / "tests/sdk_apps/ts_app", env, inherited
    )


def bare_concurrent(chains: int, hops: int) -> float:
    from bench.bare_celery import hop

    client = flush()
    start = time.perf_counter()
    for c in range(chains):
        hop.delay(f"c{c}", hops)
    wait_until(lambda: int(client.get("bare:done") or 0) >= chains)
    return chains * hops / (time.perf_counter() - start)


def sync(app: _Server, api: _Server, function_id: str) -> None:
    """Have the app register itself with the API (PUT, as `npx inngest-cli` or the SDK's own
    sync does), then check through the API that `function_id` is there."""
    synced = httpx.put(app.url, timeout=30)
    if synced.status_code != 200:
        raise RuntimeError(f"sync failed: {synced.status_code} {synced.text}")
    found = httpx.get(f"{api.url}/v1/functions/{function_id}", timeout=30)
    if found.status_code != 200:
        raise RuntimeError(f"{function_id} not registered after the sync: {found.text}")


def sdk_concurrent(
    app: _Server,
    api: _Server,
    runs: int,
    steps: int,
    event: str = "benchsdk/steps",
    function_id: str = "benchsdk-steps",
) -> float:
    flush()
    engine = bench_engine([])
    app.check()
    sync(app, api, function_id)
    start = time.perf_counter()
    ids = engine.runner.ingest(
        [{"name": event, "data": {"n": steps}} for _ in range(runs)], engine.now()
    )
    try:
        wait_until(lambda: all_completed(engine, ids), timeout=300)
    except Exception:
        api.check()
        app.check()  # a run failed because the app died: say so, with its exit code and log
        raise
    rate = runs * steps / (time.perf_counter() - start)
    app.check()
    return rate


@contextlib.contextmanager
def _logs_on_failure(logs: Path) -> Iterator[None]:
    """On an exception, print where the subprocesses' logs are and the end of each."""
    try:
        yield
    except BaseException:
        print(f"benchmark failed; logs in {logs}", file=sys.stderr)
        for path in sorted(logs.glob("*.log")):
            print(f"--- {path} (end) ---\n{tail(path, 20)}", file=sys.stderr)
        raise


MODES = (
    ("on", "tsapp/steps", "tsapp-steps"),
    ("buffered", "tsapp/steps-buffered", "tsapp-steps-buffered"),
    ("off", "tsapp/steps", "tsapp-steps"),
)
"""The TS turns: checkpointing as the SDK does it by default (a POST per finished step), with the
SDK's `checkpointing: {bufferedSteps: 10}` on the function (a POST per 10 steps), and off."""


def main_ts(repeat: int, concurrency: int) -> None:
    """The TS SDK app with and without checkpointing, each beside bare Celery."""
    if not (ROOT / "tests/sdk_apps/ts_app/node_modules/inngest").is_dir():
        raise SystemExit("run `npm install` in tests/sdk_apps/ts_app first")
    no_functions = {"STEPLINE_FUNCTIONS": ""}
    results: dict[str, tuple[float, float]] = {}
    logs = log_dir("sdk-ts")
    print(f"logs: {logs}")
    flush()  # nothing of an earlier benchmark (jobs, apps, runs) reaches the workers below
    with (
        _logs_on_failure(logs),
        worker("bench.bare_celery", "bare", concurrency=concurrency, log=logs / "bare.log"),
        _gunicorn("app.api:create_app()", _free_port(), 1, no_functions, logs / "api.log") as api,
        _node_app(_free_port(), {"INNGEST_DEV": api.url}, logs / "node.log") as app,
    ):
        for mode, event, fn_id in MODES:
            env = {**no_functions, "STEPLINE_CHECKPOINTING": "false" if mode == "off" else "true"}
            bare_rate, ts_rate = [], []
            with worker(
                "tasks",
                "stepline,stepline-sdk",
                concurrency=concurrency,
                extra_env=env,
                beat=True,
                log=logs / f"worker-checkpointing-{mode}.log",
            ):
                for _ in range(repeat):
                    bare_rate.append(bare_concurrent(RUNS, STEPS))
                    ts_rate.append(sdk_concurrent(app, api, RUNS, STEPS, event, fn_id))
            results[mode] = (median(bare_rate), median(ts_rate))
    labels = {
        "off": "one call per step ",
        "on": "checkpointing     ",
        "buffered": "checkpoints of 10 ",
    }
    for mode, _, _ in MODES:
        b_rate, t_rate = results[mode]
        print(f"bare Celery      {RUNS} chains x {STEPS} hops : {b_rate:8.0f} hops/s")
        print(
            f"Stepline + TS SDK, {labels[mode]}: {t_rate:8.0f} steps/s"
            f"   ratio {t_rate / b_rate:.2f}x bare hops"
        )
    off = results["off"][1] / results["off"][0]
    for mode in ("on", "buffered"):
        ratio = results[mode][1] / results[mode][0]
        name = labels[mode].strip()
        print(f"{name} / one call per step (ratios to bare hops): {ratio / off:.2f}x")


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
    logs = log_dir("sdk-python")
    print(f"logs: {logs}")
    flush()  # nothing of an earlier benchmark (jobs, apps, runs) reaches the workers below
    # Everything is up at once and the two are measured in turns, so that the load of this
    # shared machine drifting between the measurements skews the ratio less.
    with (
        _logs_on_failure(logs),
        worker("bench.bare_celery", "bare", concurrency=args.concurrency, log=logs / "bare.log"),
        _gunicorn("app.api:create_app()", _free_port(), 1, no_functions, logs / "api.log") as api,
        _gunicorn(
            "bench.sdk_app:create_app()",
            _free_port(),
            2,
            {"INNGEST_DEV": api.url},
            logs / "app.log",
            "/api/inngest",
        ) as app,
        worker(
            "tasks",
            "stepline,stepline-sdk",
            concurrency=args.concurrency,
            extra_env=no_functions,
            beat=True,
            log=logs / "worker.log",
        ),
    ):
        for _ in range(args.repeat):
            bare_rate.append(bare_concurrent(RUNS, STEPS))
            sdk_rate.append(sdk_concurrent(app, api, RUNS, STEPS))
    b_rate, s_rate = median(bare_rate), median(sdk_rate)
    print(f"bare Celery      {RUNS} chains x {STEPS} hops : {b_rate:8.0f} hops/s")
    print(
        f"Stepline + SDK   {RUNS} runs x {STEPS} steps  : {s_rate:8.0f} steps/s"
        f"   ratio {s_rate / b_rate:.2f}x bare hops (target >= 0.5x)"
    )


if __name__ == "__main__":
    main()
