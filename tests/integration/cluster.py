"""Real Stepline processes for end-to-end tests: `celery worker` and `celery beat`
subprocesses against the test Redis, and an Engine in the test process to send events and
read state."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from app.config import Settings
from app.engine import Engine
from app.functions import load_functions
from app.state.store import RunView

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = "tests.integration.functions"


def cluster_env(redis_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "REDIS_URL": redis_url,
            "STEPLINE_HISTORY_URL": extra.pop("history_url", ""),
            "STEPLINE_FUNCTIONS": FUNCTIONS,
            "STEPLINE_RETRY_BASE_SECONDS": "0.2",
            "STEPLINE_TICK_SECONDS": "0.2",
            "STEPLINE_LEASE_SECONDS": "4",
            "STEPLINE_REDELIVER_SECONDS": "10",
            "PYTHONPATH": str(ROOT),
        }
    )
    env.update(extra)
    return env


class Cluster:
    """Worker and beat processes plus an engine to talk to them."""

    def __init__(self, redis_url: str, tmp: Path, concurrency: int = 2, **env: str) -> None:
        env.setdefault("history_url", f"sqlite:///{tmp / 'history.db'}")
        self.env = cluster_env(redis_url, **env)
        self.tmp = tmp
        self.concurrency = concurrency
        self.procs: list[subprocess.Popen[bytes]] = []
        settings = Settings.from_env().replace(
            redis_url=redis_url,
            retry_base_seconds=0.2,
            lease_seconds=4,
            redeliver_seconds=10,
            tick_seconds=0.2,
            history_url=self.env["STEPLINE_HISTORY_URL"],
        )
        # The same in-process functions as the workers', registered before the first send,
        # as a web process sharing their STEPLINE_FUNCTIONS does: an event is processed only
        # by functions registered when it arrives (nothing listening: stored, no job).
        modules = [name for name in self.env["STEPLINE_FUNCTIONS"].split(",") if name]
        self.engine = Engine.create(settings, local=load_functions(modules))

    def start_worker(
        self,
        name: str = "w1",
        concurrency: int | None = None,
        queues: str = "stepline,stepline-sdk",
    ) -> subprocess.Popen[bytes]:
        """A `celery worker`; by default of both queues (main and SDK calls), as one pool."""
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tasks",
                "worker",
                "-Q",
                queues,
                "--concurrency",
                str(concurrency or self.concurrency),
                "--loglevel",
                "INFO",
                "-n",
                f"{name}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def start_beat(self) -> subprocess.Popen[bytes]:
        log = open(self.tmp / "beat.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tasks",
                "beat",
                "--loglevel",
                "INFO",
                "-s",
                str(self.tmp / "beat-schedule"),
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def start_web(self, port: int) -> subprocess.Popen[bytes]:
        """The Procfile's web (gunicorn, app.gunicorn_conf) on 127.0.0.1:`port`; returns once
        it answers `/health`."""
        log = open(self.tmp / "web.log", "ab")  # noqa: SIM115
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
            env={**self.env, "WEB_CONCURRENCY": "1", "STEPLINE_ACCESS_LOG": "false"},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        self.wait_for(lambda: _answers(f"http://127.0.0.1:{port}/health"), what="web to start")
        return proc

    def kill(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        """Signal the process's whole group (prefork children included)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        proc.wait(timeout=30)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        deadline = time.monotonic() + 15
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def send(self, name: str, data: dict[str, object] | None = None, **fields: object) -> str:
        event: dict[str, object] = {"name": name, "data": data or {}, **fields}
        return self.engine.runner.ingest([event], self.engine.now())[0]

    def runs_of(self, event_id: str) -> list[RunView]:
        runs = []
        for run_id in self.engine.store.event_run_ids(event_id):
            view = self.engine.store.get_run(run_id)
            if view is not None:
                runs.append(view)
        return runs

    def wait_for(
        self, check: Callable[[], object], timeout: float = 30, what: str = "condition"
    ) -> object:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.05)
        logs = "\n".join(
            f"--- {p.name} ---\n{p.read_text(errors='replace')[-4000:]}"
            for p in sorted(self.tmp.glob("*.log"))
        )
        raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs}")

    def run_of(self, event_id: str, timeout: float = 30, function_id: str | None = None) -> RunView:
        """Wait for the event's (single or named) run to end and return it."""

        def ended() -> RunView | None:
            for run in self.runs_of(event_id):
                if function_id and run.function_id != function_id:
                    continue
                if run.status in ("Completed", "Failed", "Cancelled"):
                    return run
            return None

        result = self.wait_for(ended, timeout, f"run of event {event_id} to end")
        assert isinstance(result, RunView)
        return result


def _answers(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1) as reply:
            return int(reply.status) < 500
    except (OSError, urllib.error.URLError):
        return False
