"""Real servers for the HTTP driver and sync tests: no mocks on the wire.

- `CannedServer`: answers each request with the next queued reply (status, headers, body,
  optional delay) and records what it received.
- `LiveStepline`: Stepline's real API over the test Redis, served on a loopback port, so
  official SDK apps can sync and send events to it.
- `SdkApp`: an official-SDK test app (Python or Node) started as a real subprocess.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from werkzeug.serving import BaseWSGIServer, make_server

from app.config import Settings
from app.models import FunctionConfig
from app.state.store import Store

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TS_APP_DIR = HERE / "ts_app"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- canned replies ----------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | str | Any = b""
    delay_s: float = 0.0

    def raw(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class CannedServer:
    """A real HTTP server on 127.0.0.1 replying with queued `Reply`s (FIFO)."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.received: list[Received] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                outer.received.append(Received(self.command, self.path, headers, body))
                reply = outer.replies.pop(0) if outer.replies else Reply(599, body=b"no reply")
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                raw = reply.raw()
                try:
                    self.send_response(reply.status)
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_POST = _serve
            do_PUT = _serve
            do_GET = _serve

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def queue(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# --- a real Stepline API for SDK apps to talk to ----------------------------------------------


class LiveStepline:
    """Stepline's real API (`create_app` over a real `Engine` and the test Redis, under its own
    key prefix) served on a free loopback port, so official SDK apps can sync, send events and
    fetch run data through the same policy and store as in production. Jobs the API creates are
    recorded, not run: the tests drive the HTTP driver themselves."""

    def __init__(self, settings: Settings | None = None) -> None:
        from app.api import create_app
        from app.engine import Engine
        from app.functions import FunctionSet
        from tests.api.conftest import Recorder
        from tests.conftest import REDIS_URL, require_redis

        require_redis().close()
        self.prefix = f"live-{uuid.uuid4().hex[:8]}"
        base = settings or Settings()
        self.engine = Engine.create(
            base.replace(redis_url=REDIS_URL, key_prefix=self.prefix),
            sender=Recorder(),
            local=FunctionSet(),
        )
        self.app = create_app(self.engine)
        self._server: BaseWSGIServer = make_server("127.0.0.1", 0, self.app, threaded=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    @property
    def store(self) -> Store:
        return self.engine.store

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def functions(self) -> dict[str, FunctionConfig]:
        return {fn.id: fn for fn in self.store.list_functions()}

    @property
    def events(self) -> list[dict[str, Any]]:
        """Events received over `POST /e/<key>`, oldest first."""
        return [dict(record.event) for record in reversed(self.store.list_events(1000))]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        client = redis.Redis.from_url(self.engine.settings.redis_url)
        try:
            keys = list(client.scan_iter(f"{self.prefix}:*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()
            self.store.close()


# --- official SDK apps as subprocesses --------------------------------------------------------


class SdkApp:
    """An official-SDK app started as a subprocess on a free port; `url` is its serve URL."""

    def __init__(
        self, command: list[str], env: Mapping[str, str], cwd: Path = ROOT, log: Path | None = None
    ) -> None:
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.origin}/api/inngest"
        self._command = command
        self._cwd = cwd
        self._log = log
        self._env = {k: v for k, v in os.environ.items() if not k.startswith("INNGEST_")} | dict(
            env
        )
        self._env["PORT"] = str(self.port)
        self.process = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        # The apps' own logs are noise in test output: they go to `log` if given, or to the
        # terminal with STEPLINE_TEST_APP_LOGS=1.
        output: Any = None if os.environ.get("STEPLINE_TEST_APP_LOGS") else subprocess.DEVNULL
        if self._log is not None:
            output = open(self._log, "ab")  # noqa: SIM115 (the child keeps it)
        try:
            return subprocess.Popen(
                [*self._command, "--port", str(self.port)],
                cwd=self._cwd,
                env=self._env,
                stdout=output,
                stderr=subprocess.STDOUT if self._log is not None else output,
            )
        finally:
            if self._log is not None:
                output.close()

    def restart(self) -> None:
        """Start the app again on the same port (after `stop`)."""
        self.process = self._spawn()
        self.wait_ready()

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"SDK app exited with {self.process.returncode}")
            try:
                if httpx.get(self.url, timeout=1.0).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"SDK app at {self.url} did not start in {timeout_s} s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def python_app(env: Mapping[str, str]) -> Iterator[SdkApp]:
    app = SdkApp([sys.executable, str(HERE / "py_app.py")], env)
    try:
        app.wait_ready()
        yield app
    finally:
        app.stop()


def node_available() -> str | None:
    """Why the Node app cannot run here, or None if it can."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (TS_APP_DIR / "node_modules" / "inngest").is_dir():
        return f"run `npm install` in {TS_APP_DIR} to test the TypeScript SDK"
    return None


def node_app(env: Mapping[str, str]) -> Iterator[SdkApp]:
    app = SdkApp(["node", str(TS_APP_DIR / "index.js")], env, cwd=TS_APP_DIR)
    try:
        app.wait_ready()
        yield app
    finally:
        app.stop()
