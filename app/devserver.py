"""The `dev` command's processes: children supervised together, their output on one console.

    Supervisor  starts each child (gunicorn, celery worker, celery beat) in its own process
                group, so stopping one stops its forked children too; waits for a stop signal or
                a child's unexpected exit, then SIGTERMs every group and SIGKILLs what lingers
    Console     whole lines from many threads, each behind a `name |` prefix
    when_ready  a thread that waits for GET /health to answer, says so, then goes on (with
                `start_sync`, which syncs the apps given with -u in a thread of its own)
    CodeWatcher restarts the worker when a function module's code changes (watchfiles)
    AppSyncer   every few seconds: discovers SDK apps on common local ports (as Inngest's dev
                server does) and re-syncs every known app (-u, discovered, synced in the UI)

`app.cli` parses the arguments and wires these together.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

import httpx

from app.config import Settings
from app.devredis import RedisHandle

STOP_TIMEOUT_SECONDS = 10.0
READY_TIMEOUT_SECONDS = 60.0


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
    command: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

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
        self._lock = threading.Lock()
        self._restarting: set[str] = set()

    def start(self, name: str, command: list[str], env: dict[str, str]) -> None:
        self.children.append(Child(name, _spawn(command, env), command=command, env=env))

    def restart(self, name: str, why: str, timeout: float = STOP_TIMEOUT_SECONDS) -> bool:
        """Stop child `name` (its whole process group) and start it again with the same
        command; False if there is no such child or everything is stopping."""
        with self._lock:
            old = next((c for c in self.children if c.name == name), None)
            if old is None or self.stopping.is_set() or name in self._restarting:
                return False
            self._restarting.add(name)
        try:
            self.console.write(f"{why}: restarting {name}", "dev")
            old.signal_group(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while old.alive() and time.monotonic() < deadline and not self.stopping.is_set():
                time.sleep(0.1)
            if old.alive():
                old.signal_group(signal.SIGKILL)
            old.process.wait()
            if old.reader is not None:
                old.reader.join(timeout=2.0)
            if self.stopping.is_set():
                return False
            new = Child(name, _spawn(old.command, old.env), command=old.command, env=old.env)
            self._read(new)
            with self._lock:
                self.children[self.children.index(old)] = new
            return True
        finally:
            with self._lock:
                self._restarting.discard(name)

    def start_readers(self) -> None:
        """Started after every child, so no thread runs while a child is forked."""
        for child in self.children:
            self._read(child)

    def _read(self, child: Child) -> None:
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
            with self._lock:
                watched = [c for c in self.children if c.name not in self._restarting]
            dead = next((c for c in watched if c.process.poll() is not None), None)
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
        self.stopping.set()  # no restart starts a child from here on
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


def _spawn(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        process_group=0,
        preexec_fn=_die_with_parent(),
    )


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


# Background threads of `dev` ----------------------------------------------------------------------


def host_for_url(host: str) -> str:
    """`host` as a URL (and gunicorn's `-b`) needs it: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def when_ready(console: Console, host: str, port: int, then: Callable[[], None]) -> None:
    """In the background: wait for GET /health to answer 200, say so, then call `then`."""
    probe_host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    url = f"http://{host_for_url(probe_host)}:{port}/health"

    def wait() -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            try:
                if httpx.get(url, timeout=1.0).status_code == 200:
                    console.write(f"Ready: http://{host_for_url(host)}:{port}", prefix="dev")
                    then()
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        console.write(f"{url} did not answer within {READY_TIMEOUT_SECONDS:.0f} s", prefix="dev")

    threading.Thread(target=wait, name="stepline-ready", daemon=True).start()


# The dev loop: restart on code changes, discover and re-sync apps --------------------------------

DISCOVERY_PORTS = (3000, 3001, 3030, 3333, 4000, 5000, 5050, 5173, 8000, 8080, 8081, 8888)
"""Local ports probed for SDK apps (the common ones of web frameworks, as Inngest's dev
server probes)."""
DISCOVERY_PATHS = ("/api/inngest", "/x/inngest")
RESYNC_SECONDS = 3.0
DISCOVERY_SECONDS = 5.0


def watch_paths(modules: list[str]) -> list[Path]:
    """What to watch for `modules` (dotted names): a package's directory, a module's file's
    directory; modules that cannot be found are skipped."""
    import importlib.util

    found: list[Path] = []
    for module in modules:
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            continue
        if spec is None or spec.origin is None or not spec.has_location:
            continue
        origin = Path(spec.origin).resolve()
        found.append(origin.parent)
    # Drop paths inside another watched one (watching is recursive).
    unique = sorted(set(found), key=lambda p: len(p.parts))
    return [p for i, p in enumerate(unique) if not any(p.is_relative_to(q) for q in unique[:i])]


class CodeWatcher:
    """A thread restarting the worker (which runs the in-process functions) when a watched
    Python file changes; the API and beat read functions from Redis and keep running."""

    def __init__(self, supervisor: Supervisor, paths: list[Path], child: str = "worker") -> None:
        self.supervisor = supervisor
        self.paths = paths
        self.child = child
        self.stop = threading.Event()

    def start(self) -> None:
        if self.paths:
            threading.Thread(target=self._run, name="stepline-watch", daemon=True).start()

    def _run(self) -> None:
        from watchfiles import PythonFilter, watch

        for changes in watch(
            *self.paths, watch_filter=PythonFilter(), stop_event=self.stop, raise_interrupt=False
        ):
            if self.stop.is_set() or self.supervisor.stopping.is_set():
                return
            names = sorted({Path(path).name for _, path in changes})
            self.supervisor.restart(self.child, f"changed: {', '.join(names)}")


def is_sdk(url: str, timeout_s: float = 0.5) -> bool:
    """Whether an SDK app serves `url`: any answer carrying `X-Inngest-SDK` counts (as
    Inngest's discovery counts it)."""
    try:
        response = httpx.get(url, timeout=timeout_s, follow_redirects=False)
    except httpx.HTTPError:
        return False
    return "x-inngest-sdk" in response.headers


class AppSyncer:
    """A thread: every `every_s` re-sync each known app (the -u URLs, apps the API lists,
    discovered ones); every `discover_s` probe 127.0.0.1 on each of `ports` at DISCOVERY_PATHS."""

    def __init__(
        self,
        console: Console,
        settings: Settings,
        api_url: str,
        urls: list[str],
        *,
        ports: tuple[int, ...] = DISCOVERY_PORTS,
        every_s: float = RESYNC_SECONDS,
        discover_s: float = DISCOVERY_SECONDS,
    ) -> None:
        self.console = console
        self.settings = settings
        self.api_url = api_url
        self.known: dict[str, None] = dict.fromkeys(urls)
        self.ports = ports
        self.every_s = every_s
        self.discover_s = discover_s
        self.stop = threading.Event()
        self._failing: set[str] = set()

    def start(self) -> None:
        threading.Thread(target=self._run, name="stepline-apps", daemon=True).start()

    def _run(self) -> None:
        next_discovery = 0.0
        while not self.stop.is_set():
            try:
                if self.ports and time.monotonic() >= next_discovery:
                    self.discover()
                    next_discovery = time.monotonic() + self.discover_s
                self.sync_all()
            except Exception as exc:  # keep the loop: the next round tries again
                self.console.write(f"app sync round failed: {exc!r}", "dev")
            self.stop.wait(self.every_s)

    def discover(self) -> list[str]:
        found = []
        for port in self.ports:
            for path in DISCOVERY_PATHS:
                url = f"http://127.0.0.1:{port}{path}"
                if url in self.known or not is_sdk(url):
                    continue
                self.known[url] = None
                found.append(url)
                self.console.write(f"discovered an SDK app at {url}", "dev")
                break  # one app per port
        return found

    def _listed(self) -> list[str]:
        """App URLs the API knows (synced from the UI or by the app itself)."""
        try:
            answer = httpx.get(f"{self.api_url}/v1/apps", timeout=2.0).json()
        except (httpx.HTTPError, ValueError):
            return []
        apps = answer.get("data") if isinstance(answer, dict) else None
        return [
            a["url"] for a in apps or [] if isinstance(a, dict) and isinstance(a.get("url"), str)
        ]

    def sync_all(self) -> None:
        from app.sync import sync_app

        for url in self._listed():
            self.known.setdefault(url, None)
        for url in list(self.known):
            if self.stop.is_set():
                return
            try:
                reply = sync_app(url, self.settings)
            except Exception as exc:
                if url not in self._failing:
                    self.console.write(f"sync of {url} failed (retrying): {exc}", "dev")
                    self._failing.add(url)
                continue
            if url in self._failing or reply.get("modified"):
                self.console.write(f"synced {url} (modified={reply.get('modified')})", "dev")
            self._failing.discard(url)
