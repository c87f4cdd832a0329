"""A whole Stepline for end-to-end tests with official-SDK apps, every part a real process:

    SDK app (py_app.py / ts_app) ──POST /fn/register, /e/<key>──► API (gunicorn, app.api)
          ▲                                                         │
          └───────────── HttpDriver calls ◄── celery worker + beat ◄┘ (Redis)

`Stack` sends events and reads runs over the API's HTTP endpoints, as a user would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import redis

from app.drivers import signing
from tests.conftest import REDIS_URL, require_redis
from tests.integration.cluster import Cluster
from tests.sdk_apps.harness import HERE, ROOT, TS_APP_DIR, SdkApp, free_port

FUNCTIONS = "tests.integration.functions,tests.sdk_apps.inproc"
"""In-process functions the workers load: the e2e ones plus those that invoke SDK apps."""
ENDED = ("Completed", "Failed", "Cancelled")


class ApiServer:
    """`app.api:create_app()` under gunicorn, as the Procfile's `web` runs it."""

    def __init__(self, env: Mapping[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._env = dict(env)
        self._log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self._log, "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "-b",
                    f"127.0.0.1:{self.port}",
                    "--workers",
                    "1",
                    "--threads",
                    "8",
                    "--access-logfile",
                    "-",
                    "--logger-class",
                    "app.api.accesslog.AccessLogger",
                    "app.api:create_app()",
                ],
                cwd=ROOT,
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the API exited with {self.process.returncode}: see {self._log}"
                )
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the API did not answer /health in 30 s: see {self._log}")

    def log_text(self) -> str:
        """What the API wrote so far: gunicorn's access and error logs, the app's logs."""
        return self._log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, 15)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait()


class Stack:
    def __init__(
        self,
        cluster: Cluster,
        api: ApiServer,
        app: SdkApp | None,
        key: str,
        signing_key: str | None,
    ) -> None:
        self.cluster = cluster
        self.api = api
        self.app = app
        self.key = key
        # In production mode the operations API (/v1) wants the signing key as a bearer.
        auth = {"Authorization": signing.bearer_value(signing_key)} if signing_key else {}
        self.http = httpx.Client(base_url=api.url, timeout=10.0, headers=auth)

    # --- sync and events ---

    def sync(self) -> httpx.Response:
        """What the Inngest dev server's "sync" button does: PUT the app's serve URL."""
        assert self.app is not None, "a Connect stack has no HTTP app to sync"
        return httpx.put(self.app.url, timeout=30.0)

    def post_events(self, body: object, key: str | None = None) -> httpx.Response:
        return self.http.post(f"/e/{key or self.key}", json=body)

    def send(self, name: str, data: Mapping[str, object] | None = None) -> str:
        """POST one event to `/e/<key>`; its internal id."""
        response = self.post_events({"name": name, "data": dict(data or {})})
        assert response.status_code == 200, response.text
        ids = response.json()["ids"]
        assert len(ids) == 1
        return str(ids[0])

    def app_sends(self, name: str, data: Mapping[str, object] | None = None) -> list[str]:
        """Make the app's own code send an event with the SDK client (`client.send`)."""
        assert self.app is not None, "a Connect stack has no HTTP app"
        response = httpx.post(
            f"{self.app.origin}/send", json={"name": name, "data": dict(data or {})}, timeout=30
        )
        assert response.status_code == 200, response.text
        return [str(i) for i in response.json()["ids"]]

    def app_signals(self, signal: str, data: object) -> str | None:
        """Make the app's own code send a signal (`inngest.sendSignal`); the resumed run's id,
        or None when the SDK says no run was waiting."""
        assert self.app is not None, "a Connect stack has no HTTP app"
        response = httpx.post(
            f"{self.app.origin}/signal", json={"signal": signal, "data": data}, timeout=30
        )
        assert response.status_code == 200, response.text
        run_id = response.json()["runId"]
        return None if run_id is None else str(run_id)

    def app_calls(self, run_id: str) -> int:
        """How many times the engine called the (TS) app for this run."""
        assert self.app is not None, "a Connect stack has no HTTP app"
        response = httpx.get(f"{self.app.origin}/calls/{run_id}", timeout=10)
        assert response.status_code == 200, response.text
        return int(response.json()["count"])

    # --- runs, over the API ---

    def event_runs(self, event_id: str) -> list[dict[str, Any]]:
        """The runs an event started, each with its steps (`GET /v1/runs/<id>`)."""
        response = self.http.get(f"/v1/events/{event_id}/runs")
        assert response.status_code == 200, response.text
        return [self.get_run(run["run_id"]) for run in response.json()["data"]]

    def get_run(self, run_id: str) -> dict[str, Any]:
        response = self.http.get(f"/v1/runs/{run_id}")
        assert response.status_code == 200, response.text
        return dict(response.json()["data"])

    def wait_for(self, check: Callable[[], Any], timeout: float = 30, what: str = "it") -> Any:
        return self.cluster.wait_for(check, timeout, what)

    def run_of(
        self, event_id: str, function_id: str | None = None, timeout: float = 30
    ) -> dict[str, Any]:
        """Wait for the event's run (of `function_id`, if given) to end; the run as the API
        shows it."""

        def ended() -> dict[str, Any] | None:
            for run in self.event_runs(event_id):
                if function_id and run["function_id"] != function_id:
                    continue
                if run["status"] in ENDED:
                    return run
            return None

        run = self.wait_for(ended, timeout, f"a run of event {event_id} to end")
        assert isinstance(run, dict)
        return run

    def run_of_id(self, run_id: str, timeout: float = 30) -> dict[str, Any]:
        """The run, once it has ended."""

        def ended() -> dict[str, Any] | None:
            run = self.get_run(run_id)
            return run if run["status"] in ENDED else None

        return dict(self.wait_for(ended, timeout, f"run {run_id} to end"))

    def function_runs(self, function_id: str) -> list[dict[str, Any]]:
        """Runs of a function, newest first (the store's index; details over the API)."""
        views = self.cluster.engine.store.list_runs(100, function_id=function_id)
        return [self.get_run(view.run_id) for view in views]

    def ended_runs_of_function(
        self, function_id: str, where: Callable[[dict[str, Any]], bool], timeout: float = 30
    ) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            for run in self.function_runs(function_id):
                if run["status"] in ENDED and where(run):
                    return run
            return None

        run = self.wait_for(found, timeout, f"an ended run of {function_id}")
        assert isinstance(run, dict)
        return run

    def close(self) -> None:
        self.http.close()


def flush(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        client.flushdb()
    finally:
        client.close()


@contextmanager
def running_stack(
    redis_url: str,
    tmp: Path,
    start_app: Callable[[Mapping[str, str], Path], SdkApp],
    *,
    app_env: Mapping[str, str] | None = None,
    app_api_var: str = "INNGEST_DEV",
    key: str = "any-key",
    sync: bool = True,
    **stepline_env: str,
) -> Iterator[Stack]:
    """API, worker, beat and an SDK app pointed at the API (`<app_api_var>=<api url>`, plus
    `app_env`), the app synced by PUT unless `sync` is False."""
    flush(redis_url)
    env: dict[str, Any] = {"STEPLINE_FUNCTIONS": FUNCTIONS, **stepline_env}
    cluster = Cluster(redis_url, tmp, **env)
    api = ApiServer(dict(cluster.env), tmp / "api.log")  # the same history store too
    app: SdkApp | None = None
    stack: Stack | None = None
    try:
        cluster.start_worker()
        cluster.start_beat()
        api.start()
        app = start_app({app_api_var: api.url, **(app_env or {})}, tmp)
        app.wait_ready()
        stack = Stack(cluster, api, app, key, stepline_env.get("STEPLINE_SIGNING_KEY"))
        if sync:
            reply = stack.sync()
            assert reply.status_code == 200, reply.text
        yield stack
    finally:
        if stack is not None:
            stack.close()
        if app is not None:
            app.stop()
        api.stop()
        cluster.stop()
        flush(redis_url)


def python_sdk_app(env: Mapping[str, str], tmp: Path) -> SdkApp:
    return SdkApp([sys.executable, str(HERE / "py_app.py")], env, log=tmp / "sdk-app.log")


def node_sdk_app(env: Mapping[str, str], tmp: Path) -> SdkApp:
    return SdkApp(
        ["node", str(TS_APP_DIR / "index.js")], env, cwd=TS_APP_DIR, log=tmp / "sdk-app.log"
    )


def redis_for_stack() -> str:
    """The test Redis for a class-scoped stack (the `redis_url` fixture is per test): skipped
    locally when absent, a failure in CI."""
    require_redis().close()
    return REDIS_URL


def step_of(run: dict[str, Any], name: str) -> dict[str, Any]:
    """The step called `name` in a run as `GET /v1/runs/<id>` shows it."""
    return next(s for s in run["steps"] if s["name"] == name)
