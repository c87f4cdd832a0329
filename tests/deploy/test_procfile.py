"""A Heroku-style deployment: the repository's files, a venv with exactly `pip install -r
requirements.txt` (the project itself is not installed: the Procfile runs it from the slug),
the Procfile's `release:` command, then `honcho start web worker beat` with the platform's
PORT and WEB_CONCURRENCY, completing runs; once against plain Redis, once over TLS
(`rediss://`, a self-signed certificate verified against its CA)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from app.devredis import free_port
from tests.deploy.stack import Http, Proc, RedisServer, clean_env

pytestmark = pytest.mark.e2e

HONCHO = shutil.which("honcho") or str(Path(__file__).resolve().parents[2] / ".venv/bin/honcho")


def procfile(app: Path) -> dict[str, str]:
    lines = (app / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


def deploy(app: Path, bin_dir: Path, redis_url: str, tmp: Path, **env: str) -> None:
    port = free_port()
    environment = clean_env(
        PATH=f"{bin_dir}:/usr/bin:/bin",
        REDIS_URL=redis_url,
        PORT=str(port),
        WEB_CONCURRENCY="1",
        STEPLINE_WORKER_CONCURRENCY="1",
        STEPLINE_FUNCTIONS="app.examples.hello",
        STEPLINE_HEARTBEAT_SECONDS="1",
        **env,
    )
    commands = procfile(app)
    assert set(commands) == {"release", "web", "worker", "sdk-worker", "beat", "gateway"}
    release = subprocess.run(
        [HONCHO, "run", *shlex.split(commands["release"])],
        cwd=app,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert release.returncode == 0, release.stdout + release.stderr
    assert "ok      lua: every script loads" in release.stdout
    assert "functions: 7 in-process" in release.stdout

    processes = ["web", "worker", "sdk-worker", "beat"]
    honcho = Proc([HONCHO, "start", *processes], environment, app, tmp / "honcho.log")
    http = Http(f"http://127.0.0.1:{port}")
    try:
        http.wait_for(
            lambda: http.get("/health").json()["ok"], "workers and beat", logs=lambda: honcho.output
        )
        http.wait_for(
            lambda: len(http.get("/health").json()["workers"]["items"]) == 2,
            "the worker and the SDK worker",
            logs=lambda: honcho.output,
        )
        health = http.get("/health").json()
        assert health["workers"]["items"][0]["concurrency"] == 1
        assert health["beat"]["alive"] is True
        sent = [
            http.post("/e/dev", {"name": "app/hello", "data": {"name": name}}).json()["ids"][0]
            for name in ("Ada", "Grace", "Linus")
        ]
        outputs = [
            http.wait_for(lambda e=e: http.run_output(e), f"run of {e}", logs=lambda: honcho.output)
            for e in sent
        ]
        assert outputs == ["HELLO, ADA!", "HELLO, GRACE!", "HELLO, LINUS!"]
        # WEB_CONCURRENCY=1: gunicorn's master booted exactly one worker.
        assert honcho.output.count("Booting worker with pid") == 1, honcho.output
    finally:
        honcho.stop()


def test_the_procfile_deploys_and_completes_runs(
    heroku_app: tuple[Path, Path], redis_server: RedisServer, tmp_path: Path
) -> None:
    app, bin_dir = heroku_app
    assert (app / ".python-version").read_text().strip() == "3.11"
    deploy(app, bin_dir, redis_server.url, tmp_path)


def test_the_procfile_over_tls_with_a_self_signed_certificate(
    heroku_app: tuple[Path, Path], tmp_path: Path
) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("no redis-server")
    try:
        server = RedisServer.start(tmp_path / "redis", tls=True)
    except RuntimeError as exc:
        if "tls" in str(exc).lower():
            pytest.skip(f"this redis-server has no TLS: {exc}")
        raise
    try:
        assert server.url.startswith("rediss://") and server.ca_file is not None
        app, bin_dir = heroku_app
        deploy(app, bin_dir, server.url, tmp_path, STEPLINE_REDIS_TLS_CA_FILE=str(server.ca_file))
    finally:
        server.stop()
