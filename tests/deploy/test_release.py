"""`stepline release` and the start-up check against real Redis servers: versions, Lua, the
eviction policy (warned in dev, refused in production), AOF, and the registry synced."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from app.config import Settings
from app.release import StartRefused, at_start, check_redis, release
from app.state.client import store_for
from tests.deploy.stack import ROOT, RedisServer

pytestmark = pytest.mark.e2e

SIGNING_KEY = "signkey-prod-" + "ab" * 32


@pytest.fixture
def evicting(tmp_path: Path) -> RedisServer:
    server = RedisServer.start(tmp_path / "redis", extra=("--maxmemory-policy", "allkeys-lru"))
    yield server  # type: ignore[misc]
    server.stop()


def findings(settings: Settings) -> dict[str, tuple[str, str]]:
    store = store_for(settings)
    try:
        return {f.check: (f.level, f.message) for f in check_redis(store, settings)}
    finally:
        store.close()


def test_a_suitable_redis_passes_and_release_publishes_the_functions(
    redis_server: RedisServer,
) -> None:
    settings = Settings(redis_url=redis_server.url, functions=["app.examples.hello"])
    found = findings(settings)
    assert found["version"][0] == "ok" and found["lua"] == ("ok", "every script loads")
    assert found["maxmemory-policy"] == ("ok", "noeviction")
    assert found["aof"][0] == "warning"  # the test server runs with appendonly no
    out = io.StringIO()
    assert release(settings, out) == 0, out.getvalue()
    assert "ok      functions: 7 in-process" in out.getvalue()
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    assert "example-hello" in client.hkeys("sl:functions")
    client.close()


def test_release_warns_about_an_app_it_cannot_sync_yet(redis_server: RedisServer) -> None:
    settings = Settings(redis_url=redis_server.url, app_urls=["http://127.0.0.1:9/api/inngest"])
    out = io.StringIO()
    assert release(settings, out) == 0
    assert "warning sync http://127.0.0.1:9/api/inngest" in out.getvalue()


def test_aof_on_is_fine(tmp_path: Path) -> None:
    server = RedisServer.start(tmp_path / "redis", extra=("--appendonly", "yes"))
    try:
        assert findings(Settings(redis_url=server.url))["aof"] == ("ok", "appendonly yes")
    finally:
        server.stop()


def test_an_evicting_redis_is_a_warning_in_dev_and_an_error_in_production(
    evicting: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    dev = Settings(redis_url=evicting.url)
    level, message = findings(dev)["maxmemory-policy"]
    assert level == "warning" and message.startswith("is allkeys-lru, not noeviction")
    at_start(dev, "worker")
    assert "worker: Redis maxmemory-policy is allkeys-lru" in caplog.text

    production = Settings(redis_url=evicting.url, signing_key=SIGNING_KEY)
    assert findings(production)["maxmemory-policy"][0] == "error"
    out = io.StringIO()
    assert release(production, out) == 1
    assert "release failed" in out.getvalue()
    with pytest.raises(StartRefused, match="worker refuses to start"):
        at_start(production, "worker")


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "celery", "-A", "tasks", "worker", "--pool", "solo"],
        [sys.executable, "-m", "celery", "-A", "tasks", "-q", "beat"],
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "python:app.gunicorn_conf",
            "-b",
            "127.0.0.1:0",
            "app.api:create_app()",
        ],
    ],
    ids=["worker", "beat", "web"],
)
def test_production_processes_refuse_to_start_on_an_evicting_redis(
    evicting: RedisServer, command: list[str], tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPLINE_")}
    env.update(REDIS_URL=evicting.url, STEPLINE_SIGNING_KEY=SIGNING_KEY, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "refuses to start: Redis maxmemory-policy is allkeys-lru" in done.stderr, done.stderr


def test_an_unreachable_redis_fails_the_release_and_only_warns_at_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings(redis_url="redis://127.0.0.1:1/0", signing_key=SIGNING_KEY)
    out = io.StringIO()
    assert release(settings, out) == 1
    assert out.getvalue().startswith("error redis: cannot reach redis://127.0.0.1:1/0")
    at_start(settings, "web")  # processes retry their connections; they start anyway
    assert "web: cannot check Redis at start" in caplog.text
