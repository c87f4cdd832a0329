"""`pip install <wheel>` into a fresh venv outside the checkout, then `stepline dev`: the Lua
scripts and the UI (its JS modules too) come from the installed package, and the example app
completes a run end to end."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from app.devredis import free_port
from tests.deploy.stack import ROOT, Http, Proc, RedisServer, clean_env

pytestmark = pytest.mark.e2e


def test_the_wheel_carries_the_lua_scripts_and_the_ui(wheel: Path) -> None:
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    for script in (ROOT / "lua").rglob("*.lua"):
        assert f"app/lua/{script.relative_to(ROOT / 'lua')}" in names
    for asset in (ROOT / "app/api/static").rglob("*"):
        if asset.is_file():
            assert f"app/{asset.relative_to(ROOT / 'app')}" in names


def test_stepline_dev_from_the_installed_wheel_runs_the_example(
    wheel_venv: Path, redis_server: RedisServer, tmp_path: Path
) -> None:
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = clean_env(
        PATH=f"{wheel_venv}:/usr/bin:/bin",
        REDIS_URL=redis_server.url,
        STEPLINE_TICK_SECONDS="0.2",
        STEPLINE_GATEWAY_PORT=str(free_port()),  # not 8289: other tests may run dev meanwhile
    )
    where = subprocess.run(
        [str(wheel_venv / "python"), "-c", "import app.state.lua_files as l; print(l.lua_dir())"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert where.startswith(str(wheel_venv.parent)) and where.endswith("app/lua"), where

    port = free_port()
    dev = Proc(["stepline", "dev", "--port", str(port)], env, workdir, tmp_path / "dev.log")
    http = Http(f"http://127.0.0.1:{port}")
    try:
        http.wait_for(http.healthy, "GET /health", logs=lambda: dev.output)
        page = http.get("/")
        assert page.status_code == 200 and "/ui/js/main.js" in page.text
        main = http.get("/ui/js/main.js")
        assert main.status_code == 200
        assert main.headers["content-type"].startswith("text/javascript")
        for module in set(re.findall(r'from "\./([a-z]+\.js)"', main.text)):
            assert http.get(f"/ui/js/{module}").status_code == 200, module
        assert http.get("/ui/style.css").status_code == 200

        sent = http.post("/e/dev", {"name": "app/hello", "data": {"name": "Ada"}}).json()
        assert "ids" in sent, (sent, dev.output[-3000:])
        output = http.wait_for(
            lambda: http.run_output(sent["ids"][0]), "the hello run", logs=lambda: dev.output
        )
        assert output == "HELLO, ADA!"
        # the worker logs the end after it is saved: the line may reach the log a moment later
        http.wait_for(
            lambda: "run completed" in dev.output, "the run's log line", logs=lambda: dev.output
        )
    finally:
        assert dev.stop() == 0, dev.output[-4000:]


def test_the_installed_commands_run_as_separate_services(
    wheel_venv: Path, redis_server: RedisServer, tmp_path: Path
) -> None:
    """As the README's systemd units run them: `stepline release` once, then `stepline web`,
    `stepline worker` and `stepline beat`, each its own process with the same environment."""
    port = free_port()
    env = clean_env(
        PATH=f"{wheel_venv}:/usr/bin:/bin",
        REDIS_URL=redis_server.url,
        PORT=str(port),
        WEB_CONCURRENCY="1",
        STEPLINE_FUNCTIONS="app.examples.hello",
        STEPLINE_HEARTBEAT_SECONDS="1",
    )
    released = subprocess.run(
        ["stepline", "release"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert released.returncode == 0, released.stdout + released.stderr
    assert "ok      lua: every script loads" in released.stdout
    config = subprocess.run(
        ["stepline", "config"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    shown = {line.split()[0]: line.split()[1:] for line in config.stdout.splitlines()}
    assert shown["PORT"] == [str(port), "(environment)"], config.stdout
    services = [
        Proc(["stepline", name], env, tmp_path, tmp_path / f"{name}.log")
        for name in ("web", "worker", "beat")
    ]
    http = Http(f"http://127.0.0.1:{port}")

    def logs() -> str:
        return "\n".join(service.output for service in services)

    try:
        http.wait_for(lambda: http.get("/health").json()["ok"], "every service up", logs=logs)
        sent = http.post("/e/any", {"name": "app/hello", "data": {"name": "Ada"}}).json()
        output = http.wait_for(lambda: http.run_output(sent["ids"][0]), "the run", logs=logs)
        assert output == "HELLO, ADA!"
    finally:
        for service in services:
            service.stop()
