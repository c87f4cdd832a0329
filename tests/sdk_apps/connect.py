"""A whole Stepline with Connect workers for end-to-end tests, every part a real process:

    Connect worker (py_connect.py / ts_app/connect.js) ──POST /v0/connect/start──► API
          │  ▲                                                                       │
          ▼  │ WebSocket /v0/connect                                                 │
        gateway (python -m app gateway) ◄──── Redis ────► celery worker + beat ◄─────┘

`connect_stack` starts the API, worker, beat and gateway (the `Stack` of stack.py, without an
HTTP app); tests start `ConnectWorker`s against it, kill them, and read runs over the API.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from app.state.connect import ConnectStore
from tests.integration.cluster import Cluster, cluster_env
from tests.sdk_apps.harness import HERE, ROOT, TS_APP_DIR, free_port
from tests.sdk_apps.stack import FUNCTIONS, ApiServer, Stack, flush

CONNECT_ENV = {"STEPLINE_CONNECT_LEASE_SECONDS": "4"}
"""A worker renews every second; a dead one's call is retried ~5 s after its last renewal."""


class Process:
    """A subprocess in its own session, logging to a file."""

    def __init__(
        self, command: list[str], env: Mapping[str, str], log: Path, cwd: Path = ROOT
    ) -> None:
        self.log = log
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                command,
                cwd=cwd,
                env=dict(env),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self, sig: int = signal.SIGKILL) -> None:
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def stop(self, timeout: float = 15) -> None:
        if self.process.poll() is not None:
            return
        self.kill(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(signal.SIGKILL)
            self.process.wait()


class Gateway(Process):
    """`python -m app gateway`; returns once it listens (it says so in its log: with
    SO_REUSEPORT the port may already answer, from the gateway it replaces)."""

    def __init__(self, env: Mapping[str, str], log: Path) -> None:
        self.port = int(env["STEPLINE_GATEWAY_PORT"])
        command = [sys.executable, "-m", "app", "gateway", "--host", "127.0.0.1"]
        super().__init__([*command, "--port", str(self.port)], env, log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the gateway exited: see {log}")
            if "gateway listening" in log.read_text(errors="replace"):
                return
            time.sleep(0.1)
        raise RuntimeError(f"the gateway did not listen in 30 s: see {log}")


class ConnectWorker(Process):
    """An official-SDK Connect worker; `wait_connected` blocks until the gateway has it."""

    def __init__(
        self,
        kind: str,
        api_url: str,
        tmp: Path,
        app_id: str,
        instance: str,
        env: Mapping[str, str] | None = None,
        signing_key: str | None = None,
    ) -> None:
        self.app_id = app_id
        self.instance = instance
        base = {k: v for k, v in os.environ.items() if not k.startswith("INNGEST_")}
        # Dev mode as with the Inngest dev server; production mode with a signing key.
        where = (
            {"INNGEST_BASE_URL": api_url, "INNGEST_SIGNING_KEY": signing_key}
            if signing_key
            else {"INNGEST_DEV": api_url}
        )
        worker_env = (
            base
            | where
            | {
                "CONNECT_APP_ID": app_id,
                "CONNECT_INSTANCE": instance,
                "PYTHONPATH": str(ROOT),
            }
        )
        worker_env |= dict(env or {})
        log = tmp / f"connect-{instance}.log"
        if kind == "python":
            super().__init__([sys.executable, str(HERE / "py_connect.py")], worker_env, log)
        else:
            worker_env["NODE_OPTIONS"] = "--experimental-websocket"
            command = ["node", str(TS_APP_DIR / "connect.js")]
            super().__init__(command, worker_env, log, cwd=TS_APP_DIR)

    def connected(self, connect: ConnectStore) -> bool:
        return any(w.startswith(f"{self.instance}/") for w in connect.workers(self.app_id, 0))


class ConnectStack(Stack):
    def __init__(
        self,
        cluster: Cluster,
        api: ApiServer,
        gateway: Gateway,
        tmp: Path,
        env: Mapping[str, str],
        signing_key: str | None = None,
    ) -> None:
        event_key = (env.get("STEPLINE_EVENT_KEYS") or "any-key").split(",")[0]
        super().__init__(cluster, api, None, event_key, signing_key)
        self.signing_key = signing_key
        self.gateway = gateway
        self.gateways = [gateway]
        self.tmp = tmp
        self.env = dict(env)
        self.connect = ConnectStore(cluster.engine.store)
        self.workers: list[ConnectWorker] = []

    def start_worker(self, kind: str, app_id: str, instance: str, **env: str) -> ConnectWorker:
        worker = ConnectWorker(
            kind, self.api.url, self.tmp, app_id, instance, env, self.signing_key
        )
        self.workers.append(worker)
        self.wait_for(lambda: worker.connected(self.connect), 60, f"worker {instance} to connect")
        return worker

    def restart_gateway(self) -> None:
        """A rolling restart: the new gateway listens, then the old one drains (SIGTERM)."""
        old = self.gateway
        self.gateway = Gateway(self.env, self.tmp / f"gateway-{len(self.gateways) + 1}.log")
        self.gateways.append(self.gateway)
        old.stop()

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        for gateway in self.gateways:
            gateway.stop()
        super().close()


@contextmanager
def connect_stack(redis_url: str, tmp: Path, **stepline_env: str) -> Iterator[ConnectStack]:
    """API, celery worker, beat and gateway on the test Redis; no worker connected yet."""
    flush(redis_url)
    env: dict[str, Any] = {
        "STEPLINE_FUNCTIONS": FUNCTIONS,
        "STEPLINE_GATEWAY_PORT": str(free_port()),
        **CONNECT_ENV,
        **stepline_env,
    }
    cluster = Cluster(redis_url, tmp, **env)
    process_env = cluster_env(redis_url, **env)
    api = ApiServer(process_env, tmp / "api.log")
    gateway: Gateway | None = None
    stack: ConnectStack | None = None
    try:
        cluster.start_worker()
        cluster.start_beat()
        api.start()
        gateway = Gateway(process_env, tmp / "gateway.log")
        signing_key = stepline_env.get("STEPLINE_SIGNING_KEY")
        stack = ConnectStack(cluster, api, gateway, tmp, process_env, signing_key)
        yield stack
    finally:
        if stack is not None:
            stack.close()
        elif gateway is not None:
            gateway.stop()
        api.stop()
        cluster.stop()
        flush(redis_url)
