"""The `dev` command's processes: children supervised together, their output on one console.

    Supervisor  starts each child (gunicorn, celery worker, celery beat) in its own process
                group, so stopping one stops its forked children too; waits for a stop signal or
                a child's unexpected exit, then SIGTERMs every group and SIGKILLs what lingers
    Console     whole lines from many threads, each behind a `name |` prefix
    when_ready  a thread that waits for GET /health to answer, says so, then goes on (with
                `start_sync`, which syncs the apps given with -u in a thread of its own)

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
from dataclasses import dataclass
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


def start_sync(console: Console, urls: list[str], settings: Settings) -> None:
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
