"""A real Stepline for the browser tests: the API under gunicorn, a `celery worker` and
`celery beat`, all subprocesses against the test Redis, serving `tests.browser.functions`.

Also the headless Chromium the tests drive (Playwright with the system's Chromium; Playwright's
own browser downloads are never used).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.integration.cluster import ROOT, cluster_env

FUNCTIONS = "tests.browser.functions"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    """`STEPLINE_CHROMIUM`, else a `chromium` (Debian) or `chromium-browser` on PATH."""
    configured = os.environ.get("STEPLINE_CHROMIUM")
    if configured:
        return configured if Path(configured).exists() else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Stack:
    """API, worker and beat processes; `url` is the API's base URL."""

    def __init__(self, redis_url: str, logs: Path, **env: str) -> None:
        env.setdefault("history_url", f"sqlite:///{logs / 'history.db'}")
        self.env = cluster_env(redis_url, STEPLINE_FUNCTIONS=FUNCTIONS, **env)
        self.logs = logs
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def start_api(self) -> None:
        self._spawn(
            "api",
            "gunicorn",
            "-b",
            f"127.0.0.1:{self.port}",
            "--workers",
            "1",
            "--threads",
            "8",
            "app.api:create_app()",
        )
        self.wait_for(self._healthy, 30, "the API to answer /health")

    def start_worker(self) -> None:
        self._spawn(
            "worker",
            "celery",
            "-A",
            "tasks",
            "worker",
            "-Q",
            "stepline,stepline-sdk",
            "--concurrency",
            "2",
            "--loglevel",
            "INFO",
            "-n",
            "ui@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        )

    def start_beat(self) -> None:
        schedule = self.logs / "beat-schedule"
        self._spawn(
            "beat", "celery", "-A", "tasks", "beat", "--loglevel", "INFO", "-s", str(schedule)
        )

    def _healthy(self) -> bool:
        try:
            return self.http.get("/health").status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        self.http.close()
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    # --- talking to it ---------------------------------------------------------------------

    def send(self, name: str, data: dict[str, Any] | None = None) -> str:
        response = self.http.post("/e/dev", json={"name": name, "data": data or {}})
        response.raise_for_status()
        return str(response.json()["ids"][0])

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def runs_of(self, event_id: str) -> list[dict[str, Any]]:
        return list(self.get(f"/v1/events/{event_id}/runs")["data"])

    def run(self, run_id: str) -> dict[str, Any]:
        return dict(self.get(f"/v1/runs/{run_id}")["data"])

    def wait_for(self, check: Callable[[], Any], timeout: float = 30, what: str = "it") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{self.log_tail()}")

    def run_of(self, event_id: str, timeout: float = 30) -> dict[str, Any]:
        """The event's (single) run, once it exists."""
        runs = self.wait_for(lambda: self.runs_of(event_id), timeout, f"a run of {event_id}")
        return dict(runs[0])

    def ended_run(self, run_id: str, timeout: float = 30) -> dict[str, Any]:
        def ended() -> dict[str, Any] | None:
            run = self.run(run_id)
            return run if run["status"] in ("Completed", "Failed", "Cancelled") else None

        return dict(self.wait_for(ended, timeout, f"run {run_id} to end"))

    def log_tail(self, chars: int = 3000) -> str:
        return "\n".join(
            f"--- {p.name} ---\n{p.read_text(errors='replace')[-chars:]}"
            for p in sorted(self.logs.glob("*.log"))
        )
