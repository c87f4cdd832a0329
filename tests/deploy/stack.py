"""Stepline deployed as a user deploys it, for the deploy tests: fresh virtualenvs outside the
checkout, private Redis servers (plain or TLS with a self-signed certificate made here), and
processes run in their own sessions with their output in a file.

    build_wheel(dest)            `pip wheel` of the checkout (build isolation, as CI builds it)
    make_venv(path, *pip_args)   a fresh venv with `pip install <pip_args>`
    slug(dest)                   the checkout's files as a Heroku build sees them (git ls-files)
    RedisServer.start(tmp, tls)  redis-server on a free loopback port; `url`, `ca_file`
    Proc(args, env, cwd, log)    a process group; `stop()` ends the whole group
    Http(base)                   GET/POST helpers and `wait_for` polling with a deadline
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from app.devredis import free_port, ping

ROOT = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT = 600


def build_wheel(dest: Path) -> Path:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dest), str(ROOT)],
        timeout=INSTALL_TIMEOUT,
        cwd=dest,
        capture_output=True,
        text=True,
    )
    if built.returncode != 0:
        raise RuntimeError(f"pip wheel failed:\n{built.stderr[-4000:]}")
    (wheel,) = dest.glob("stepline-*.whl")
    return wheel


def make_venv(path: Path, *pip_args: str) -> Path:
    """A fresh venv at `path` (no system site-packages) with `pip install pip_args`; returns
    its bin directory."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    bin_dir = path / "bin"
    installed = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "-q", *pip_args],
        timeout=INSTALL_TIMEOUT,
        cwd=path,
        env=clean_env(),
        capture_output=True,
        text=True,
    )
    if installed.returncode != 0:
        raise RuntimeError(f"pip install {' '.join(pip_args)} failed:\n{installed.stderr[-4000:]}")
    return bin_dir


def slug(dest: Path) -> Path:
    """The repository's tracked (and new, not ignored) files copied to `dest`: what a
    Heroku-style build receives."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\n")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dest


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without anything pointing at the checkout or its venv."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "STEPLINE_", "REDIS_URL", "PORT")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.pop("WEB_CONCURRENCY", None)
    env.update(extra)
    return env


@dataclass
class RedisServer:
    process: subprocess.Popen[bytes]
    url: str
    ca_file: Path | None = None

    @classmethod
    def start(cls, tmp: Path, *, tls: bool = False, extra: tuple[str, ...] = ()) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        tmp.mkdir(parents=True, exist_ok=True)
        port = free_port()
        args = [binary, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(tmp), "--daemonize", "no", *extra]
        ca_file = None
        if tls:
            ca_file, cert, key = self_signed(tmp)
            args += ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert)]
            args += ["--tls-key-file", str(key), "--tls-ca-cert-file", str(ca_file)]
            args += ["--tls-auth-clients", "no"]
        else:
            args += ["--port", str(port)]
        log = open(tmp / "redis.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        scheme = "rediss" if tls else "redis"
        server = cls(process, f"{scheme}://127.0.0.1:{port}/0", ca_file)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and process.poll() is None:
            if (tls and _tls_port_open(port)) or (not tls and ping("127.0.0.1", port)):
                return server
            time.sleep(0.05)
        server.stop()
        raise RuntimeError((tmp / "redis.log").read_text(errors="replace")[-2000:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _tls_port_open(port: int) -> bool:
    import socket

    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


def self_signed(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1/localhost signed by it (cryptography)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("stepline test CA"))
        .issuer_name(name("stepline test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    alt = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(alt, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    paths = (tmp / "ca.pem", tmp / "server.pem", tmp / "server.key")
    paths[0].write_bytes(ca.public_bytes(pem))
    paths[1].write_bytes(cert.public_bytes(pem))
    paths[2].write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


@dataclass
class Proc:
    """A command in its own session, its output (stdout and stderr) in `log`."""

    args: list[str]
    env: Mapping[str, str]
    cwd: Path
    log: Path
    process: subprocess.Popen[bytes] = field(init=False)

    def __post_init__(self) -> None:
        out = open(self.log, "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            self.args,
            env=dict(self.env),
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM the group (honcho and every child), SIGKILL what is left after `timeout`."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait(10)


class Http:
    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.base + path, timeout=10)

    def post(self, path: str, body: Any) -> httpx.Response:
        return httpx.post(self.base + path, json=body, timeout=10)

    def wait_for(
        self,
        check: Callable[[], Any],
        what: str,
        timeout: float = 90,
        logs: Callable[[], str] = lambda: "",
    ) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                value = check()
                if value:
                    return value
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}\n{logs()[-6000:]}")

    def healthy(self) -> bool:
        return self.get("/health").status_code == 200

    def run_output(self, event_id: str) -> Any:
        """The output of the event's completed run, or None while it is not completed."""
        runs = self.get(f"/v1/events/{event_id}/runs").json()["data"]
        done = [run for run in runs if run["status"] == "Completed"]
        return done[0]["output"] if done else None
