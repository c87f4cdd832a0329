"""The chaos tier: real web, worker and beat processes against a private `redis-server`
(AOF `everysec`) that the tests kill, freeze and restart, with short leases so faults resolve
in seconds. Step bodies record what they did in the test Redis (the ledger), which no fault
touches."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.integration.cluster import Cluster, RedisServer, chaos_port

CHAOS_FUNCTIONS = "tests.chaos.functions"
FAST = {
    "STEPLINE_LEASE_SECONDS": "2",
    "STEPLINE_REDELIVER_SECONDS": "3",
    "STEPLINE_TICK_SECONDS": "0.2",
    "STEPLINE_RETRY_BASE_SECONDS": "0.2",
    "STEPLINE_REDIS_TIMEOUT_SECONDS": "2",
    "STEPLINE_HEARTBEAT_SECONDS": "1",
}
"""Settings that make faults resolve fast: a dead delivery's lease ends after 2 s."""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """Stepline's Redis for one test, on a port of this machine's chaos range."""
    s = RedisServer(tmp_path / "redis", chaos_port(0))
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def ledger(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def chaos_cluster(
    server: RedisServer, ledger_url: str, tmp: Path, url: str | None = None, **env: str
) -> Cluster:
    """A cluster on `server` (or on `url`, e.g. a proxy in front of it) running the chaos
    functions; start its processes with `start_all` or one by one."""
    return Cluster(
        url or server.url,
        tmp,
        concurrency=3,
        functions=CHAOS_FUNCTIONS,
        CHAOS_LEDGER_URL=ledger_url,
        **{**FAST, **env},
    )


def start_all(cluster: Cluster) -> None:
    """Worker, beat and web as the Procfile starts them; returns once the API answers."""
    cluster.start_worker("w1", as_procfile=True)
    cluster.start_beat()
    cluster.start_web()
    wait_healthy(cluster)


def wait_healthy(cluster: Cluster, timeout: float = 60) -> None:
    import httpx

    def answers() -> bool:
        try:
            return httpx.get(f"{cluster.web_url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    cluster.wait_for(answers, timeout, "the API to answer /health with 200")
